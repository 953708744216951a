"""Writing pod status: runtime state → :func:`podstatus.compute` → ``pods/status``.

Mirrors the kubelet's status manager in the small: the status is recomputed
from the runtime on every sync and written through the status subresource
only when it differs from the stored one, inside a read-modify-write that
re-checks the pod UID (a pod re-created under the same name is never
overwritten).  Termination messages are read here, once per exited
container: the file bind-mounted at ``terminationMessagePath`` (at most 4096
bytes) or, with ``FallbackToLogsOnError``, the tail of a failed container's
logs.

Mixed into :class:`microkube.kubelet.kubelet.Kubelet`, whose attributes it uses.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

from microkube import errors
from microkube.kubelet import podstatus, probes, volumes
from microkube.kubelet import runtime as rt

Obj = dict[str, Any]


class StatusWriter:
    registry: Any
    runtime: rt.ContainerRuntime
    volumes: volumes.VolumeManager
    pods: dict[str, Obj]
    pods_rt: Any
    waiting: dict[str, dict[str, tuple[str, str]]]
    images: dict[str, dict[str, rt.ImageInfo]]
    trackers: dict[tuple[str, str, str, str], probes.ProbeTracker]
    node_ip: str
    now: Callable[[], datetime]
    _messages: dict[str, str]

    def runtime_state(
        self, pod: Obj, sandbox: rt.SandboxStatus | None, containers: list[rt.ContainerStatus]
    ) -> podstatus.PodRuntimeState:
        uid = pod["metadata"]["uid"]
        ready: dict[str, bool] = {}
        started: dict[str, bool] = {}
        current = {c.id for c in containers}
        for (puid, name, cid, kind), t in self.trackers.items():
            if puid != uid or cid not in current:
                continue
            if kind == "readiness":
                ready[name] = t.result
            elif kind == "startup":
                started[name] = t.result
        return podstatus.PodRuntimeState(
            sandbox=sandbox,
            containers=containers,
            waiting=dict(self.waiting.get(uid, {})),
            ready=ready,
            started=started,
            images=dict(self.images.get(uid, {})),
            host_ip=self.node_ip,
        )

    async def _with_message(self, pod: Obj, c: rt.ContainerStatus) -> rt.ContainerStatus:
        """A copy of ``c`` whose ``message`` is the termination message (once exited).

        Mirrors the kubelet: the file at ``terminationMessagePath`` (at most
        4096 bytes), or with ``FallbackToLogsOnError`` the last 80 log lines
        (at most 2048 bytes) of a failed container that left no message.
        """
        c = copy.copy(c)
        if c.state != "exited":
            return c
        if c.id not in self._messages:
            spec: Obj = next(
                (
                    x
                    for x in list((pod.get("spec") or {}).get("containers") or [])
                    + list((pod.get("spec") or {}).get("initContainers") or [])
                    if x.get("name") == c.name
                ),
                {},
            )
            path = self.volumes.pod_dir(pod["metadata"]["uid"]) / "containers" / c.name
            try:
                text = (path / str(c.restart_count)).read_bytes()[:4096].decode(errors="replace")
            except OSError:
                text = ""
            policy = spec.get("terminationMessagePolicy")
            if not text and policy == "FallbackToLogsOnError" and c.exit_code:
                lines = [line.data async for line in self.runtime.logs(c.id, tail=80)]
                text = b"".join(lines)[-2048:].decode(errors="replace")
            self._messages[c.id] = text
            while len(self._messages) > 10_000:
                self._messages.pop(next(iter(self._messages)))
        if self._messages[c.id]:
            c.message = self._messages[c.id]
        return c

    async def _write_status(
        self,
        pod: Obj,
        sandbox: rt.SandboxStatus | None,
        containers: list[rt.ContainerStatus] | None = None,
    ) -> None:
        uid = pod["metadata"]["uid"]
        if containers is None:
            containers = await self.runtime.list_containers({rt.LABEL_POD_UID: uid})
        containers = [await self._with_message(pod, c) for c in containers]
        state = self.runtime_state(pod, sandbox, [copy.copy(c) for c in containers])
        now = self.now()

        def mutate(fresh: Obj) -> Obj | None:
            if fresh["metadata"].get("uid") != uid:
                return None
            new = podstatus.compute(fresh, state, now=now)
            if new == fresh.get("status"):
                return None
            fresh["status"] = new
            return fresh

        try:
            out = await self.registry.guaranteed_update(
                self.pods_rt,
                pod["metadata"]["namespace"],
                pod["metadata"]["name"],
                mutate,
                subresource="status",
                field_manager="kubelet",
            )
        except errors.NotFound:
            return
        if out is not None and out["metadata"].get("uid") == uid and uid in self.pods:
            self.pods[uid] = out
