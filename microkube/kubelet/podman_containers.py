"""Container, exec, attach and log operations of :class:`~microkube.kubelet.podman.PodmanRuntime`.

Split from ``podman.py`` to keep modules small; this mixin does not import
``podman``: it uses the host class's ``_run``/``_get``/``_post``/``_delete``
plumbing (blocking podman-py calls in worker threads, errors already mapped to
:mod:`runtime` exceptions) and :mod:`podman_stream` for live streams.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from microkube.kubelet import k8sfile
from microkube.kubelet import podman_stream as ps
from microkube.kubelet import runtime as rt
from microkube.kubelet.oomwatch import OomWatch

T = TypeVar("T")
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?")


def parse_time(value: Any) -> datetime | None:
    """Podman timestamps: RFC 3339 with nanoseconds, or unix seconds; zero → None."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC) if value > 0 else None
    m = _TS.match(value or "")
    if not m or m.group(1).startswith("0001-"):
        return None
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = m.group(3) or "Z"
    return datetime.fromisoformat(f"{m.group(1)}.{frac}{'+00:00' if tz == 'Z' else tz}")


def label_filter(instance: str, labels: dict[str, str] | None) -> list[str]:
    wanted = {rt.LABEL_INSTANCE: instance, **(labels or {})}
    return [f"{k}={v}" for k, v in wanted.items()]


def _status_from_inspect(info: dict[str, Any]) -> rt.ContainerStatus:
    state = info.get("State") or {}
    labels = (info.get("Config") or {}).get("Labels") or {}
    raw = (state.get("Status") or "").lower()
    phase: rt.ContainerState
    if raw in ("running", "paused", "stopping"):
        phase = "running"
    elif raw in ("exited", "stopped"):
        phase = "exited"
    elif raw in ("created", "configured", "initialized"):
        phase = "created"
    else:
        phase = "unknown"
    exit_code = state.get("ExitCode") if phase == "exited" else None
    oom = bool(state.get("OOMKilled"))
    reason = ""
    if phase == "exited":
        reason = "OOMKilled" if oom else ("Completed" if exit_code == 0 else "Error")
    started = parse_time(state.get("StartedAt"))
    finished = parse_time(state.get("FinishedAt")) if phase == "exited" else None
    if started and finished and finished < started:
        # Podman takes FinishedAt from the exit file's mtime (coarse kernel
        # clock), which can precede StartedAt by a few ms for instant exits.
        finished = started
    return rt.ContainerStatus(
        id=info["Id"],
        name=labels.get(rt.LABEL_CONTAINER_NAME, info.get("Name", "")),
        sandbox_id=info.get("Pod") or "",
        pod_uid=labels.get(rt.LABEL_POD_UID, ""),
        labels=labels,
        state=phase,
        exit_code=exit_code,
        started_at=started,
        finished_at=finished,
        created_at=parse_time(info.get("Created")),
        image=info.get("ImageName", ""),
        image_id=info.get("Image", ""),
        restart_count=int(labels.get(rt.LABEL_RESTART_COUNT, "0") or 0),
        oom_killed=oom,
        reason=reason,
        message=state.get("Error", "") or "",
    )


