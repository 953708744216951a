"""Starting one container: image pull, config, create, start, postStart.

Mirrors ``kuberuntime_container.startContainer`` and the image manager:

* pulls honour ``imagePullPolicy``; an image already present gives upstream's
  ``Container image "x" already present on machine``; a failed pull is
  ``ErrImagePull`` (events ``Failed``) and later syncs inside the pull
  back-off show ``ImagePullBackOff`` (events ``BackOff``);
* ``ErrImageNeverPull`` and ``InvalidImageName`` are not retried by back-off;
* a container whose config cannot be built (missing ConfigMap key …) waits
  with ``CreateContainerConfigError``;
* older attempts are removed so that only the previous one remains, for
  ``lastState`` and ``kubectl logs --previous``.

Mixed into :class:`microkube.kubelet.kubelet.Kubelet`, whose attributes it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from microkube.controllers import events
from microkube.kubelet import containerspec, probes, pullsecrets, volumes
from microkube.kubelet import runtime as rt
from microkube.kubelet.backoff import Backoff

Obj = dict[str, Any]


def _consume_exception(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved by _image_present, or not needed


def field_path(name: str, init: bool) -> str:
    return f"spec.{'initContainers' if init else 'containers'}{{{name}}}"


class ContainerStarter:
    registry: Any
    runtime: rt.ContainerRuntime
    recorder: events.EventRecorder
    volumes: volumes.VolumeManager
    pull_backoff: Backoff
    restart_backoff: Backoff
    waiting: dict[str, dict[str, tuple[str, str]]]
    images: dict[str, dict[str, rt.ImageInfo]]
    node_ip: str
    resync: float
    now: Callable[[], datetime]
    _acted: set[str]
    _present: dict[tuple[str, str], asyncio.Task[rt.ImageInfo | None]]

    _node: Callable[[], Obj | None]

    def prefetch_images(self, pod: Obj) -> None:
        """Start looking up the pod's images now (while its sandbox is being created).

        Only for ``IfNotPresent``/``Never``; :meth:`_pull` consumes the answer.
        """
        uid = pod["metadata"]["uid"]
        spec = pod.get("spec") or {}
        for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
            image = str(c.get("image") or "")
            key = (uid, image)
            if image and (c.get("imagePullPolicy") or "IfNotPresent") != "Always":
                if key not in self._present:
                    task = asyncio.ensure_future(self.runtime.image_present(image))
                    task.add_done_callback(_consume_exception)
                    self._present[key] = task

    async def _image_present(self, uid: str, image: str) -> rt.ImageInfo | None:
        task = self._present.pop((uid, image), None)
        if task is not None:
            try:
                return await task
            except rt.ImagePullError:
                raise  # InvalidImageName: asking again gives the same answer
            except rt.ContainerRuntimeError:
                pass  # ask again below
        return await self.runtime.image_present(image)

    async def _pull(self, pod: Obj, c: Obj, fp: str) -> rt.ImageInfo | float:
        """The image, or the seconds to wait before trying again."""
        uid, name, image = pod["metadata"]["uid"], c["name"], c["image"]
        waiting = self.waiting.setdefault(uid, {})
        policy = c.get("imagePullPolicy") or "IfNotPresent"
        key = f"{uid}/{image}"
        try:
            if policy != "Always":
                present = await self._image_present(uid, image)
                if present is not None:
                    await self.recorder.event(
                        pod,
                        events.NORMAL,
                        "Pulled",
                        f'Container image "{image}" already present on machine',
                        field_path=fp,
                    )
                    self.images.setdefault(uid, {})[image] = present
                    return present
                if policy == "Never":
                    msg = f'Container image "{image}" is not present with pull policy of Never'
                    waiting[name] = ("ErrImageNeverPull", msg)
                    await self.recorder.event(
                        pod, events.WARNING, "ErrImageNeverPull", msg, field_path=fp
                    )
                    return 10.0
        except rt.ImagePullError as exc:
            waiting[name] = (exc.reason, str(exc))
            await self.recorder.event(pod, events.WARNING, "Failed", f"Error: {exc}", field_path=fp)
            return 10.0
        if self.pull_backoff.in_backoff_since_update(key):
            last = waiting.get(name, ("", ""))
            detail = last[1].split(": ErrImagePull: ", 1)[-1] if last[1] else ""
            waiting[name] = (
                "ImagePullBackOff",
                f'Back-off pulling image "{image}": ErrImagePull: {detail}',
            )
            await self.recorder.event(
                pod, events.NORMAL, "BackOff", f'Back-off pulling image "{image}"', field_path=fp
            )
            await self.recorder.event(
                pod, events.WARNING, "Failed", "Error: ImagePullBackOff", field_path=fp
            )
            return self.pull_backoff.remaining(key) + 0.01
        secrets, missing = pullsecrets.pod_secrets(pod, self.registry)
        if missing:
            await self.recorder.event(
                pod,
                events.WARNING,
                "FailedToRetrieveImagePullSecret",
                f"Unable to retrieve some image pull secrets ({', '.join(missing)}); "
                "attempting to pull the image may not succeed.",
            )
        await self.recorder.event(
            pod, events.NORMAL, "Pulling", f'Pulling image "{image}"', field_path=fp
        )
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            info = await self._pull_with(image, policy, secrets)
        except rt.ImagePullError as exc:
            waiting[name] = (exc.reason, str(exc))
            await self.recorder.event(
                pod,
                events.WARNING,
                "Failed",
                f'Failed to pull image "{image}": {exc}',
                field_path=fp,
            )
            await self.recorder.event(
                pod, events.WARNING, "Failed", f"Error: {exc.reason}", field_path=fp
            )
            if exc.reason != "ErrImagePull":
                return 10.0
            self.pull_backoff.next(key, self.now())
            return self.pull_backoff.remaining(key) + 0.01
        dt = loop.time() - t0
        await self.recorder.event(
            pod,
            events.NORMAL,
            "Pulled",
            f'Successfully pulled image "{image}" in {dt:.3f}s ({dt:.3f}s including waiting). '
            f"Image size: {info.size} bytes.",
            field_path=fp,
        )
        self.images.setdefault(uid, {})[image] = info
        return info

    async def _pull_with(self, image: str, policy: str, secrets: list[Obj]) -> rt.ImageInfo:
        """Pull with each matching credential in turn (anonymously if none matches)."""
        auths: list[rt.RegistryAuth | None] = list(pullsecrets.matching(image, secrets)) or [None]
        for i, auth in enumerate(auths):
            try:
                return await self.runtime.pull_image(image, policy, auth=auth)  # type: ignore[arg-type]
            except rt.ImagePullError as exc:
                if exc.reason != "ErrImagePull" or i == len(auths) - 1:
                    raise
        raise AssertionError("unreachable")

    def _view(self, pod: Obj, sandbox: rt.SandboxStatus) -> Obj:
        """The pod as the downward API sees it at start (IPs known)."""
        view = copy.deepcopy(pod)
        st = view.setdefault("status", {})
        if sandbox.ip:
            st["podIP"], st["podIPs"] = sandbox.ip, [{"ip": sandbox.ip}]
        st["hostIP"], st["hostIPs"] = self.node_ip, [{"ip": self.node_ip}]
        return view

    async def _fail(self, pod: Obj, name: str, fp: str, reason: str, message: str) -> float:
        uid = pod["metadata"]["uid"]
        self.waiting.setdefault(uid, {})[name] = (reason, message)
        await self.recorder.event(pod, events.WARNING, "Failed", f"Error: {message}", field_path=fp)
        key = f"{uid}/{name}#start"
        self.pull_backoff.next(key, self.now())
        return self.pull_backoff.remaining(key) + 0.01

    async def _start(
        self,
        pod: Obj,
        sandbox: rt.SandboxStatus,
        c: Obj,
        tries: list[rt.ContainerStatus],
        paths: dict[str, Path],
        *,
        init: bool = False,
    ) -> float:
        """Start a new attempt of container ``c``; seconds until the next sync."""
        uid, name = pod["metadata"]["uid"], c["name"]
        self._acted.add(uid)
        fp = field_path(name, init)
        start_key = f"{uid}/{name}#start"
        if self.pull_backoff.in_backoff_since_update(start_key):
            return self.pull_backoff.remaining(start_key) + 0.01
        pulled = await self._pull(pod, c, fp)
        if not isinstance(pulled, rt.ImageInfo):
            return pulled
        view = self._view(pod, sandbox)
        try:
            env = containerspec.build_env(view, c, self.registry, self._node())
            mounts = self.volumes.mounts(view, c, paths)
        except (containerspec.ConfigError, volumes.VolumeError, ValueError) as exc:
            return await self._fail(pod, name, fp, "CreateContainerConfigError", str(exc))
        ran = [t for t in tries if t.state != "created"]
        restart_count = ran[-1].restart_count + 1 if ran else 0
        for old in [t for t in tries if t.state == "created"] + ran[:-1]:
            with contextlib.suppress(rt.ContainerRuntimeError):
                await self.runtime.remove_container(old.id)
        term_path = c.get("terminationMessagePath") or "/dev/termination-log"
        if not any(m.container_path == term_path for m in mounts):
            log_file = self.volumes.termination_log(uid, name, restart_count)
            mounts.append(rt.Mount(str(log_file), term_path))
        cfg = containerspec.container_config(
            view, c, env=env, mounts=mounts, restart_count=restart_count
        )
        try:
            cid = await self.runtime.create_container(sandbox.id, cfg)
        except rt.ContainerRuntimeError as exc:
            return await self._fail(pod, name, fp, "CreateContainerError", str(exc))
        await self.recorder.event(
            pod, events.NORMAL, "Created", f"Created container: {name}", field_path=fp
        )
        try:
            await self.runtime.start_container(cid)
        except rt.ContainerRuntimeError as exc:
            with contextlib.suppress(rt.ContainerRuntimeError):
                await self.runtime.remove_container(cid)
            return await self._fail(pod, name, fp, "RunContainerError", str(exc))
        await self.recorder.event(
            pod, events.NORMAL, "Started", f"Started container {name}", field_path=fp
        )
        self.waiting.get(uid, {}).pop(name, None)
        post = (c.get("lifecycle") or {}).get("postStart")
        if post:
            ok, msg = await probes.run(
                post,
                runtime=self.runtime,
                container_id=cid,
                pod_ip=sandbox.ip,
                container=c,
                timeout=30.0,
            )
            if not ok:
                await self.recorder.event(
                    pod,
                    events.WARNING,
                    "FailedPostStartHook",
                    f"PostStartHook failed: {msg}",
                    field_path=fp,
                )
                grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
                with contextlib.suppress(rt.ContainerRuntimeError):
                    await self.runtime.stop_container(cid, grace)
        return 0.05 if init else self.resync
