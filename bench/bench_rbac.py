"""RBAC cost: the p50 latency of a GET with RBAC on vs ``--authorization=AlwaysAllow``.

Run from the repository root: ``python bench/bench_rbac.py``.  Two real
``microkube serve`` processes (no node, no registry) start in one run, set up
identically:

- a token user ``reader`` (``add-user --token``), bound to ``view`` in
  namespace ``bench`` by a RoleBinding;
- realistic RBAC noise: 100 namespaces with 2 RoleBindings each and 50
  ClusterRoles with ClusterRoleBindings, all naming other users, on top of
  the bootstrap roles;
- the object ``configmaps/x`` in ``bench``.

``reader`` then GETs ``configmaps/x`` over one keep-alive TLS connection per
server, the two servers taking turns request by request (so machine noise hits
both sides alike), in three scenarios: an idle cluster; the same with a new
(absent) name on every GET; and one with a background writer updating another ConfigMap about
50 times a second (the store revision moves between many GETs, which would
invalidate a revision-keyed cache).  The target
(issue 7) is an RBAC overhead of at most 10 % of the p50.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.server import Server  # noqa: E402

SAMPLES = 4000


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


class Conn:
    def __init__(self, srv: Server, token: str) -> None:
        ctx = ssl.create_default_context(cafile=str(srv.ca))
        self.c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=30)
        self.h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}

    def req(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body) if body is not None else None
        self.c.request(method, path, body=data, headers=self.h)
        r = self.c.getresponse()
        return r.status, r.read()


def ok(code_body: tuple[int, bytes]) -> None:
    code, body = code_body
    assert code < 300, (code, body[:300])


def setup(srv: Server) -> str:
    """Create the objects and RBAC noise; returns the reader's token."""
    token = subprocess.run(
        [sys.executable, "-m", "microkube", "add-user", "reader", "--token-only",
         "--state-dir", str(srv.state_dir)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    a = Conn(srv, srv.token)
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    ok(a.req("POST", "/api/v1/namespaces", {"metadata": {"name": "bench"}}))
    ok(
        a.req(
            "POST",
            "/api/v1/namespaces/bench/configmaps",
            {"metadata": {"name": "x"}, "data": {"a": "b"}},
        )
    )
    ok(
        a.req(
            "POST",
            "/api/v1/namespaces/bench/configmaps",
            {"metadata": {"name": "w"}, "data": {"n": "0"}},
        )
    )
    ok(a.req("POST", f"{rbac}/namespaces/bench/rolebindings", {
        "metadata": {"name": "reader-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "reader"}],
    }))  # fmt: skip
    for i in range(100):
        ns = f"team{i}"
        ok(a.req("POST", "/api/v1/namespaces", {"metadata": {"name": ns}}))
        for j, role in enumerate(("edit", "view")):
            ok(a.req("POST", f"{rbac}/namespaces/{ns}/rolebindings", {
                "metadata": {"name": f"b{j}"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "User", "name": f"user{i}-{j}"}, {"kind": "Group", "name": f"g{i}"}],
            }))  # fmt: skip
    for i in range(50):
        ok(a.req("POST", f"{rbac}/clusterroles", {
            "metadata": {"name": f"custom{i}"},
            "rules": [{"apiGroups": [f"g{i}.example.com"], "resources": ["things", "others"], "verbs": ["get", "list"]}],
        }))  # fmt: skip
        ok(a.req("POST", f"{rbac}/clusterrolebindings", {
            "metadata": {"name": f"custom{i}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"custom{i}"},
            "subjects": [{"kind": "User", "name": f"someone{i}"}],
        }))  # fmt: skip
    return token


def measure(conns: dict[str, Conn], *, distinct: bool = False) -> dict[str, list[float]]:
    """GET latencies per server; ``distinct``: a new (absent, 404) name every request.

    The servers take turns request by request (the order flips every time), so
    load from elsewhere on the machine hits both sides alike.
    """
    out: dict[str, list[float]] = {name: [] for name in conns}
    for c in conns.values():  # warm up
        for _ in range(50):
            ok(c.req("GET", "/api/v1/namespaces/bench/configmaps/x"))
    pairs = list(conns.items())
    for n in range(SAMPLES):
        path = "/api/v1/namespaces/bench/configmaps/" + (f"n{n}" if distinct else "x")
        for name, c in pairs if n % 2 == 0 else reversed(pairs):
            t = time.perf_counter()
            code, _ = c.req("GET", path)
            out[name].append(time.perf_counter() - t)
            assert code == (404 if distinct else 200), code
    return out


class Writer(threading.Thread):
    """Updates configmaps/w about ``rate`` times a second until stopped."""

    def __init__(self, srv: Server, rate: float) -> None:
        super().__init__(daemon=True)
        self.srv, self.rate, self.stop, self.count = srv, rate, threading.Event(), 0

    def run(self) -> None:
        c = Conn(self.srv, self.srv.token)
        while not self.stop.is_set():
            c.c.request(
                "PATCH",
                "/api/v1/namespaces/bench/configmaps/w",
                body=json.dumps({"data": {"n": str(self.count)}}),
                headers={**c.h, "Content-Type": "application/merge-patch+json"},
            )
            c.c.getresponse().read()
            self.count += 1
            time.sleep(1 / self.rate)


def report(title: str, lat: dict[str, list[float]]) -> None:
    on, off = lat["RBAC"], lat["AlwaysAllow"]
    p50_on, p50_off = pct(on, 50) * 1000, pct(off, 50) * 1000
    print(f"  {title}")
    for name, v in lat.items():
        print(
            f"    {name:<12} GET p50 / p99  {pct(v, 50) * 1000:6.3f} / {pct(v, 99) * 1000:6.3f} ms  (n={len(v)})"
        )
    print(
        f"    RBAC overhead on p50  {(p50_on - p50_off) * 1000:+7.1f} us  ({(p50_on / p50_off - 1) * 100:+5.1f} %, target <= +10 %)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        base = Path(d)
        servers = {
            "RBAC": Server(base / "rbac", extra_args=["--no-registry", "--runtime", "none"]),
            "AlwaysAllow": Server(
                base / "allow",
                extra_args=["--no-registry", "--runtime", "none", "--authorization", "AlwaysAllow"],
            ),
        }
        try:
            for srv in servers.values():
                srv.start()
            conns = {name: Conn(srv, setup(srv)) for name, srv in servers.items()}
            # The reader really is limited by RBAC on one server only.
            denied, _ = conns["RBAC"].req("GET", "/api/v1/namespaces/team1/configmaps")
            allowed, _ = conns["AlwaysAllow"].req("GET", "/api/v1/namespaces/team1/configmaps")
            assert (denied, allowed) == (403, 200), (denied, allowed)
            time.sleep(1)
            idle = measure(conns)
            cold = measure(conns, distinct=True)
            writers = [Writer(srv, 50) for srv in servers.values()]
            for w in writers:
                w.start()
            busy = measure(conns)
            for w in writers:
                w.stop.set()
            for w in writers:
                w.join()
        finally:
            for srv in servers.values():
                srv.stop()
        print(
            "microkube RBAC benchmark (this machine, one run; user bound to view by a RoleBinding,"
        )
        print("  100 namespaces x 2 RoleBindings + 50 ClusterRoleBindings of noise)")
        report("idle cluster", idle)
        report("idle, a different (absent) object name every GET: 404", cold)
        report(
            f"with a writer at ~50 updates/s per server ({writers[0].count} and {writers[1].count} writes)",
            busy,
        )


if __name__ == "__main__":
    main()
