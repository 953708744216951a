"""Admission webhook benchmark: what a mutating plus a validating webhook add to a create.

Run from the repository root: ``python bench/bench_admission.py``.  It starts a
real ``microkube serve`` (no node, no registry) and two real HTTPS webhooks on
loopback (tests/support/webhooks.py: a JSONPatch-returning mutating one and an
allowing validating one), and measures ConfigMap CREATE latency p50/p99 over
one keep-alive TLS connection, in one run:

- ``none``: no webhook configuration at all (the anchor);
- ``no-match``: both configurations present, their rules naming secrets only
  (the chain's cost when nothing matches; target within 3% of ``none``);
  ``none`` and ``no-match`` alternate in rounds so machine drift hits both;
- ``webhooks``: both webhooks matching configmaps (target: p50 at most 2 ms
  above ``none``);
- ``none-again``: configurations deleted, to show the drift of the anchor.
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.server import Server  # noqa: E402
from tests.support.webhooks import WebhookServer, allow, json_patch  # noqa: E402

N = 800
WARM = 20
ROUNDS = 8


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


class Conn:
    def __init__(self, srv: Server) -> None:
        ctx = ssl.create_default_context(cafile=str(srv.ca))
        self.c = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=30)
        self.h = {"Authorization": "Bearer " + srv.token, "Content-Type": "application/json"}

    def req(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = json.dumps(body) if body is not None else None
        self.c.request(method, path, body=data, headers=self.h)
        r = self.c.getresponse()
        return r.status, r.read()


def handler(path: str, review: dict[str, Any]) -> Any:
    uid = review["request"]["uid"]
    if path.startswith("/mutate"):
        return json_patch(uid, [{"op": "add", "path": "/data/mutated", "value": "yes"}])
    return allow(uid)


def configs(srv: WebhookServer, resource: str) -> list[tuple[str, dict[str, Any]]]:
    def wh(name: str, path: str) -> dict[str, Any]:
        return {
            "name": name,
            "clientConfig": {"url": srv.url(path), "caBundle": srv.ca_bundle},
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": [resource],
                }
            ],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }

    g = "/apis/admissionregistration.k8s.io/v1/"
    return [
        (
            g + "mutatingwebhookconfigurations",
            {"metadata": {"name": "bench-m"}, "webhooks": [wh("m.bench.example.com", "/mutate")]},
        ),
        (
            g + "validatingwebhookconfigurations",
            {"metadata": {"name": "bench-v"}, "webhooks": [wh("v.bench.example.com", "/validate")]},
        ),
    ]


def creates(conn: Conn, label: str, n: int) -> list[float]:
    out = []
    for i in range(n + WARM):
        body = {"metadata": {"name": f"{label}-{i}"}, "data": {"k": "v"}}
        t0 = time.perf_counter()
        status, raw = conn.req("POST", "/api/v1/namespaces/default/configmaps", body)
        dt = time.perf_counter() - t0
        if status != 201:
            raise SystemExit(f"create failed: {status} {raw[:300]!r}")
        if i >= WARM:
            out.append(dt * 1000)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as d, WebhookServer(handler) as hooks:
        srv = Server(Path(d) / "state", extra_args=["--no-registry", "--runtime", "none"]).start()
        try:
            conn = Conn(srv)
            results: dict[str, list[float]] = {"none": [], "no-match": [], "webhooks": []}
            # none and no-match alternate in rounds, so drift of the machine hits both alike.
            for r in range(ROUNDS):
                results["none"] += creates(conn, f"none{r}", N // ROUNDS)
                for path, body in configs(hooks, "secrets"):
                    assert conn.req("POST", path, body)[0] == 201
                results["no-match"] += creates(conn, f"nomatch{r}", N // ROUNDS)
                for path, body in configs(hooks, "secrets"):
                    assert conn.req("DELETE", f"{path}/{body['metadata']['name']}")[0] == 200
            for path, body in configs(hooks, "configmaps"):
                assert conn.req("POST", path, body)[0] == 201
            results["webhooks"] = creates(conn, "hooked", N)
            status, raw = conn.req("GET", "/api/v1/namespaces/default/configmaps/hooked-50")
            assert json.loads(raw)["data"]["mutated"] == "yes", raw
            for path, body in configs(hooks, "configmaps"):
                assert conn.req("DELETE", f"{path}/{body['metadata']['name']}")[0] == 200
            results["none-again"] = creates(conn, "again", N // ROUNDS)
        finally:
            srv.stop()
    base = pct(results["none"], 50)
    print(
        "ConfigMap CREATE latency over one keep-alive TLS connection (ms); n per case: "
        + ", ".join(f"{k}={len(v)}" for k, v in results.items())
    )
    print(f"{'case':<12} {'p50':>8} {'p99':>8} {'p50 vs none':>12}")
    for name, vals in results.items():
        p50, p99 = pct(vals, 50), pct(vals, 99)
        print(
            f"{name:<12} {p50:8.3f} {p99:8.3f} {p50 - base:+9.3f} ms ({(p50 / base - 1) * 100:+.1f}%)"
        )
    print(f"webhook calls served: {len(hooks.requests)}")


if __name__ == "__main__":
    main()
