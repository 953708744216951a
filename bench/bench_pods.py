"""Pod start-up benchmark: microkube on Podman next to raw Podman, and fake-runtime throughput.

Run from the repository root as root: ``python bench/bench_pods.py [--pods 20]``.

Podman part (skipped when Podman or busybox is missing): one ``microkube serve``
(pod CIDR 10.228.250.0/24, service CIDR 10.229.250.0/24, no registry) and the
offline busybox image.  In one run it measures, for the same single-container
``sleep`` pod:

- *microkube*: pods created one after the other (the next once the previous
  started); latency = client time of the POST → a watch event showing every
  container ``running`` (mirrors the SLI of the upstream density test);
  each is preceded by one raw Podman pod, so both see the same machine load;
- *microkube burst*: all pods POSTed at once, same latency definition (how the
  kubelet copes with a queue: parallel workers on two cores);
- *raw Podman*: ``podman pod create`` (same network mode, own bridge network) +
  ``podman run -d --pod`` with microkube's containers.conf, timed around both
  CLI calls; ``run -d`` returns once the container started.

Fake part: ``microkube serve --runtime fake``; N pods created by 8 client
threads as fast as the API takes them; pods/minute = N / (first POST → last
pod observed Running through a watch).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import ssl
import statistics
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
from tests.support.server import Server, reset  # noqa: E402

NS = "default"
POD_CIDR = "10.228.250.0/24"
SERVICE_CIDR = "10.229.250.0/24"
RAW_NET = ("mkbench-raw", "10.228.251.0/24")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round((len(values) - 1) * p / 100)))]


class Conn:
    def __init__(self, srv: Server) -> None:
        ctx = ssl.create_default_context(cafile=str(srv.ca))
        self.c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=60)
        self.h = {"Authorization": "Bearer " + srv.token, "Content-Type": "application/json"}

    def req(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        data = json.dumps(body) if body is not None else None
        self.c.request(method, path, body=data, headers=self.h)
        r = self.c.getresponse()
        return r.status, r.read()


class StartWatch:
    """A pod watch in a thread: records when each pod first has every container started."""

    def __init__(self, srv: Server, done: Callable[[dict[str, Any]], bool]) -> None:
        self.srv, self.done = srv, done
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        c = Conn(srv)
        _, body = c.req("GET", f"/api/v1/namespaces/{NS}/pods?limit=1")
        self.rv = json.loads(body)["metadata"]["resourceVersion"]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.srv.ca))
        s = http.client.HTTPSConnection("127.0.0.1", self.srv.port, context=ctx, timeout=600)
        path = f"/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion={self.rv}"
        s.request("GET", path, headers={"Authorization": "Bearer " + self.srv.token})
        r = s.getresponse()
        while line := r.readline():
            now = time.perf_counter()
            obj = json.loads(line)["object"]
            name = obj.get("metadata", {}).get("name")
            if name and name not in self.seen and self.done(obj):
                with self.cond:
                    self.seen[name] = now
                    self.cond.notify_all()

    def wait(self, names: list[str], timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        with self.cond:
            while not all(n in self.seen for n in names):
                left = deadline - time.perf_counter()
                if left <= 0:
                    missing = [n for n in names if n not in self.seen]
                    raise TimeoutError(f"pods not started in {timeout}s: {missing[:5]}")
                self.cond.wait(left)


def all_running(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    running = [s for s in statuses if "running" in (s.get("state") or {})]
    return bool(spec.get("containers")) and len(running) == len(spec["containers"])


def pod_body(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"],
                }
            ],
        },
    }


def create(c: Conn, body: dict[str, Any]) -> None:
    code, out = c.req("POST", f"/api/v1/namespaces/{NS}/pods", body)
    if code != 201:
        raise RuntimeError(f"create {body['metadata']['name']}: {code} {out[:300]!r}")


def delete_all(srv: Server, names: list[str], timeout: float = 180) -> None:
    c = Conn(srv)
    for n in names:
        c.req("DELETE", f"/api/v1/namespaces/{NS}/pods/{n}")
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        _, body = c.req("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=bench%3Dpods")
        if not json.loads(body)["items"]:
            return
        time.sleep(0.5)
    raise TimeoutError("bench pods were not deleted")


class RawPodman:
    """``podman pod create`` + ``podman run -d --pod`` on a bench-owned bridge network."""

    def __init__(self, env: dict[str, str], image: str) -> None:
        self.env, self.image = env, image
        net, cidr = RAW_NET
        subprocess.run(["podman", "network", "rm", "-f", net], env=env, capture_output=True)
        self._podman("network", "create", "--subnet", cidr, "--label", "mkbench=raw", net)

    def _podman(self, *args: str) -> None:
        subprocess.run(
            ["podman", *args], env=self.env, check=True, capture_output=True, timeout=120
        )

    def start(self, name: str) -> float:
        t0 = time.perf_counter()
        self._podman(
            "pod",
            "create",
            "--name",
            name,
            "--hostname",
            name,
            "--network",
            RAW_NET[0],
            "--share",
            "ipc,net,uts",
            "--label",
            "mkbench=raw",
        )
        self._podman(
            "run",
            "-d",
            "--pod",
            name,
            "--name",
            f"{name}-c",
            "--label",
            "mkbench=raw",
            self.image,
            "sleep",
            "3600",
        )
        return time.perf_counter() - t0

    def close(self) -> None:
        out = subprocess.run(
            ["podman", "pod", "ps", "-q", "--filter", "label=mkbench=raw"],
            env=self.env,
            capture_output=True,
            text=True,
        ).stdout.split()
        if out:
            subprocess.run(
                ["podman", "pod", "rm", "-f", "-t", "0", *out],
                env=self.env,
                capture_output=True,
                timeout=300,
            )
        subprocess.run(
            ["podman", "network", "rm", "-f", RAW_NET[0]], env=self.env, capture_output=True
        )


def sequential(
    srv: Server, raw: RawPodman, n: int, image: str, prefix: str
) -> tuple[list[float], list[float]]:
    """Alternately one raw Podman pod and one microkube pod, so both see the same load."""
    watch = StartWatch(srv, all_running)
    c = Conn(srv)
    mk, rawlat = [], []
    names = []
    for i in range(n):
        rawlat.append(raw.start(f"mkbench-{prefix}{i}"))
        name = f"{prefix}{i}"
        names.append(name)
        t0 = time.perf_counter()
        create(c, pod_body(name, image))
        watch.wait([name], 120)
        mk.append(watch.seen[name] - t0)
    delete_all(srv, names)
    return mk, rawlat


def microkube_burst(srv: Server, n: int, image: str) -> tuple[list[float], float]:
    watch = StartWatch(srv, all_running)
    c = Conn(srv)
    sent: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(n):
        name = f"burst{i}"
        sent[name] = time.perf_counter()
        create(c, pod_body(name, image))
    watch.wait(list(sent), 300)
    total = max(watch.seen[n] for n in sent) - t0
    lat = [watch.seen[n] - t for n, t in sent.items()]
    delete_all(srv, list(sent))
    return lat, total


def line(label: str, lat: list[float]) -> str:
    return (
        f"  {label:<34} p50 {pct(lat, 50) * 1000:6.0f} ms  p99 {pct(lat, 99) * 1000:6.0f} ms"
        f"  mean {statistics.mean(lat) * 1000:6.0f} ms  (n={len(lat)})"
    )


def podman_part(base: Path, n: int) -> None:
    if not images.busybox_available():
        print("podman part skipped: podman or /bin/busybox missing")
        return
    srv = Server(
        base / "podman-state",
        extra_args=["--no-registry", "--pod-cidr", POD_CIDR, "--service-cidr", SERVICE_CIDR],
    )
    srv.start(timeout=90)
    try:
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(srv.state_dir / "podman" / "containers.conf")
        env["CONTAINERS_REGISTRIES_CONF"] = str(srv.state_dir / "podman" / "registries.conf")
        image = images.busybox_image(env)
        raw_podman = RawPodman(env, image)
        try:
            sequential(srv, raw_podman, 2, image, "warm")  # first pods pay for the page cache
            seq, raw = sequential(srv, raw_podman, n, image, "seq")
        finally:
            raw_podman.close()
        burst, total = microkube_burst(srv, n, image)
    finally:
        srv.stop()
        reset(srv)
    ratio = pct(seq, 50) / pct(raw, 50)
    print(f"pod start-up, {n} pods, busybox `sleep`, this machine ({os.cpu_count()} CPUs), one run")
    print(line("raw podman pod create + run -d", raw))
    print(line("microkube, one at a time", seq))
    print(f"  p50 ratio microkube / raw          {ratio:.2f}x   (target <= 1.3x)")
    print(f"  p99 microkube one at a time        {pct(seq, 99):.2f} s   (target <= 2 s)")
    print(line(f"microkube, burst of {n}", burst))
    print(f"  burst: all {n} started after       {total:.2f} s")


def fake_part(base: Path, n: int) -> None:
    srv = Server(
        base / "fake-state",
        extra_args=["--no-registry", "--runtime", "fake", "--max-pods", str(n + 10)],
    )
    srv.start(timeout=60)
    try:
        watch = StartWatch(srv, all_running)
        names = [f"f{i}" for i in range(n)]
        clients = 8

        def work(w: int) -> None:
            c = Conn(srv)
            for name in names[w::clients]:
                create(c, pod_body(name, "registry.example/app:1"))

        threads = [threading.Thread(target=work, args=(w,)) for w in range(clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        created = time.perf_counter() - t0
        watch.wait(names, 600)
        total = max(watch.seen.values()) - t0
    finally:
        srv.stop()
        reset(srv)
    print(f"fake runtime, {n} pods from 8 clients")
    print(f"  created in {created:.1f} s ({n / created * 60:.0f} pods/min accepted by the API)")
    print(f"  all Running after {total:.1f} s: {n / total * 60:.0f} pods/min sustained")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20)
    ap.add_argument("--fake-pods", type=int, default=1000)
    ap.add_argument("--skip-podman", action="store_true")
    ap.add_argument("--skip-fake", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        if not args.skip_podman and shutil.which("podman"):
            podman_part(Path(d), args.pods)
        if not args.skip_fake:
            fake_part(Path(d), args.fake_pods)


if __name__ == "__main__":
    main()