class ContainerOps:
    """Container-level methods; mixed into ``PodmanRuntime``."""

    instance: str
    socket_path: Path
    _run: Callable[..., Any]
    _get: Callable[..., Any]
    _post: Callable[..., Any]
    _delete: Callable[..., None]
    _labels: Callable[..., dict[str, str]]
    _oom: OomWatch
    _inspected: dict[str, tuple[tuple[Any, ...], rt.ContainerStatus]]
    """Container id → (list-entry state key, status from the last inspect)."""
    _sandbox_labels: dict[str, tuple[str, dict[str, str]]]
    """Sandbox (pod) id → (full id, labels); saves an inspect per container create."""

    async def create_container(self, sandbox_id: str, config: rt.ContainerConfig) -> str:
        known = self._sandbox_labels.get(sandbox_id)
        if known is None:
            pod = await self._run(partial(self._get, f"/pods/{sandbox_id}/json"))
            known = self._sandbox_labels[sandbox_id] = (pod["Id"], pod.get("Labels") or {})
        pod_id, pod_labels = known
        uid = pod_labels.get(rt.LABEL_POD_UID, "")
        ns, pod_name = pod_labels.get(rt.LABEL_NAMESPACE, ""), pod_labels.get(rt.LABEL_POD_NAME, "")
        labels = self._labels(
            config.labels,
            **{
                rt.LABEL_POD_UID: uid,
                rt.LABEL_NAMESPACE: ns,
                rt.LABEL_POD_NAME: pod_name,
                rt.LABEL_CONTAINER_NAME: config.name,
                rt.LABEL_RESTART_COUNT: str(config.restart_count),
            },
        )
        name = (
            f"{self.instance}_{ns}_{pod_name}_{config.name}_{config.restart_count}"
            f"_{uid.replace('-', '')[:8]}"
        )
        body: dict[str, Any] = {
            "name": name,
            "image": rt.normalize_image(config.image),
            "pod": pod_id,
            "labels": labels,
            "env": config.env,
            "terminal": config.tty,
            "stdin": config.stdin,
            "privileged": config.privileged,
            "cap_add": config.cap_add,
            "cap_drop": config.cap_drop,
            "read_only_filesystem": config.read_only_rootfs,
            "log_configuration": {"driver": "k8s-file"},
            "mounts": [
                {
                    "destination": m.container_path,
                    "source": m.host_path,
                    "type": "bind",
                    "options": ["rbind", "ro" if m.read_only else "rw"],
                }
                for m in config.mounts
            ],
        }
        if config.command:
            body["entrypoint"] = config.command
        if config.args:
            body["command"] = config.args
        if config.working_dir:
            body["work_dir"] = config.working_dir
        if config.user is not None or config.group is not None:
            user = str(config.user if config.user is not None else 0)
            body["user"] = user + (f":{config.group}" if config.group is not None else "")
        limits: dict[str, Any] = {}
        if config.memory_limit_bytes:
            limits["memory"] = {"limit": config.memory_limit_bytes}
        if config.cpu_limit_millis:
            limits["cpu"] = {"quota": config.cpu_limit_millis * 100, "period": 100_000}
        if limits:
            body["resource_limits"] = limits
        created = await self._run(partial(self._post, "/containers/create", body))
        return str(created["Id"])

    async def start_container(self, container_id: str) -> None:
        # init creates the cgroup with the process not yet running, so the OOM watch
        # is armed before the first allocation; then start runs it.
        await self._run(partial(self._post, f"/containers/{container_id}/init"))
        state = (await self.inspect_state(container_id)) or {}
        cgroup = state.get("CgroupPath") or ""
        if not cgroup and state.get("Pid"):  # not reported before start
            cgroup = await asyncio.to_thread(self._oom.cgroup_of, int(state["Pid"]))
        self._oom.arm(container_id, cgroup)
        await self._run(partial(self._post, f"/containers/{container_id}/start"))

    async def inspect_state(self, container_id: str) -> dict[str, Any]:
        info = await self._run(partial(self._get, f"/containers/{container_id}/json"))
        return dict(info.get("State") or {})

    def _with_oom(self, status: rt.ContainerStatus) -> rt.ContainerStatus:
        """Podman's OOMKilled, or our own cgroup watch's, for a container killed with 137."""
        if status.state == "exited" and status.exit_code == 137 and not status.oom_killed:
            if self._oom.oom_killed(status.id):
                status = dataclasses.replace(status, oom_killed=True, reason="OOMKilled")
        return status

    async def stop_container(self, container_id: str, grace_period: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_period`` seconds (Podman's stop)."""
        secs = max(0, int(round(grace_period)))
        path = f"/containers/{container_id}/stop"
        await self._run(partial(self._post, path, http_timeout=secs + 60, timeout=secs))

    async def remove_container(self, container_id: str) -> None:
        await self._run(partial(self._force_remove_container, container_id))
        self._inspected.pop(container_id, None)
        self._oom.forget(container_id)

    def _force_remove_container(self, container_id: str) -> None:
        # Kill first: a forced delete would otherwise wait the 10 s stop timeout.
        try:
            self._post(f"/containers/{container_id}/kill", signal="SIGKILL")
        except rt.ContainerRuntimeError:
            pass  # not running, or already gone
        self._delete(f"/containers/{container_id}", force="true", v="true")

    def _force_remove_pod(self, pod_id: str) -> None:
        try:
            self._post(f"/pods/{pod_id}/kill", signal="SIGKILL")
        except rt.ContainerRuntimeError:
            pass
        self._delete(f"/pods/{pod_id}", force="true")

    async def container_status(self, container_id: str) -> rt.ContainerStatus:
        info = await self._run(partial(self._get, f"/containers/{container_id}/json"))
        return self._with_oom(_status_from_inspect(info))

    async def list_containers(
        self, labels: dict[str, str] | None = None, *, sandbox_id: str | None = None
    ) -> list[rt.ContainerStatus]:
        filters: dict[str, list[str]] = {"label": label_filter(self.instance, labels)}
        filters["label"].append(rt.LABEL_CONTAINER_NAME)
        if sandbox_id:
            filters["pod"] = [sandbox_id]

        def go() -> list[rt.ContainerStatus]:
            out = []
            for c in self._get("/containers/json", all="true", filters=json.dumps(filters)):
                # One list call; a container is inspected again only when its
                # state changed since we last looked (the kubelet lists often).
                key = (c.get("State"), c.get("StartedAt"), c.get("ExitedAt"), c.get("ExitCode"))
                cached = self._inspected.get(c["Id"])
                if cached is not None and cached[0] == key:
                    out.append(copy.copy(cached[1]))
                    continue
                try:
                    info = self._get(f"/containers/{c['Id']}/json")
                    status = self._with_oom(_status_from_inspect(info))
                except rt.RuntimeNotFound:
                    continue
                self._inspected[c["Id"]] = (key, status)
                out.append(copy.copy(status))
            if labels is None and sandbox_id is None:
                for gone in set(self._inspected) - {s.id for s in out}:
                    self._inspected.pop(gone, None)
            return out

        result: list[rt.ContainerStatus] = await self._run(go)
        return result

    async def cleanup_all(self) -> None:
        """Remove every pod, container and network labelled with this instance.

        Goes on past an object that cannot be removed and tries the leftovers
        again (a container's ``shm`` mount can be briefly busy), then raises
        naming what is left.
        """
        flt = json.dumps({"label": label_filter(self.instance, None)})

        def attempt(fn: Callable[[], None], what: str, failed: list[str]) -> None:
            try:
                fn()
            except rt.ContainerRuntimeError as exc:
                failed.append(f"{what}: {exc}")

        def go() -> list[str]:
            failed: list[str] = []
            for round_ in range(3):
                failed = []
                for pod in self._get("/pods/json", filters=flt):
                    attempt(partial(self._force_remove_pod, pod["Id"]), "pod " + pod["Id"], failed)
                for c in self._get("/containers/json", all="true", filters=flt):
                    cid = c["Id"]
                    attempt(partial(self._force_remove_container, cid), "container " + cid, failed)
                for net in self._get("/networks/json", filters=flt):
                    remove = partial(self._delete, f"/networks/{net['name']}", force="true")
                    attempt(remove, "network " + net["name"], failed)
                if not failed:
                    break
                time.sleep(1 + round_)
            return failed

        failed = await self._run(go)
        if failed:
            raise rt.ContainerRuntimeError("cleanup left " + "; ".join(failed))

    # -- exec, attach, logs ------------------------------------------------

    async def _exec_wait(self, exec_id: str) -> int:
        while True:
            info = await ps.call(self.socket_path, "GET", f"/exec/{exec_id}/json")
            if not info.get("Running"):
                return int(info.get("ExitCode") or 0)
            await asyncio.sleep(0.02)

    async def exec_stream(
        self, container_id: str, cmd: list[str], *, tty: bool = False, stdin: bool = False
    ) -> ps.StreamSession:
        body = {
            "AttachStdin": stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": tty,
            "Cmd": cmd,
        }
        created = await ps.call(self.socket_path, "POST", f"/containers/{container_id}/exec", body)
        exec_id = created["Id"]
        resp = await ps.request(
            self.socket_path,
            "POST",
            f"/exec/{exec_id}/start",
            {"Detach": False, "Tty": tty},
            upgrade=True,
        )

        async def resize(width: int, height: int) -> None:
            await ps.call(self.socket_path, "POST", f"/exec/{exec_id}/resize?h={height}&w={width}")

        return ps.StreamSession(
            resp, tty=tty, resize=resize, wait=partial(self._exec_wait, exec_id)
        )

    async def exec_sync(
        self, container_id: str, cmd: list[str], timeout_seconds: float
    ) -> tuple[int, bytes, bytes]:
        """Run ``cmd`` to completion; raise ``TimeoutError`` after ``timeout_seconds``."""
        session = await self.exec_stream(container_id, cmd)
        out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        try:
            async with asyncio.timeout(timeout_seconds):
                while (chunk := await session.read()) is not None:
                    out[chunk[0]].append(chunk[1])
                code = await session.wait()
        finally:
            await session.close()
        return code, b"".join(out["stdout"]), b"".join(out["stderr"])

    async def attach(
        self, container_id: str, *, stdin: bool = False, tty: bool = False
    ) -> ps.StreamSession:
        flag = "true" if stdin else "false"
        resp = await ps.request(
            self.socket_path,
            "POST",
            f"/containers/{container_id}/attach?stream=true&stdout=true&stderr=true&stdin={flag}",
            upgrade=True,
        )

        async def resize(width: int, height: int) -> None:
            await ps.call(
                self.socket_path, "POST", f"/containers/{container_id}/resize?h={height}&w={width}"
            )

        async def wait() -> int:
            code = await ps.call(self.socket_path, "POST", f"/containers/{container_id}/wait")
            return int(code)

        return ps.StreamSession(resp, tty=tty, resize=resize, wait=wait)

    async def logs(
        self,
        container_id: str,
        *,
        follow: bool = False,
        since: datetime | None = None,
        tail: int | None = None,
        timestamps: bool = False,
    ) -> AsyncIterator[rt.LogLine]:
        # ``timestamps`` only matters to callers formatting the lines.
        del timestamps
        info = await self._run(partial(self._get, f"/containers/{container_id}/json"))
        log_config = (info.get("HostConfig") or {}).get("LogConfig") or {}
        path = log_config.get("Path") or info.get("LogPath") or ""
        readable = bool(path) and await asyncio.to_thread(os.access, path, os.R_OK)
        if log_config.get("Type") == "k8s-file" and readable:

            async def alive() -> bool:
                try:
                    return (await self.container_status(container_id)).state == "running"
                except rt.ContainerRuntimeError:
                    return False

            async for line in k8sfile.read(
                Path(path), parse_time, follow=follow, since=since, tail=tail, alive=alive
            ):
                yield line
            return
        async for line in self._api_logs(container_id, follow=follow, since=since, tail=tail):
            yield line

    async def _api_logs(
        self, container_id: str, *, follow: bool, since: datetime | None, tail: int | None
    ) -> AsyncIterator[rt.LogLine]:
        """Fallback through Podman's logs endpoint: one frame is one record, and a record
        without its newline is a fragment of the next one (second-resolution times)."""
        params = "stdout=true&stderr=true&timestamps=true"
        params += f"&follow={'true' if follow else 'false'}"
        if since is not None:
            params += f"&since={int(since.timestamp())}"
        if tail is not None:
            params += f"&tail={tail}"
        resp = await ps.request(
            self.socket_path, "GET", f"/containers/{container_id}/logs?{params}"
        )
        demux = ps.Demuxer(resp.read_some, tty=False)
        joiner = k8sfile.Joiner()
        try:
            while (chunk := await demux.next()) is not None:
                stream, data = chunk
                item = _log_line(stream, data)
                partial_line = not item.data.endswith(b"\n")
                rec = k8sfile.Record(item.timestamp, stream, partial_line, item.data.rstrip(b"\n"))
                line = joiner.feed(rec)
                if line is not None and (
                    since is None or line.timestamp is None or line.timestamp >= since
                ):
                    yield line
            for line in joiner.flush():
                yield line
        finally:
            resp.close()


def _log_line(stream: rt.Stream, line: bytes) -> rt.LogLine:
    stamp, sep, rest = line.partition(b" ")
    ts = parse_time(stamp.decode("ascii", "replace")) if sep else None
    return rt.LogLine(stream=stream, data=rest if ts else line, timestamp=ts)
