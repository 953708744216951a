"""Cumulative CPU time and memory working set of Podman containers, read from their cgroups.

What cAdvisor reads for the kubelet's summary API, without asking Podman: a
container's cgroup is found once from its IDs and cached, then every sample
costs a few small file reads (done in a worker thread by
:class:`microkube.kubelet.stats.StatsCollector`).

Where Podman puts a pod's container (``State.CgroupPath`` in ``podman inspect``)::

    cgroupfs manager   libpod_parent/<pod id>/libpod-<container id>
    systemd manager    machine.slice/machine-libpod_pod_<pod id>.slice/libpod-<container id>.scope

under each controller's hierarchy on cgroup v1 (``memory/``, ``cpuacct/``) or
directly under ``/sys/fs/cgroup`` on v2.  Anything else is found by a bounded
walk looking for a directory named after the container ID.

Values, as cAdvisor computes them:

* CPU: v1 ``cpuacct.usage`` (ns); v2 ``cpu.stat`` ``usage_usec`` × 1000;
* working set: usage minus inactive file pages, never negative (v1
  ``memory.usage_in_bytes`` − ``total_inactive_file``; v2 ``memory.current``
  − ``inactive_file``).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from microkube.kubelet import runtime as rt

_WALK_DEPTH = 5
_WALK_TRIES = 3  # samples in which a container's cgroup is looked for before giving up


class CgroupStats:
    """A :class:`~microkube.kubelet.stats.StatsSource` over the cgroup filesystem."""

    def __init__(self, root: Path = Path("/sys/fs/cgroup")) -> None:
        self.root = root
        self.v2 = (root / "cgroup.controllers").exists()
        self._memory = root if self.v2 else root / "memory"
        self._cpu = root if self.v2 else root / "cpuacct"
        self._paths: dict[str, str] = {}  # container id -> cgroup path relative to a hierarchy
        self._tries: dict[str, int] = {}  # container id -> walks that did not find it

    def read(
        self, containers: list[rt.ContainerStatus], at: datetime | None = None
    ) -> dict[str, tuple[int, int]]:
        """Container ID → (cumulative CPU ns, working set bytes); unreadable ones are left out."""
        ids = {c.id for c in containers}
        for gone in set(self._paths) - ids:
            del self._paths[gone]
        for gone in set(self._tries) - ids:
            del self._tries[gone]
        missing = [
            c
            for c in containers
            if c.id not in self._paths and self._tries.get(c.id, 0) < _WALK_TRIES
        ]
        if missing:
            self._locate(missing)
        out = {}
        for c in containers:
            rel = self._paths.get(c.id)
            if rel is None:
                continue
            try:
                out[c.id] = (self._cpu_ns(rel), self._working_set(rel))
            except (OSError, ValueError):
                self._paths.pop(c.id, None)  # gone, or moved: look again next time
        return out

    # -- locating -------------------------------------------------------------------

    def _candidates(self, c: rt.ContainerStatus) -> list[str]:
        pod, cid = c.sandbox_id, c.id
        return [
            f"libpod_parent/{pod}/libpod-{cid}",
            f"machine.slice/machine-libpod_pod_{pod}.slice/libpod-{cid}.scope",
            f"libpod_parent/libpod-{cid}",
            f"machine.slice/libpod-{cid}.scope",
        ]

    def _locate(self, containers: list[rt.ContainerStatus]) -> None:
        unknown = {}
        for c in containers:
            for rel in self._candidates(c):
                if (self._memory / rel).is_dir():
                    self._paths[c.id] = rel
                    break
            else:
                unknown[f"libpod-{c.id}"] = c.id
                unknown[f"libpod-{c.id}.scope"] = c.id
        if unknown:
            for name, rel in _walk(self._memory, _WALK_DEPTH):
                if name in unknown:
                    self._paths[unknown[name]] = rel
            for cid in set(unknown.values()) - set(self._paths):
                self._tries[cid] = self._tries.get(cid, 0) + 1

    # -- reading --------------------------------------------------------------------

    def _cpu_ns(self, rel: str) -> int:
        if self.v2:
            stat = _keyed(self._cpu / rel / "cpu.stat")
            return stat["usage_usec"] * 1000
        return int((self._cpu / rel / "cpuacct.usage").read_text())

    def _working_set(self, rel: str) -> int:
        d = self._memory / rel
        if self.v2:
            usage = int((d / "memory.current").read_text())
            inactive = _keyed(d / "memory.stat").get("inactive_file", 0)
        else:
            usage = int((d / "memory.usage_in_bytes").read_text())
            inactive = _keyed(d / "memory.stat").get("total_inactive_file", 0)
        return max(usage - inactive, 0)


def _keyed(path: Path) -> dict[str, int]:
    """``key value`` lines (``memory.stat``, ``cpu.stat``) as a dict."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _walk(top: Path, depth: int) -> list[tuple[str, str]]:
    """(directory name, path relative to ``top``) of every directory down to ``depth``."""
    out: list[tuple[str, str]] = []
    level = [("", str(top))]
    for _ in range(depth):
        nxt = []
        for rel, path in level:
            try:
                with os.scandir(path) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            child = f"{rel}/{e.name}" if rel else e.name
                            out.append((e.name, child))
                            nxt.append((child, e.path))
            except OSError:
                continue
        level = nxt
    return out
