"""Resource usage of the node and its containers: the metrics-server/cAdvisor part of the kubelet.

Sampled in the background, served from memory (what
:mod:`microkube.resources.metrics` asks, as a ``UsageProvider``)::

    every `interval` s (10 s; the first two samples 1 s apart):
        runtime.list_containers ─► running containers
            └─► source.read (worker thread) ─► cumulative CPU ns, working set bytes
        /proc/stat, /proc/meminfo ─► the node's cumulative CPU ns, working set
    last two samples per container/node ─► CPU rate = ΔCPU / Δt over that window

Rates mirror metrics-server's storage (``pkg/storage``): usage needs two
samples of the same container (a restarted container is a new one); a pod has
usage only when every running container has.  Memory is the last working set.  Node CPU is the non-idle
jiffies of ``/proc/stat``; node memory is ``MemTotal - MemAvailable``, as
upstream approximates the working set.

Sources (:class:`StatsSource`): :class:`~microkube.kubelet.cgroups.CgroupStats`
for Podman, :class:`FakeStats` for the fake runtime, which synthesizes
counters from the pod spec (the ``MICROKUBE_FAKE_CPU``/``MICROKUBE_FAKE_MEMORY``
container env, else the container's requests) so tests can drive an HPA.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from microkube.kubelet import runtime as rt
from microkube.objects import quantity

log = logging.getLogger(__name__)

FAKE_CPU = "MICROKUBE_FAKE_CPU"
FAKE_MEMORY = "MICROKUBE_FAKE_MEMORY"
_NS = 10**9


class StatsSource(Protocol):
    def read(
        self, containers: list[rt.ContainerStatus], at: datetime
    ) -> dict[str, tuple[int, int]]:
        """Container ID → (cumulative CPU ns, working set bytes) at about ``at``.

        Blocking: runs in a worker thread.
        """
        ...


@dataclass(frozen=True)
class Sample:
    at: datetime
    cpu_ns: int
    memory: int


@dataclass(frozen=True)
class Usage:
    """One container's or the node's usage (a ``resources.metrics.ContainerUsage``)."""

    timestamp: datetime
    window: float
    cpu_nanocores: int
    memory_bytes: int
    name: str = ""


def usage(last: Sample, prev: Sample, name: str = "") -> Usage | None:
    """The rate between two samples (None when the counter went back: a restart)."""
    window = (last.at - prev.at).total_seconds()
    if window <= 0 or last.cpu_ns < prev.cpu_ns:
        return None
    rate = round((last.cpu_ns - prev.cpu_ns) / window)
    return Usage(last.at, window, rate, last.memory, name)


def node_sample(proc: Path, at: datetime) -> Sample:
    """The host's cumulative non-idle CPU time and working set from ``/proc``."""
    fields = (proc / "stat").read_text().split("\n", 1)[0].split()
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    jiffies = [int(v) for v in fields[1:9]]
    busy = sum(jiffies) - jiffies[3] - jiffies[4]
    hz = os.sysconf("SC_CLK_TCK")
    mem: dict[str, int] = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            mem[key] = int(rest.split()[0]) * 1024
    return Sample(at, busy * _NS // hz, max(mem["MemTotal"] - mem["MemAvailable"], 0))


class FakeStats:
    """Counters for the fake runtime: the declared usage × time since the container started."""

    def __init__(self, pods: Callable[[str], dict[str, Any] | None]) -> None:
        self.pods = pods

    def read(
        self, containers: list[rt.ContainerStatus], at: datetime
    ) -> dict[str, tuple[int, int]]:
        out = {}
        for c in containers:
            spec = self._container(c)
            if spec is None or c.started_at is None:
                continue
            env = {e.get("name"): e.get("value") for e in spec.get("env") or [] if "value" in e}
            requests = (spec.get("resources") or {}).get("requests") or {}
            cpu = env.get(FAKE_CPU) or requests.get("cpu") or 0
            memory = env.get(FAKE_MEMORY) or requests.get("memory") or 0
            try:
                rate = quantity.parse(cpu) * _NS
                mem = quantity.value(memory)
            except ValueError:
                continue
            elapsed = max(at - c.started_at, timedelta())
            micros = (elapsed.days * 86_400 + elapsed.seconds) * 10**6 + elapsed.microseconds
            out[c.id] = (int(rate * Fraction(micros, 10**6)), mem)
        return out

    def _container(self, c: rt.ContainerStatus) -> dict[str, Any] | None:
        pod = self.pods(c.pod_uid)
        for spec in ((pod or {}).get("spec") or {}).get("containers") or []:
            if spec.get("name") == c.name:
                return dict(spec)
        return None


class StatsCollector:
    """Samples ``source`` and ``/proc`` every ``interval`` seconds; serves the rates."""

    def __init__(
        self,
        runtime: rt.ContainerRuntime,
        source: StatsSource,
        *,
        node_name: str,
        interval: float = 10.0,
        proc: Path = Path("/proc"),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.runtime = runtime
        self.source = source
        self.node_name = node_name
        self.interval = interval
        self.proc = proc
        self.now = clock or (lambda: datetime.now(UTC))
        self._node: tuple[Sample | None, Sample | None] = (None, None)
        self._containers: dict[str, tuple[Sample | None, Sample]] = {}  # id -> (prev, last)
        self._pods: dict[str, list[tuple[str, str]]] = {}  # uid -> [(container name, id)]

    # -- the provider side ---------------------------------------------------------------

    def node_usage(self, name: str) -> Usage | None:
        prev, last = self._node
        if name != self.node_name or prev is None or last is None:
            return None
        return usage(last, prev)

    def pod_usage(self, uid: str) -> list[Usage] | None:
        out = []
        for name, cid in self._pods.get(uid, []):
            prev, last = self._containers[cid]
            u = usage(last, prev, name) if prev is not None else None
            if u is None:
                return None  # metrics-server: all the pod's containers, or none
            out.append(u)
        return out or None

    # -- sampling ------------------------------------------------------------------------

    async def sample(self) -> None:
        """One sampling pass over the node and every running container."""
        running = [c for c in await self.runtime.list_containers() if c.state == "running"]
        at = self.now()
        values, node = await asyncio.to_thread(self._read, running, at)
        if node is not None:
            self._node = (self._node[1], node)
        containers: dict[str, tuple[Sample | None, Sample]] = {}
        pods: dict[str, list[tuple[str, str]]] = {}
        for c in running:
            if c.id not in values:
                continue
            cpu, memory = values[c.id]
            last = Sample(at, cpu, memory)
            seen = self._containers.get(c.id)
            containers[c.id] = (seen[1] if seen is not None else None, last)
            pods.setdefault(c.pod_uid, []).append((c.name, c.id))
        self._containers, self._pods = containers, pods

    def _read(
        self, running: list[rt.ContainerStatus], at: datetime
    ) -> tuple[dict[str, tuple[int, int]], Sample | None]:
        values = self.source.read(running, at)
        try:
            node = node_sample(self.proc, at)
        except (OSError, ValueError, KeyError, IndexError) as exc:
            log.debug("node stats unavailable: %s", exc)
            node = None
        return values, node

    async def run(self) -> None:
        first = True
        while True:
            try:
                await self.sample()
            except rt.ContainerRuntimeError as exc:
                log.debug("stats sampling failed: %s", exc)
            except Exception:  # noqa: BLE001 - usage is advisory: never take the node down
                log.exception("stats sampling failed")
            # The second sample comes after 1 s, so usage is known soon after start.
            await asyncio.sleep(min(1.0, self.interval) if first else self.interval)
            first = False
