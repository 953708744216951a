"""Which containers the memory cgroup killed (the ``OOMKilled`` termination reason).

Podman reports ``State.OOMKilled`` from conmon, which misses kills when it cannot find
the container's cgroup (for example when the host itself runs in a container and
``/proc/PID/cgroup`` paths are not those under ``/sys/fs/cgroup``).  The kernel's
count is in the container's own cgroup, and that cgroup is removed as soon as the
container has exited, so it must be watched while the container runs:

* cgroup v1: an eventfd registered through ``cgroup.event_control`` on
  ``memory.oom_control`` fires when that cgroup runs out of memory (before the
  kill is counted) and when the cgroup is removed; a ``memory.oom_control`` still
  readable through the descriptor we keep open tells the first case from the second;
* cgroup v2: ``memory.events`` ``oom_kill`` is hierarchical, so the count in the pod's
  cgroup (the container cgroup's parent, which outlives the container) is read when
  the container starts and again when it has exited: a rise means an OOM kill in the
  pod, attributed to the container that exited with 137.

Arming costs a few small cgroupfs syscalls, done on the loop; events arrive through
``loop.add_reader`` on the eventfd.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _keyed(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[key] = int(value)
    return out


class OomWatch:
    def __init__(self, root: Path = Path("/sys/fs/cgroup")) -> None:
        self.v2 = (root / "cgroup.controllers").exists()
        self._memory = root if self.v2 else root / "memory"
        self._killed: set[str] = set()
        self._fds: dict[str, tuple[int, int]] = {}  # v1: id -> (eventfd, oom_control fd)
        self._baseline: dict[str, tuple[Path, int]] = {}  # v2: id -> (pod memory.events, count)

    def cgroup_of(self, pid: int) -> str:
        """The memory cgroup of ``pid`` relative to the hierarchy we see (blocking; small).

        ``/proc/PID/cgroup`` names it from the cgroup namespace's root, which is not
        the mount's root when this host itself runs in a container: leading parts
        are dropped until the path exists under ``/sys/fs/cgroup``."""
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return ""
        for line in text.splitlines():
            _, controllers, path = line.split(":", 2)
            if (self.v2 and controllers == "") or "memory" in controllers.split(","):
                parts = path.strip("/").split("/")
                for i in range(len(parts)):
                    candidate = "/".join(parts[i:])
                    if candidate and (self._memory / candidate).is_dir():
                        return "/" + candidate
        return ""

    def arm(self, container_id: str, cgroup_path: str) -> None:
        """Start watching a running container whose cgroup is ``cgroup_path`` (Podman's
        ``State.CgroupPath``); a no-op if it is watched already or cannot be watched."""
        if not cgroup_path or container_id in self._fds or container_id in self._baseline:
            return
        cgroup = self._memory / cgroup_path.lstrip("/")
        try:
            if self.v2:
                events = cgroup.parent / "memory.events"
                count = _keyed(events.read_text()).get("oom_kill", 0)
                self._baseline[container_id] = (events, count)
            else:
                self._arm_v1(container_id, cgroup)
        except OSError as exc:
            log.debug("cannot watch %s for OOM kills: %s", container_id[:12], exc)

    def _arm_v1(self, container_id: str, cgroup: Path) -> None:
        ofd = os.open(cgroup / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        try:
            efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError:
            os.close(ofd)
            raise
        try:
            (cgroup / "cgroup.event_control").write_text(f"{efd} {ofd}")
            asyncio.get_running_loop().add_reader(efd, self._fired, container_id)
        except (OSError, RuntimeError):
            os.close(efd)
            os.close(ofd)
            raise
        self._fds[container_id] = (efd, ofd)

    def _fired(self, container_id: str) -> None:
        # The kernel signals when the cgroup hits its limit (before the kill is
        # counted) and when the cgroup is removed; in the second case the files
        # are gone already, so a readable file means an OOM.
        efd, ofd = self._fds[container_id]
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(efd)
        try:
            os.pread(ofd, 4096, 0)
        except OSError:
            pass  # removed: the container has gone without an OOM
        else:
            self._killed.add(container_id)
        self._close(container_id)

    def _close(self, container_id: str) -> None:
        fds = self._fds.pop(container_id, None)
        if fds is None:
            return
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_reader(fds[0])
        for fd in fds:
            os.close(fd)

    def oom_killed(self, container_id: str) -> bool:
        """Whether the memory cgroup killed the container (ask once it has exited)."""
        if container_id in self._killed:
            return True
        baseline = self._baseline.get(container_id)
        if baseline is not None:
            with contextlib.suppress(OSError):
                if _keyed(baseline[0].read_text()).get("oom_kill", 0) > baseline[1]:
                    self._killed.add(container_id)
                    return True
        return False

    def forget(self, container_id: str) -> None:
        self._killed.discard(container_id)
        self._baseline.pop(container_id, None)
        self._close(container_id)

    def close(self) -> None:
        for container_id in list(self._fds):
            self._close(container_id)
