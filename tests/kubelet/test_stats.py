"""Kubelet stats: cgroup and /proc reading, synthesized fake counters, rates over two samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from microkube.kubelet import cgroups, stats
from microkube.kubelet import runtime as rt
from microkube.kubelet.fake import FakeRuntime

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 1, 1, tzinfo=UTC)
POD = "a" * 64
CID = "c" * 64


def container(cid: str = CID, *, pod_uid: str = "uid-1", name: str = "app") -> rt.ContainerStatus:
    return rt.ContainerStatus(cid, name, POD, pod_uid, {}, "running", started_at=T0)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_usage_is_the_rate_between_two_samples() -> None:
    prev = stats.Sample(T0, 1_000_000_000, 1)
    last = stats.Sample(T0 + timedelta(seconds=10), 3_500_000_000, 4096)
    u = stats.usage(last, prev, "app")
    assert u == stats.Usage(last.at, 10.0, 250_000_000, 4096, "app")
    assert stats.usage(prev, last) is None  # counter went back (restart) or time did
    assert stats.usage(last, last) is None


def test_node_sample_from_proc(tmp_path: Path) -> None:
    write(
        tmp_path / "stat",
        "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\nintr 1\n",
    )
    write(
        tmp_path / "meminfo",
        "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    600 kB\n",
    )
    s = stats.node_sample(tmp_path, T0)
    hz = __import__("os").sysconf("SC_CLK_TCK")
    assert s.cpu_ns == (100 + 5 + 50 + 3 + 2 + 1) * 10**9 // hz  # idle and iowait excluded
    assert s.memory == 400 * 1024


def test_cgroup_v1_cgroupfs_layout(tmp_path: Path) -> None:
    rel = f"libpod_parent/{POD}/libpod-{CID}"
    write(tmp_path / "cpuacct" / rel / "cpuacct.usage", "123456789\n")
    write(tmp_path / "memory" / rel / "memory.usage_in_bytes", "10485760\n")
    write(
        tmp_path / "memory" / rel / "memory.stat",
        "cache 0\ninactive_file 1\ntotal_inactive_file 2097152\n",
    )
    src = cgroups.CgroupStats(tmp_path)
    assert not src.v2
    assert src.read([container()]) == {CID: (123456789, 8 * 2**20)}


def test_cgroup_v2_systemd_layout_and_walk(tmp_path: Path) -> None:
    write(tmp_path / "cgroup.controllers", "cpu memory\n")
    rel = f"machine.slice/machine-libpod_pod_{POD}.slice/libpod-{CID}.scope"
    write(tmp_path / rel / "cpu.stat", "usage_usec 2500\nuser_usec 2000\n")
    write(tmp_path / rel / "memory.current", "4096\n")
    write(tmp_path / rel / "memory.stat", "inactive_file 8192\n")  # more than usage: 0
    other = "d" * 64
    deep = f"some/where/else/libpod-{other}"
    write(tmp_path / deep / "cpu.stat", "usage_usec 1\n")
    write(tmp_path / deep / "memory.current", "100\n")
    write(tmp_path / deep / "memory.stat", "inactive_file 0\n")
    src = cgroups.CgroupStats(tmp_path)
    assert src.v2
    got = src.read([container(), container(other, name="b"), container("e" * 64, name="x")])
    assert got == {CID: (2_500_000, 0), other: (1000, 100)}


def test_cgroup_of_a_removed_container_is_forgotten(tmp_path: Path) -> None:
    rel = tmp_path / "memory" / f"libpod_parent/{POD}/libpod-{CID}"
    write(tmp_path / "cpuacct" / f"libpod_parent/{POD}/libpod-{CID}" / "cpuacct.usage", "1\n")
    write(rel / "memory.usage_in_bytes", "1\n")
    write(rel / "memory.stat", "")
    src = cgroups.CgroupStats(tmp_path)
    assert CID in src.read([container()])
    (rel / "memory.usage_in_bytes").unlink()
    assert src.read([container()]) == {}


def pod(uid: str, *containers: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"uid": uid}, "spec": {"containers": list(containers)}}


def test_fake_stats_from_env_knob_or_requests() -> None:
    pods = {
        "uid-1": pod(
            "uid-1",
            {
                "name": "app",
                "env": [{"name": stats.FAKE_CPU, "value": "250m"}, {"name": "X", "value": "y"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
            },
            {"name": "side", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "bare"},
        )
    }
    at = T0 + timedelta(seconds=4)
    src = stats.FakeStats(pods.get)
    cs = [container("1"), container("2", name="side"), container("3", name="bare")]
    assert src.read(cs, at) == {"1": (10**9, 64 * 2**20), "2": (4 * 10**9, 2**30), "3": (0, 0)}
    assert src.read([container("4", pod_uid="gone")], at) == {}


async def test_collector_rates_per_pod_and_node(tmp_path: Path) -> None:
    write(tmp_path / "stat", "cpu  100 0 0 0 0 0 0 0 0 0\n")
    write(tmp_path / "meminfo", "MemTotal: 1000 kB\nMemAvailable: 400 kB\n")
    now = [T0]
    runtime = FakeRuntime("t", clock=lambda: now[0], preloaded=["img"])
    sb = await runtime.create_pod_sandbox(rt.PodSandboxConfig("uid-1", "default", "web"))
    ids = []
    for name in ("app", "side"):
        cid = await runtime.create_container(sb.id, rt.ContainerConfig(name, "img"))
        await runtime.start_container(cid)
        ids.append(cid)
    spec = [
        {"name": "app", "resources": {"requests": {"cpu": "200m", "memory": "10Mi"}}},
        {"name": "side", "env": [{"name": stats.FAKE_MEMORY, "value": "1Mi"}]},
    ]
    pods = {"uid-1": pod("uid-1", *spec)}
    collector = stats.StatsCollector(
        runtime,
        stats.FakeStats(pods.get),
        node_name="n1",
        proc=tmp_path,
        clock=lambda: now[0],
    )
    await collector.sample()
    assert collector.pod_usage("uid-1") is None  # one sample: no rate yet
    assert collector.node_usage("n1") is None
    now[0] = T0 + timedelta(seconds=10)
    write(tmp_path / "stat", "cpu  200 0 0 0 0 0 0 0 0 0\n")
    await collector.sample()
    app, side = collector.pod_usage("uid-1") or []
    assert (app.name, app.cpu_nanocores, app.memory_bytes) == ("app", 200_000_000, 10 * 2**20)
    assert (side.name, side.cpu_nanocores, side.memory_bytes) == ("side", 0, 2**20)
    assert app.window == 10.0 and app.timestamp == now[0]
    hz = __import__("os").sysconf("SC_CLK_TCK")
    node = collector.node_usage("n1")
    assert node is not None and node.cpu_nanocores == 100 * 10**9 // hz // 10
    assert node.memory_bytes == 600 * 1024
    assert collector.node_usage("other") is None
    # a restarted container is a new one: the pod waits for its second sample
    await runtime.stop_container(ids[1], 0)
    cid = await runtime.create_container(sb.id, rt.ContainerConfig("side", "img"))
    await runtime.start_container(cid)
    now[0] = T0 + timedelta(seconds=20)
    await collector.sample()
    assert collector.pod_usage("uid-1") is None
    now[0] = T0 + timedelta(seconds=30)
    await collector.sample()
    assert [u.name for u in collector.pod_usage("uid-1") or []] == ["app", "side"]
    assert collector.pod_usage("nobody") is None
