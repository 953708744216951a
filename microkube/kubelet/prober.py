"""Running a running container's probes from the sync loop.

The pure timing lives in :class:`microkube.kubelet.probes.ProbeTracker`; this
mixin keeps one tracker per (pod, container, container ID, kind), runs the
due ones concurrently, records ``Unhealthy`` events and kills a container
whose liveness (or startup) probe failed ``failureThreshold`` times, as
upstream's prober manager does.  A startup probe holds the other probes back
until it succeeds.

Mixed into :class:`microkube.kubelet.kubelet.Kubelet`, whose attributes it uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from microkube.controllers import events
from microkube.kubelet import probes, starter
from microkube.kubelet import runtime as rt

Obj = dict[str, Any]


class Prober:
    runtime: rt.ContainerRuntime
    recorder: events.EventRecorder
    waiting: dict[str, dict[str, tuple[str, str]]]
    trackers: dict[tuple[str, str, str, str], probes.ProbeTracker]
    resync: float
    now: Callable[[], datetime]

    _kill: Callable[..., Awaitable[None]]

    async def _probe(
        self, pod: Obj, sandbox: rt.SandboxStatus, c: Obj, latest: rt.ContainerStatus
    ) -> float:
        uid, name = pod["metadata"]["uid"], c["name"]
        self.waiting.get(uid, {}).pop(name, None)
        now = self.now()
        started_at = latest.started_at or now
        ts: dict[str, probes.ProbeTracker] = {}
        for kind in probes.KINDS:
            probe = c.get(probes.FIELD[kind])
            if not probe:
                continue
            for stale in [k for k in self.trackers if k[:2] == (uid, name) and k[2] != latest.id]:
                del self.trackers[stale]
            key = (uid, name, latest.id, kind)
            if key not in self.trackers:
                self.trackers[key] = probes.ProbeTracker(kind, probe, started_at)
            ts[kind] = self.trackers[key]
        started = ts["startup"].result if "startup" in ts else True
        due = [
            t
            for k, t in ts.items()
            if t.due(now) and (k == "startup" and not started or k != "startup" and started)
        ]

        async def one(t: probes.ProbeTracker) -> tuple[probes.ProbeTracker, bool, str]:
            ok, msg = await probes.run(
                t.probe,
                runtime=self.runtime,
                container_id=latest.id,
                pod_ip=sandbox.ip,
                container=c,
                timeout=t.timeout,
            )
            return t, ok, msg

        for t, ok, msg in await asyncio.gather(*(one(t) for t in due)):
            before = t.result
            t.record(ok, now, msg)
            label = t.kind.capitalize()
            if not ok:
                await self.recorder.event(
                    pod,
                    events.WARNING,
                    "Unhealthy",
                    f"{label} probe failed: {msg}",
                    field_path=starter.field_path(name, False),
                )
            threshold = max(1, int(t.probe.get("failureThreshold") or 3))
            if (t.kind == "liveness" and before and not t.result) or (
                t.kind == "startup" and not ok and t.failures >= threshold
            ):
                grace = t.probe.get("terminationGracePeriodSeconds")
                if grace is None:
                    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                await self._kill(
                    pod,
                    latest,
                    c,
                    float(grace),
                    reason=f"Container {name} failed {t.kind} probe, will be restarted",
                )
                return 0.05
        later = [(t.next_due() - self.now()).total_seconds() for t in ts.values()]
        return max(0.05, min(later)) if later else self.resync
