"""Stopping pods: graceful termination, deadlines, orphans.

Mirrors the kubelet's ``killPod`` path: each running container gets a
``Killing`` event, its ``preStop`` hook (bounded by the grace period), then
SIGTERM and SIGKILL once the rest of the grace period is spent (the runtime's
``stop_container``).  After a deleted pod's containers are gone, its sandbox
and volumes are removed and the Pod object is deleted with grace 0, which is
what lets ``kubectl delete`` return.  ``activeDeadlineSeconds`` kills the pod
and marks it Failed/DeadlineExceeded.

Mixed into :class:`microkube.kubelet.kubelet.Kubelet`, whose attributes it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from microkube import errors
from microkube.controllers import events
from microkube.kubelet import podstatus, probes, starter, volumes
from microkube.kubelet import runtime as rt
from microkube.kubelet.backoff import Backoff
from microkube.resources.registry import DeleteOptions

Obj = dict[str, Any]


class Terminator:
    registry: Any
    runtime: rt.ContainerRuntime
    recorder: events.EventRecorder
    volumes: volumes.VolumeManager
    restart_backoff: Backoff
    pull_backoff: Backoff
    pods: dict[str, Obj]
    pods_rt: Any
    sandboxes: dict[str, rt.SandboxStatus]
    waiting: dict[str, dict[str, tuple[str, str]]]
    images: dict[str, dict[str, rt.ImageInfo]]
    trackers: dict[tuple[str, str, str, str], probes.ProbeTracker]
    now: Callable[[], datetime]
    _acted: set[str]
    _checked: dict[str, float]
    _unsure: set[str]
    _present: dict[tuple[str, str], asyncio.Task[rt.ImageInfo | None]]

    runtime_state: Callable[
        [Obj, rt.SandboxStatus | None, list[rt.ContainerStatus]], podstatus.PodRuntimeState
    ]

    async def _remove_sandbox(self, sb: rt.SandboxStatus, *, grace: float) -> None:
        for c in await self.runtime.list_containers(sandbox_id=sb.id):
            if c.state == "running":
                with contextlib.suppress(rt.ContainerRuntimeError):
                    await self.runtime.stop_container(c.id, grace)
        with contextlib.suppress(rt.RuntimeNotFound):
            await self.runtime.remove_pod_sandbox(sb.id)

    def _deadline_left(self, pod: Obj) -> float | None:
        """Seconds left of ``activeDeadlineSeconds`` (None: no deadline or not started)."""
        limit = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        start = (pod.get("status") or {}).get("startTime")
        if limit is None or not start:
            return None
        begun = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        return float(limit) - (self.now() - begun).total_seconds()

    async def _deadline_exceeded(self, pod: Obj) -> None:
        """Mirrors the kubelet's activeDeadlineHandler: kill, then phase Failed."""
        message = "Pod was active on the node longer than the specified deadline"
        await self.recorder.event(pod, events.WARNING, "DeadlineExceeded", message)
        grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        uid = pod["metadata"]["uid"]
        running = [
            c
            for c in await self.runtime.list_containers({rt.LABEL_POD_UID: uid})
            if c.state == "running"
        ]
        specs = {c["name"]: c for c in (pod.get("spec") or {}).get("containers") or []}
        await asyncio.gather(*(self._kill(pod, c, specs.get(c.name, {}), grace) for c in running))
        sandbox = self.sandboxes.get(uid)
        containers = await self.runtime.list_containers({rt.LABEL_POD_UID: uid})
        state = self.runtime_state(pod, sandbox, containers)
        now = self.now()

        def mutate(fresh: Obj) -> Obj | None:
            if fresh["metadata"].get("uid") != uid:
                return None
            st = podstatus.compute(fresh, state, now=now)
            st.update(phase="Failed", reason="DeadlineExceeded", message=message)
            fresh["status"] = st
            return fresh

        with contextlib.suppress(errors.NotFound):
            await self.registry.guaranteed_update(
                self.pods_rt,
                pod["metadata"]["namespace"],
                pod["metadata"]["name"],
                mutate,
                subresource="status",
                field_manager="kubelet",
            )

    async def _forget(self, uid: str) -> None:
        """The pod is gone from the API: kill what is left of it."""
        sb = self.sandboxes.pop(uid, None)
        if sb is None:
            for s in await self.runtime.list_sandboxes({rt.LABEL_POD_UID: uid}):
                sb = s
        if sb is not None:
            await self._remove_sandbox(sb, grace=0)
        self.volumes.cleanup(uid)
        self._drop_state(uid)

    def _drop_state(self, uid: str) -> None:
        self._checked.pop(uid, None)
        self._unsure.discard(uid)
        for image_key in [k for k in self._present if k[0] == uid]:
            self._present.pop(image_key).cancel()
        self.waiting.pop(uid, None)
        self.images.pop(uid, None)
        self.restart_backoff.forget_prefix(uid + "/")
        self.pull_backoff.forget_prefix(uid + "/")
        for key in [k for k in self.trackers if k[0] == uid]:
            del self.trackers[key]

    async def _finish(self, pod: Obj) -> None:
        """A finished pod: nothing runs any more and its sandbox gives its network back.

        Mirrors the kubelet killing a terminal pod's sandbox: the exited
        containers stay (``kubectl logs`` works) until the pod is deleted.
        """
        await self._stop_all(pod, grace=0)
        uid = pod["metadata"]["uid"]
        sb = self.sandboxes.get(uid)
        if sb is not None and sb.state == "ready":
            with contextlib.suppress(rt.ContainerRuntimeError):
                await self.runtime.stop_pod_sandbox(sb.id)
                self.sandboxes[uid] = dataclasses.replace(sb, state="notready")

    async def _stop_all(self, pod: Obj, *, grace: float) -> None:
        uid = pod["metadata"]["uid"]
        for c in await self.runtime.list_containers({rt.LABEL_POD_UID: uid}):
            if c.state == "running":
                with contextlib.suppress(rt.ContainerRuntimeError):
                    await self.runtime.stop_container(c.id, grace)

    async def terminate(self, pod: Obj) -> None:
        """Graceful termination, then delete the pod object (grace 0)."""
        m = pod["metadata"]
        uid = m["uid"]
        grace = m.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        running = [
            c
            for c in await self.runtime.list_containers({rt.LABEL_POD_UID: uid})
            if c.state == "running"
        ]
        specs = {
            c["name"]: c
            for c in list((pod.get("spec") or {}).get("containers") or [])
            + list((pod.get("spec") or {}).get("initContainers") or [])
        }
        await asyncio.gather(
            *(self._kill(pod, c, specs.get(c.name, {}), float(grace)) for c in running)
        )
        sb = self.sandboxes.pop(uid, None)
        if sb is None:
            found = await self.runtime.list_sandboxes({rt.LABEL_POD_UID: uid})
            sb = found[0] if found else None
        if sb is not None:
            await self._remove_sandbox(sb, grace=0)
        self.volumes.cleanup(uid)
        self._drop_state(uid)
        try:
            await self.registry.delete(
                self.pods_rt,
                m["namespace"],
                m["name"],
                DeleteOptions(grace_period_seconds=0, preconditions={"uid": uid}),
            )
        except (errors.NotFound, errors.Conflict):
            pass
        self.pods.pop(uid, None)

    async def _kill(
        self, pod: Obj, c: rt.ContainerStatus, spec: Obj, grace: float, reason: str = ""
    ) -> None:
        self._acted.add(pod["metadata"]["uid"])
        await self.recorder.event(
            pod,
            events.NORMAL,
            "Killing",
            reason or f"Stopping container {c.name}",
            field_path=starter.field_path(c.name, False),
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        pre_stop = (spec.get("lifecycle") or {}).get("preStop")
        if pre_stop and grace > 0:
            ip = self.sandboxes[c.pod_uid].ip if c.pod_uid in self.sandboxes else ""
            with contextlib.suppress(TimeoutError):
                ok, msg = await asyncio.wait_for(
                    probes.run(
                        pre_stop,
                        runtime=self.runtime,
                        container_id=c.id,
                        pod_ip=ip,
                        container=spec,
                        timeout=grace,
                    ),
                    grace,
                )
                if not ok:
                    await self.recorder.event(
                        pod,
                        events.WARNING,
                        "FailedPreStopHook",
                        f"PreStopHook failed: {msg}",
                        field_path=starter.field_path(c.name, False),
                    )
        left = max(0.0, grace - (loop.time() - start))
        with contextlib.suppress(rt.ContainerRuntimeError):
            await self.runtime.stop_container(c.id, left)
