"""pods/log, pods/exec, pods/attach and pods/portforward, served from the container runtime.

Upstream splits this between the apiserver (``pkg/registry/core/pod``: option parsing,
container choice, the node check) and the kubelet's HTTP server (container state,
streaming).  In one process both halves meet here::

    HTTP  …/log                  → pod + container → runtime.logs()          → text/plain stream
    HTTP  …/exec|attach  (SPDY)  → pod + container → runtime.exec_stream()   → remotecommand.spdy_response
    WS    …/exec|attach          → pod + container → runtime.exec_stream()   → serve_remotecommand_ws
    HTTP  …/portforward  (SPDY)  → pod → sandbox   → runtime.open_port       → portforward.spdy_response
    WS    …/portforward                                                      → serve_portforward_ws

Containers are found through the runtime by their labels (pod uid + container name),
never through the kubelet's memory, so streams keep working across a microkube restart
and whatever the sync loop is doing.  Of several attempts (``LABEL_RESTART_COUNT``) the
newest started one is "current" and the started one before it is "previous", which is
what the kubelet's ``lastState.terminated.containerID`` points at.

Errors are raised as :mod:`microkube.errors` before any upgrade, so kubectl prints
the upstream text (``Error from server (BadRequest): …``); on the WebSocket route they
are sent as an HTTP denial response, from which kubectl ≥ 1.30 falls back to SPDY and
gets the same error again on the HTTP route.

Log lines are formatted by :mod:`microkube.kubelet.podlogs`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket

from microkube import errors
from microkube.api.requestinfo import RequestInfo
from microkube.api.streams import channels, portforward, remotecommand, upgrade
from microkube.kubelet import podlogs
from microkube.kubelet import runtime as rt
from microkube.resources.registry import Registry
from microkube.resources.types import ResourceType

_COMPLETED = ("Succeeded", "Failed")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def container_names(pod: dict[str, Any]) -> list[str]:
    """Init, regular and ephemeral container names, in ``VisitContainers`` order."""
    spec = pod.get("spec") or {}
    return [
        c.get("name", "")
        for key in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(key) or []
    ]


def choose_container(pod: dict[str, Any], requested: str) -> str:
    """The container a request is for (mirrors apiserver's ``validateContainer``).

    Beyond upstream, the ``kubectl.kubernetes.io/default-container`` annotation picks
    the container of a multi-container pod when none is named (kubectl does the same
    on its side, so this only matters to other clients).
    """
    name = pod["metadata"]["name"]
    if requested:
        if requested not in container_names(pod):
            raise errors.BadRequest(f"container {requested} is not valid for pod {name}")
        return requested
    containers = (pod.get("spec") or {}).get("containers") or []
    default = (pod["metadata"].get("annotations") or {}).get(
        "kubectl.kubernetes.io/default-container", ""
    )
    if default and default in container_names(pod):
        return str(default)
    if len(containers) == 1:
        return str(containers[0].get("name", ""))
    if not containers:
        raise errors.BadRequest(f"a container name must be specified for pod {name}")
    listed = " ".join(container_names(pod))
    raise errors.BadRequest(
        f"a container name must be specified for pod {name}, choose one of: [{listed}]"
    )


def container_spec(pod: dict[str, Any], container: str) -> dict[str, Any]:
    spec = pod.get("spec") or {}
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if c.get("name") == container:
                return dict(c)
    return {}


def container_status(pod: dict[str, Any], container: str) -> dict[str, Any]:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for c in status.get(key) or []:
            if c.get("name") == container:
                return dict(c)
    return {}


@dataclass
class _Exec:
    """A validated exec/attach request."""

    sub: str
    spec: dict[str, Any]
    container_id: str
    flags: dict[str, bool]
    command: list[str]


class _AttachSession:
    """An attach as the CRI runtimes do it.

    * Its end is always a success: the CRI's Attach reports no exit code (the stream
      just ends with the container), and kubectl ``run -i`` takes a failure Status
      for "couldn't attach" and prints the logs a second time; it reads the exit code
      from the pod instead.
    * The client's end of stdin reaches the container only with ``stdinOnce``
      (CRI-O/containerd); otherwise stdin stays open for the next attach.
    """

    def __init__(self, inner: rt.ExecSession, *, stdin_once: bool) -> None:
        self._inner = inner
        self._stdin_once = stdin_once

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def close_stdin(self) -> None:
        if self._stdin_once:
            await self._inner.close_stdin()

    async def read(self) -> tuple[rt.Stream, bytes] | None:
        return await self._inner.read()

    async def resize(self, width: int, height: int) -> None:
        await self._inner.resize(width, height)

    async def wait(self) -> int:
        return 0

    async def close(self) -> None:
        await self._inner.close()


def _started(c: rt.ContainerStatus) -> bool:
    return c.state in ("running", "exited") or c.started_at is not None


class PodStreams:
    """The ``ctx.pod_streams`` provider: resolves pods and containers, then streams.

    Args:
        registry: where pods are read from (the same validation path as the API).
        runtime: the kubelet's container runtime.
    """

    def __init__(self, registry: Registry, runtime: rt.ContainerRuntime) -> None:
        self.registry = registry
        self.runtime = runtime

    # -- lookups --------------------------------------------------------------------

    def _pods(self) -> ResourceType:
        pods = self.registry.catalog.get("", "v1", "pods")
        assert pods is not None
        return pods

    def _pod(self, info: RequestInfo) -> dict[str, Any]:
        return self.registry.get(self._pods(), info.namespace, info.name)

    async def _attempts(self, pod: dict[str, Any], container: str) -> list[rt.ContainerStatus]:
        """The runtime's containers for ``container``, oldest attempt first."""
        found = await self.runtime.list_containers(
            {rt.LABEL_POD_UID: pod["metadata"]["uid"], rt.LABEL_CONTAINER_NAME: container}
        )
        return sorted(found, key=lambda c: (c.restart_count, c.created_at or _EPOCH))

    async def log_container(
        self, pod: dict[str, Any], container: str, *, previous: bool
    ) -> rt.ContainerStatus:
        """The container whose logs are wanted (mirrors kubelet's ``validateContainerLogStatus``)."""
        name = pod["metadata"]["name"]
        attempts = await self._attempts(pod, container)
        started = [c for c in attempts if _started(c)]
        state = container_status(pod, container).get("state") or {}
        # The next attempt is waiting (created but not started, or in back-off): the
        # newest started attempt is then lastState, for current and previous alike.
        newest_waits = bool(attempts) and not _started(attempts[-1])
        if "waiting" in state and started and started[-1].state == "exited":
            newest_waits = True
        if previous:
            # While the next attempt waits, lastState is the newest started attempt.
            want = started[-1:] if newest_waits else started[-2:-1]
            if not want:
                raise errors.BadRequest(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            return want[0]
        if started:
            return started[-1]
        if "terminated" in state:
            raise errors.BadRequest(f'container "{container}" in pod "{name}" is terminated')
        reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
        if reason == "ErrImagePull":
            reason = "image can't be pulled"
        elif reason == "ImagePullBackOff":
            reason = "trying and failing to pull image"
        raise errors.BadRequest(
            f'container "{container}" in pod "{name}" is waiting to start: {reason}'
        )

    async def running_container(self, pod: dict[str, Any], container: str) -> rt.ContainerStatus:
        """The running attempt of ``container``, for exec and attach."""
        phase = (pod.get("status") or {}).get("phase", "")
        if phase in _COMPLETED:
            raise errors.BadRequest(
                f"cannot exec into a container in a completed pod; current phase is {phase}"
            )
        if not (pod.get("spec") or {}).get("nodeName"):
            raise errors.BadRequest(f"pod {pod['metadata']['name']} does not have a host assigned")
        running = [c for c in await self._attempts(pod, container) if c.state == "running"]
        if not running:
            raise errors.BadRequest(f'container not found ("{container}")')
        return running[-1]

    async def sandbox(self, pod: dict[str, Any]) -> rt.SandboxStatus:
        """The pod's ready sandbox, for port-forward."""
        phase = (pod.get("status") or {}).get("phase", "")
        if phase != "Running":
            raise errors.BadRequest(
                f"unable to forward port because pod is not running. Current status={phase}"
            )
        sandboxes = await self.runtime.list_sandboxes({rt.LABEL_POD_UID: pod["metadata"]["uid"]})
        ready = [s for s in sandboxes if s.state == "ready"]
        if not ready:
            raise errors.BadRequest(
                "unable to forward port because pod is not running. Current status=Pending"
            )
        return ready[-1]

    # -- exec / attach ----------------------------------------------------------------

    async def _prepare_exec(self, sub: str, info: RequestInfo, query: QueryParams) -> _Exec:
        """Validate an exec/attach request and find its running container."""
        pod = self._pod(info)
        container = choose_container(pod, query.get("container", ""))
        flags = {n: podlogs.parse_bool(query, n) for n in ("stdin", "stdout", "stderr", "tty")}
        command = query.getlist("command")
        if sub == "exec" and not command:
            raise errors.BadRequest("you must specify at least one command for the container")
        if flags["tty"] and flags["stderr"]:
            flags["stderr"] = False  # kubelet: stderr is merged into stdout with a tty
        if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
            raise errors.BadRequest("you must specify at least 1 of stdin, stdout, stderr")
        target = await self.running_container(pod, container)
        return _Exec(sub, container_spec(pod, container), target.id, flags, command)

    async def _open_session(self, req: _Exec) -> rt.ExecSession:
        flags = req.flags
        try:
            if req.sub == "exec":
                return await self.runtime.exec_stream(
                    req.container_id, req.command, tty=flags["tty"], stdin=flags["stdin"]
                )
            # Attach: the terminal is the container's own (kubelet reads it from the spec).
            session = await self.runtime.attach(
                req.container_id,
                stdin=flags["stdin"] and bool(req.spec.get("stdin")),
                tty=bool(req.spec.get("tty")),
            )
            return _AttachSession(session, stdin_once=bool(req.spec.get("stdinOnce")))
        except rt.ContainerRuntimeError as exc:
            raise errors.InternalError(f"unable to {req.sub}: {exc}") from exc

    # -- entry points -----------------------------------------------------------------

    async def handle(
        self, request: Request, info: RequestInfo, rt_: ResourceType
    ) -> Response | upgrade.UpgradeResponse:
        """HTTP GET/POST on ``pods/{log,exec,attach,portforward}``."""
        sub = info.subresource.split("/")[0]
        query = request.query_params
        if sub == "log":
            if request.method != "GET":
                raise errors.MethodNotAllowed(
                    "the server does not allow this method on the requested resource"
                )
            return await self._log(info, query)
        if request.method not in ("GET", "POST"):
            raise errors.MethodNotAllowed(
                "the server does not allow this method on the requested resource"
            )
        if sub == "portforward":
            sandbox = await self.sandbox(self._pod(info))
            if not upgrade.is_spdy_upgrade(request.scope):
                raise errors.BadRequest("Upgrade request required")
            return portforward.spdy_response(functools.partial(self.runtime.open_port, sandbox.id))
        req = await self._prepare_exec(sub, info, query)
        if not upgrade.is_spdy_upgrade(request.scope):
            raise errors.BadRequest("Upgrade request required")
        session = await self._open_session(req)
        return remotecommand.spdy_response(session, **req.flags)

    async def websocket(self, websocket: WebSocket, info: RequestInfo) -> None:
        """WebSocket on ``pods/{exec,attach,portforward}`` (kubectl ≥ 1.30/1.31)."""
        sub = info.subresource.split("/")[0]
        query = websocket.query_params
        offered = [p.strip() for p in websocket.scope.get("subprotocols") or []]
        try:
            if sub == "portforward":
                sandbox = await self.sandbox(self._pod(info))
                connect = functools.partial(self.runtime.open_port, sandbox.id)
                await portforward.serve_portforward_ws(websocket, connect)
                return
            req = await self._prepare_exec(sub, info, query)
            if channels.negotiate(offered) is None:
                await websocket.close(code=1002)  # refused handshake: kubectl falls back to SPDY
                return
            session = await self._open_session(req)
        except errors.ApiError as exc:
            await _deny(websocket, exc)
            return
        await remotecommand.serve_remotecommand_ws(websocket, session, **req.flags)

    # -- log --------------------------------------------------------------------------

    async def _log(self, info: RequestInfo, query: QueryParams) -> Response:
        opts = podlogs.parse_options(query, info.name)
        pod = self._pod(info)
        container = choose_container(pod, opts.container)
        if not (pod.get("spec") or {}).get("nodeName"):
            return Response(b"", media_type="text/plain")  # apiserver: no node, empty stream
        target = await self.log_container(pod, container, previous=opts.previous)
        lines = podlogs.stream(self.runtime, target.id, opts)
        return StreamingResponse(lines, media_type="text/plain")


async def _deny(websocket: WebSocket, exc: errors.ApiError) -> None:
    """Refuse a WebSocket handshake with the error's Status as an HTTP response."""
    from microkube.api import negotiation

    body = negotiation.dumps(exc.status())
    if "websocket.http.response" in (websocket.scope.get("extensions") or {}):
        response = Response(body, status_code=exc.code, media_type="application/json")
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008)
