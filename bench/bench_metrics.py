"""Resource metrics cost: kubelet sampling, metrics.k8s.io lists, one HPA pass.

Run from the repository root: ``python bench/bench_metrics.py``.  In-process,
no Podman (a real one would add nothing but noise to these figures):

- cgroup sampling: :class:`~microkube.kubelet.cgroups.CgroupStats` over a
  synthetic cgroup v1 tree of N containers under ``libpod_parent`` (the
  layout Podman's cgroupfs manager makes) plus ``/proc`` for the node: the
  first pass (which locates every cgroup) and the steady passes (3 small file
  reads per container), the worker-thread work done every 10 s;
- ``GET /apis/metrics.k8s.io/v1beta1/pods`` over N running pods (Registry
  list through the virtual store, what ``kubectl top pod -A`` costs);
- one HorizontalPodAutoscaler reconcile over a Deployment of N pods (PodMetrics
  list, replica calculation, status write).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from microkube.client.informer import InformerFactory  # noqa: E402
from microkube.client.local import LocalClient  # noqa: E402
from microkube.controllers.podautoscaler import HorizontalPodAutoscalerController  # noqa: E402
from microkube.kubelet import cgroups, stats  # noqa: E402
from microkube.kubelet import runtime as rt  # noqa: E402
from microkube.resources import metrics  # noqa: E402
from microkube.resources.catalog import default_catalog  # noqa: E402
from microkube.resources.registry import Registry  # noqa: E402
from microkube.settings import StoreSettings  # noqa: E402
from microkube.store.log import Store  # noqa: E402

SIZES = (10, 100, 1000)


def cgroup_tree(root: Path, n: int) -> list[rt.ContainerStatus]:
    out = []
    for i in range(n):
        pod, cid = f"{i:064x}", f"{i + 10**6:064x}"
        rel = f"libpod_parent/{pod}/libpod-{cid}"
        (root / "cpuacct" / rel).mkdir(parents=True)
        (root / "memory" / rel).mkdir(parents=True)
        (root / "cpuacct" / rel / "cpuacct.usage").write_text(f"{i * 1000}\n")
        (root / "memory" / rel / "memory.usage_in_bytes").write_text("10485760\n")
        (root / "memory" / rel / "memory.stat").write_text("cache 0\ntotal_inactive_file 4096\n")
        out.append(rt.ContainerStatus(cid, "c", pod, f"uid-{i}", {}, "running"))
    return out


def bench_cgroups() -> None:
    for n in SIZES:
        with tempfile.TemporaryDirectory() as d:
            containers = cgroup_tree(Path(d), n)
            src = cgroups.CgroupStats(Path(d))
            t = time.perf_counter()
            assert len(src.read(containers)) == n
            first = time.perf_counter() - t
            runs = []
            for _ in range(20):
                t = time.perf_counter()
                src.read(containers)
                stats.node_sample(Path("/proc"), datetime.now(UTC))
                runs.append(time.perf_counter() - t)
            print(
                f"cgroup sample  containers={n:5d}  first pass {first * 1e3:8.2f} ms  "
                f"steady pass p50 {statistics.median(runs) * 1e3:8.2f} ms "
                f"({statistics.median(runs) / n * 1e6:6.1f} us/container)"
            )


class Provider:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def node_usage(self, name: str) -> None:
        return None

    def pod_usage(self, uid: str) -> list[stats.Usage]:
        return [stats.Usage(self.at, 10.0, 60_000_000, 32 * 2**20, "c")]


async def bench_api_and_hpa() -> None:
    for n in SIZES:
        with tempfile.TemporaryDirectory() as d:
            store = await Store.open(Path(d) / "s.db", StoreSettings(compact_interval=3600.0))
            reg = Registry(store, default_catalog())
            client = LocalClient(reg)
            ns_rt, pods_rt = client.resource("", "namespaces"), client.resource("", "pods")
            await client.create(ns_rt, "", {"metadata": {"name": "default"}})
            long_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            for i in range(n):
                spec = {
                    "containers": [
                        {"name": "c", "image": "x", "resources": {"requests": {"cpu": "100m"}}}
                    ]
                }
                await client.create(
                    pods_rt,
                    "default",
                    {"metadata": {"name": f"p{i}", "labels": {"app": "web"}}, "spec": spec},
                )

                def ready(o: dict, long_ago: str = long_ago) -> dict:
                    o["status"] = {
                        "phase": "Running",
                        "startTime": long_ago,
                        "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": long_ago}
                        ],
                    }
                    return o

                await client.mutate(pods_rt, "default", f"p{i}", ready, subresource="status")
            metrics.install(reg, Provider(datetime.now(UTC)))
            mrt = client.resource("metrics.k8s.io", "pods")
            runs = []
            for _ in range(10):
                t = time.perf_counter()
                assert len(reg.list(mrt, None).items) == n
                runs.append(time.perf_counter() - t)
            print(f"podmetrics list  pods={n:5d}  p50 {statistics.median(runs) * 1e3:8.2f} ms")
            await client.create(
                client.resource("apps", "deployments"),
                "default",
                {
                    "metadata": {"name": "web"},
                    "spec": {
                        "replicas": n,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "c", "image": "x"}]},
                        },
                    },
                },
            )
            hpa_spec = {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "maxReplicas": 10 * n,
            }
            informers = InformerFactory(client)
            ctrl = HorizontalPodAutoscalerController(client, informers)
            await client.create(
                ctrl.hpa_rt, "default", {"metadata": {"name": "web"}, "spec": hpa_spec}
            )
            informers.prime()
            runs = []
            for _ in range(10):
                informers.prime()
                t = time.perf_counter()
                await ctrl.reconcile("default/web")
                runs.append(time.perf_counter() - t)
            print(f"hpa reconcile    pods={n:5d}  p50 {statistics.median(runs) * 1e3:8.2f} ms")
            for h in list(ctrl.queue._timers.values()):  # noqa: SLF001
                h.cancel()
            await store.close()


if __name__ == "__main__":
    bench_cgroups()
    asyncio.run(bench_api_and_hpa())
