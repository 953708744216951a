"""Workload controller benchmark: Deployment scale-up and rolling updates.

Run from the repository root: ``python bench/bench_workloads.py [--replicas 100]
[--podman-replicas 10] [--skip-podman] [--profile DIR]``.

Fake part: ``microkube serve --runtime fake`` (the real kubelet, scheduler and
controllers; containers are simulated, so the figures are the control
plane's).  Podman part (skipped without Podman/busybox): ``microkube serve``
on real Podman (pod CIDR 10.220.0.0/24, service CIDR 10.221.0.0/24) with the
offline busybox image.  In both, for one Deployment:

- *create*: client time from the POST to the Deployment reporting every
  replica updated and available (``rollout status`` would return then);
- *rolling update*: from the PATCH of the pod template (default strategy,
  25% surge / 25% unavailable) to the same condition for the new revision
  (observedGeneration caught up, updated == replicas == available, no old
  pods left);
- the server's CPU seconds (user+sys, from /proc) spent in each phase, and
  the number of writes it made (resourceVersion delta).

Completion is observed through a watch on the Deployment, as kubectl does.
``--profile DIR`` runs the fake server under py-spy and writes its collapsed
stacks (``py-spy record -f raw``; feed them to flamegraph.pl or speedscope)
into DIR.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import images  # noqa: E402
from tests.support.server import Server, podman_server, reset  # noqa: E402

NS = "default"
POD_CIDR = "10.220.0.0/24"
SERVICE_CIDR = "10.221.0.0/24"
FAKE_POD_CIDR = "10.220.128.0/17"
FAKE_SERVICE_CIDR = "10.221.128.0/24"
TICKS = os.sysconf("SC_CLK_TCK")


class Conn:
    def __init__(self, srv: Server, timeout: float = 60) -> None:
        ctx = ssl.create_default_context(cafile=str(srv.ca))
        self.c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=timeout)
        self.h = {"Authorization": "Bearer " + srv.token}

    def req(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> dict[str, Any]:
        data = json.dumps(body) if body is not None else None
        try:
            self.c.request(method, path, body=data, headers={**self.h, "Content-Type": ctype})
            r = self.c.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.c.close()  # the server closed an idle keep-alive connection: reconnect
            self.c.request(method, path, body=data, headers={**self.h, "Content-Type": ctype})
            r = self.c.getresponse()
        out = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {out[:300]!r}")
        return dict(json.loads(out or b"{}"))


class DeploymentWatch:
    """A watch on one Deployment in a thread; :meth:`wait` blocks until ``pred(obj)``."""

    def __init__(self, srv: Server, name: str) -> None:
        self.latest: dict[str, Any] | None = None
        self.cond = threading.Condition()
        conn = Conn(srv, timeout=600)
        path = (
            f"/apis/apps/v1/namespaces/{NS}/deployments?watch=true"
            f"&fieldSelector=metadata.name%3D{name}&timeoutSeconds=3600"
        )
        conn.c.request("GET", path, headers=conn.h)
        self.resp = conn.c.getresponse()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while line := self.resp.readline():
                ev = json.loads(line)
                with self.cond:
                    self.latest = ev["object"]
                    self.cond.notify_all()
        except (OSError, ValueError, http.client.HTTPException):
            return

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.latest is None or not pred(self.latest):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(json.dumps((self.latest or {}).get("status"), indent=1))
                self.cond.wait(left)
        return time.perf_counter()


def rolled_out(replicas: int, generation: int) -> Callable[[dict[str, Any]], bool]:
    """What ``kubectl rollout status`` waits for (plus: no old pods left)."""

    def ok(d: dict[str, Any]) -> bool:
        st = d.get("status") or {}
        return (
            int(st.get("observedGeneration") or 0) >= generation
            and st.get("updatedReplicas") == replicas
            and st.get("replicas") == replicas
            and st.get("availableReplicas") == replicas
        )

    return ok


def cpu_seconds(pid: int) -> float:
    """user+sys CPU of ``pid`` and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS


def deployment(name: str, replicas: int, image: str, command: list[str]) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": image, "command": command}],
                },
            },
        },
    }


