"""`kill -9` of a server that is busy writing loses no acknowledged write."""

from __future__ import annotations

import json
import signal
import ssl
import threading
import time
import urllib.request
from pathlib import Path

from tests.support.server import Server


def _post(srv: Server, ctx: ssl.SSLContext, name: str) -> bool:
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": name}}).encode()
    req = urllib.request.Request(
        srv.url + "/api/v1/namespaces/default/configmaps",
        data=body,
        method="POST",
        headers={"Authorization": "Bearer " + srv.token, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            return r.status == 201
    except OSError:
        return False


def test_kill_9_loses_no_acknowledged_write(tmp_path: Path) -> None:
    srv = Server(tmp_path / "state", extra_args=["--no-registry", "--runtime", "fake"]).start()
    ctx = ssl.create_default_context(cafile=str(srv.ca))
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            name = f"w{w}-{i}"
            if _post(srv, ctx, name):
                with lock:
                    acked.append(name)
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 50
    srv.proc = None
    srv.start()
    try:
        code, body = srv.request("GET", "/api/v1/namespaces/default/configmaps")
        assert code == 200
        stored = {i["metadata"]["name"] for i in body["items"]}
        missing = [n for n in acked if n not in stored]
        assert missing == []
    finally:
        srv.stop()
