"""Pod lifecycle event generator: one relist of the runtime wakes the pods that changed.

Mirrors the kubelet's generic PLEG (``pkg/kubelet/pleg/generic.go``): every
``period`` seconds all containers of the instance are listed in one runtime
call and grouped by pod UID; a pod whose set of ``(container id, state)``
differs from the previous relist is handed to ``kick``.  So a container that
exits (or is killed behind the kubelet's back, or disappears) is noticed
within about a second, while a pod where nothing happens is only synced at
the kubelet's slower ``resync`` period.  The first relist reports every pod
that has containers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from microkube.kubelet import runtime as rt

log = logging.getLogger(__name__)

Snapshot = dict[str, frozenset[tuple[str, str]]]


def snapshot(containers: list[rt.ContainerStatus]) -> Snapshot:
    """Pod UID → its containers' ``(id, state)`` pairs."""
    out: dict[str, set[tuple[str, str]]] = {}
    for c in containers:
        out.setdefault(c.pod_uid, set()).add((c.id, c.state))
    return {uid: frozenset(v) for uid, v in out.items()}


def changed(old: Snapshot, new: Snapshot) -> set[str]:
    """UIDs of the pods whose containers differ between two relists."""
    return {uid for uid in old.keys() | new.keys() if old.get(uid) != new.get(uid)}


class Pleg:
    def __init__(self, runtime: rt.ContainerRuntime, *, period: float = 1.0) -> None:
        self.runtime = runtime
        self.period = period
        self._last: Snapshot = {}

    async def relist(self) -> set[str]:
        """List once; the UIDs whose containers changed since the last relist."""
        new = snapshot(await self.runtime.list_containers())
        out = changed(self._last, new)
        self._last = new
        return out

    async def run(self, kick: Callable[[str], None]) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                uids = await self.relist()
            except rt.ContainerRuntimeError as exc:
                log.debug("pleg relist failed: %s", exc)
                continue
            for uid in uids:
                kick(uid)