def run_deployment(
    srv: Server, label: str, replicas: int, image: str, command: list[str], timeout: float
) -> list[str]:
    assert srv.proc is not None
    pid = srv.proc.pid
    conn = Conn(srv)
    name = f"bench-{replicas}"
    watch = DeploymentWatch(srv, name)
    lines = []

    def rv() -> int:
        return int(
            conn.req("GET", f"/api/v1/namespaces/{NS}/pods?limit=1")["metadata"]["resourceVersion"]
        )

    rv0, cpu0 = rv(), cpu_seconds(pid)
    t0 = time.perf_counter()
    d = conn.req(
        "POST",
        f"/apis/apps/v1/namespaces/{NS}/deployments",
        deployment(name, replicas, image, command),
    )
    t1 = watch.wait(rolled_out(replicas, int(d["metadata"]["generation"])), timeout)
    rv1, cpu1 = rv(), cpu_seconds(pid)
    lines.append(
        f"{label}: create {replicas} replicas -> all available: {t1 - t0:.2f} s "
        f"({replicas / (t1 - t0):.1f} pods/s), server CPU {cpu1 - cpu0:.2f} s, {rv1 - rv0} writes"
    )

    patch = {"spec": {"template": {"metadata": {"annotations": {"bench/rev": "2"}}}}}
    t2 = time.perf_counter()
    d = conn.req(
        "PATCH",
        f"/apis/apps/v1/namespaces/{NS}/deployments/{name}",
        patch,
        "application/merge-patch+json",
    )
    t3 = watch.wait(rolled_out(replicas, int(d["metadata"]["generation"])), timeout)
    # the old pods are gone too (their deletion may trail the status by a little)
    while True:
        pods = conn.req("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{name}")["items"]
        if len(pods) == replicas:
            break
        if time.perf_counter() - t3 > timeout:
            raise TimeoutError(f"{len(pods)} pods left")
        time.sleep(0.05)
    t4 = time.perf_counter()
    rv2, cpu2 = rv(), cpu_seconds(pid)
    lines.append(
        f"{label}: rolling update of {replicas} replicas -> complete: {t3 - t2:.2f} s "
        f"(old pods gone at {t4 - t2:.2f} s), server CPU {cpu2 - cpu1:.2f} s, {rv2 - rv1} writes"
    )
    conn.req("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")
    return lines


def fake_part(base: Path, replicas: int, profile: Path | None) -> list[str]:
    srv = Server(
        base / "fake",
        extra_args=[
            "--runtime", "fake", "--no-registry",
            "--pod-cidr", FAKE_POD_CIDR, "--service-cidr", FAKE_SERVICE_CIDR,
        ],
    )  # fmt: skip
    srv.start(timeout=60)
    spy = None
    if profile is not None:
        assert srv.proc is not None
        profile.mkdir(parents=True, exist_ok=True)
        out = profile / f"fake-{replicas}.txt"
        spy = subprocess.Popen(
            ["py-spy", "record", "-p", str(srv.proc.pid), "-o", str(out), "-r", "200", "-f", "raw", "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1)
    try:
        return run_deployment(srv, "fake", replicas, "bench:1", ["run"], timeout=600)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        srv.stop()
        reset(srv)


def podman_part(base: Path, replicas: int) -> list[str]:
    image = images.busybox_image()
    command = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    (base / "podman").mkdir()
    with podman_server(base / "podman", pod_cidr=POD_CIDR, service_cidr=SERVICE_CIDR) as srv:
        return run_deployment(srv, "podman", replicas, image, command, timeout=600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--podman-replicas", type=int, default=10)
    ap.add_argument("--skip-podman", action="store_true")
    ap.add_argument("--skip-fake", action="store_true")
    ap.add_argument("--profile", type=Path, help="write py-spy stacks of the fake server here")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mkbench-wl-"))
    try:
        if not args.skip_fake:
            for line in fake_part(base, args.replicas, args.profile):
                print(line, flush=True)
        if not args.skip_podman:
            if not images.busybox_available():
                print("podman: skipped (podman or busybox missing)")
            else:
                for line in podman_part(base, args.podman_replicas):
                    print(line, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
