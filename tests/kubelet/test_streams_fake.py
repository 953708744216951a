"""pods/log, exec, attach and portforward through the real API app, with FakeRuntime.

A real Registry on SQLite in tmp_path holds the pods; the fake runtime holds a sandbox
and labelled containers created directly (as the kubelet would). HTTP goes through
``httpx.ASGITransport``; WebSocket exchanges drive the same ASGI app in-process.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from microkube.api import app as api_app
from microkube.api.context import ApiContext
from microkube.api.streams import channels
from microkube.kubelet import fake
from microkube.kubelet import runtime as rt
from microkube.kubelet.streams import PodStreams
from microkube.resources.registry import Registry

pytestmark = pytest.mark.anyio
IMAGE = "busybox"


class Env:
    def __init__(self, registry: Registry, runtime: fake.FakeRuntime) -> None:
        self.registry = registry
        self.runtime = runtime
        ctx = ApiContext(registry, registry.catalog, pod_streams=PodStreams(registry, runtime))
        self.app = api_app.create_app(ctx)
        self.pods = registry.catalog.get("", "v1", "pods")

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://t")

    async def pod(
        self,
        name: str,
        containers: list[str],
        *,
        phase: str = "Running",
        node: str = "node1",
        annotations: dict[str, str] | None = None,
        statuses: list[dict[str, Any]] | None = None,
        spec_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [{"name": c, "image": IMAGE} for c in containers]}
        if node:
            spec["nodeName"] = node
        spec.update(spec_extra or {})
        obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec,
        }
        await self.registry.create(self.pods, "default", obj)

        def status(o: dict[str, Any]) -> dict[str, Any]:
            o["status"] = {"phase": phase, "containerStatuses": statuses or []}
            return o

        out = await self.registry.guaranteed_update(
            self.pods, "default", name, status, subresource="status"
        )
        assert out is not None
        return out

    async def sandbox(self, pod: dict[str, Any]) -> str:
        m = pod["metadata"]
        s = await self.runtime.create_pod_sandbox(
            rt.PodSandboxConfig(uid=m["uid"], namespace="default", name=m["name"])
        )
        return s.id

    async def container(
        self,
        sandbox: str,
        name: str,
        *,
        attempt: int = 0,
        start: bool = True,
        stop: bool = False,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> str:
        await self.runtime.pull_image(IMAGE)
        cid = await self.runtime.create_container(
            sandbox,
            rt.ContainerConfig(
                name=name, image=IMAGE, restart_count=attempt, env=env or {}, stdin=stdin
            ),
        )
        if start:
            await self.runtime.start_container(cid)
        if stop:
            await self.runtime.stop_container(cid, 0)
        return cid

    def log(self, cid: str, *lines: str, at: datetime | None = None) -> None:
        at = at or datetime.now(UTC)
        for text in lines:
            self.runtime.containers[cid].logs.append(rt.LogLine("stdout", text.encode(), at))


@pytest.fixture
def env(registry: Registry) -> Env:
    return Env(registry, fake.FakeRuntime("mkt"))


def _path(pod: str, sub: str) -> str:
    return f"/api/v1/namespaces/default/pods/{pod}/{sub}"


async def _error(resp: httpx.Response, code: int) -> str:
    assert resp.status_code == code, resp.text
    body = resp.json()
    assert body["kind"] == "Status" and body["code"] == code
    return str(body["message"])


# -- log ----------------------------------------------------------------------------


async def test_log_of_the_only_container(env: Env) -> None:
    pod = await env.pod("p", ["c"])
    cid = await env.container(await env.sandbox(pod), "c")
    env.log(cid, "one\n", "two\n")
    async with env.client() as client:
        resp = await client.get(_path("p", "log"))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == "fake container c started\none\ntwo\n"


async def test_log_tail_limit_and_timestamps(env: Env) -> None:
    pod = await env.pod("p", ["c"])
    cid = await env.container(await env.sandbox(pod), "c")
    at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    env.log(cid, "one\n", "two\n", "three\n", at=at)
    async with env.client() as client:
        tail = await client.get(_path("p", "log"), params={"tailLines": "2"})
        limited = await client.get(_path("p", "log"), params={"limitBytes": "30"})
        stamped = await client.get(
            _path("p", "log"), params={"tailLines": "1", "timestamps": "true"}
        )
    assert tail.text == "two\nthree\n"
    assert limited.text == "fake container c started\none\nt"  # 30 bytes, mid-line
    assert stamped.text == "2024-05-06T07:08:09.123456000Z three\n"


async def test_log_since_drops_older_lines(env: Env) -> None:
    pod = await env.pod("p", ["c"])
    cid = await env.container(await env.sandbox(pod), "c")
    env.runtime.containers[cid].logs.clear()
    env.log(cid, "old\n", at=datetime.now(UTC) - timedelta(hours=1))
    env.log(cid, "new\n")
    async with env.client() as client:
        secs = await client.get(_path("p", "log"), params={"sinceSeconds": "60"})
        since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        stamp = await client.get(_path("p", "log"), params={"sinceTime": since})
    assert secs.text == "new\n"
    assert stamp.text == "new\n"


async def test_log_option_validation(env: Env) -> None:
    await env.pod("p", ["c"])
    async with env.client() as client:
        neg = await client.get(_path("p", "log"), params={"tailLines": "-1"})
        both = await client.get(
            _path("p", "log"), params={"sinceSeconds": "5", "sinceTime": "2024-01-01T00:00:00Z"}
        )
        zero = await client.get(_path("p", "log"), params={"limitBytes": "0"})
    assert await _error(neg, 422) == (
        'PodLogOptions "p" is invalid: tailLines: Invalid value: -1: '
        "must be greater than or equal to 0"
    )
    assert "at most one of `sinceTime` or `sinceSeconds` may be specified" in await _error(
        both, 422
    )
    assert "limitBytes: Invalid value: 0: must be greater than 0" in await _error(zero, 422)


async def test_log_container_choice(env: Env) -> None:
    pod = await env.pod("multi", ["a", "b"])
    sandbox = await env.sandbox(pod)
    await env.container(sandbox, "a")
    b = await env.container(sandbox, "b")
    env.log(b, "from b\n")
    await env.pod(
        "annotated", ["a", "b"], annotations={"kubectl.kubernetes.io/default-container": "b"}
    )
    async with env.client() as client:
        none = await client.get(_path("multi", "log"))
        bad = await client.get(_path("multi", "log"), params={"container": "x"})
        chosen = await client.get(_path("multi", "log"), params={"container": "b"})
        annotated = await client.get(_path("annotated", "log"))
        missing = await client.get(_path("nope", "log"))
    assert await _error(none, 400) == (
        "a container name must be specified for pod multi, choose one of: [a b]"
    )
    assert await _error(bad, 400) == "container x is not valid for pod multi"
    assert chosen.text == "fake container b started\nfrom b\n"
    # The annotation picks b, which has not been created yet.
    assert await _error(annotated, 400) == (
        'container "b" in pod "annotated" is waiting to start: ContainerCreating'
    )
    assert await _error(missing, 404) == 'pods "nope" not found'


async def test_log_waiting_reason_comes_from_pod_status(env: Env) -> None:
    waiting = {"name": "c", "state": {"waiting": {"reason": "ImagePullBackOff"}}}
    await env.pod("p", ["c"], phase="Pending", statuses=[waiting])
    async with env.client() as client:
        resp = await client.get(_path("p", "log"))
    assert await _error(resp, 400) == (
        'container "c" in pod "p" is waiting to start: trying and failing to pull image'
    )


async def test_log_previous_picks_the_attempt_before(env: Env) -> None:
    pod = await env.pod("p", ["c"])
    sandbox = await env.sandbox(pod)
    async with env.client() as client:
        first = await env.container(sandbox, "c", attempt=0)
        env.log(first, "attempt 0\n")
        none = await client.get(_path("p", "log"), params={"previous": "true"})
        await env.runtime.stop_container(first, 0)
        second = await env.container(sandbox, "c", attempt=1)
        env.log(second, "attempt 1\n")
        current = await client.get(_path("p", "log"))
        previous = await client.get(_path("p", "log"), params={"previous": "true"})
        # A third attempt created but not started yet: current and previous are attempt 1.
        await env.runtime.stop_container(second, 0)
        await env.container(sandbox, "c", attempt=2, start=False)
        waiting_current = await client.get(_path("p", "log"), params={"tailLines": "1"})
        waiting_previous = await client.get(
            _path("p", "log"), params={"previous": "1", "tailLines": "1"}
        )
    assert await _error(none, 400) == 'previous terminated container "c" in pod "p" not found'
    assert current.text == "fake container c started\nattempt 1\n"
    assert "attempt 0\n" in previous.text and "attempt 1" not in previous.text
    assert waiting_current.text == "fake container c exited 0\n"
    assert waiting_previous.text == waiting_current.text


async def test_log_in_back_off_reads_the_last_terminated_attempt(env: Env) -> None:
    backoff = {"name": "c", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    pod = await env.pod("p", ["c"], statuses=[backoff])
    sandbox = await env.sandbox(pod)
    env.log(await env.container(sandbox, "c", attempt=0, stop=True), "attempt 0\n")
    env.log(await env.container(sandbox, "c", attempt=1, stop=True), "attempt 1\n")
    async with env.client() as client:
        current = await client.get(_path("p", "log"))
        previous = await client.get(_path("p", "log"), params={"previous": "true"})
    assert "attempt 1\n" in current.text and "attempt 0" not in current.text
    assert previous.text == current.text


async def test_log_of_unscheduled_pod_is_empty(env: Env) -> None:
    await env.pod("p", ["c"], node="", phase="Pending")
    async with env.client() as client:
        resp = await client.get(_path("p", "log"))
    assert resp.status_code == 200 and resp.text == ""


async def test_log_follow_streams_until_the_iterator_ends(env: Env) -> None:
    pod = await env.pod("p", ["c"])
    await env.container(await env.sandbox(pod), "c")
    async with env.client() as client:
        async with client.stream("GET", _path("p", "log"), params={"follow": "true"}) as resp:
            body = b"".join([chunk async for chunk in resp.aiter_bytes()])
    assert body == b"fake container c started\n"


# -- exec / attach over HTTP: errors before any upgrade -----------------------------


async def test_exec_without_upgrade_and_other_errors(env: Env) -> None:
    pod = await env.pod("p", ["c"])
    await env.container(await env.sandbox(pod), "c")
    await env.pod("done", ["c"], phase="Succeeded")
    await env.pod("pending", ["c"], phase="Pending")
    await env.pod("multi", ["a", "b"])
    q = {"command": ["echo", "hi"], "stdout": "true"}
    async with env.client() as client:
        plain = await client.post(_path("p", "exec"), params=q)
        done = await client.post(_path("done", "exec"), params=q)
        pending = await client.post(_path("pending", "exec"), params=q)
        multi = await client.post(_path("multi", "exec"), params=q)
        bad = await client.post(_path("p", "exec"), params={**q, "container": "zz"})
        no_cmd = await client.post(_path("p", "exec"), params={"stdout": "true"})
        no_streams = await client.post(_path("p", "exec"), params={"command": "ls"})
        attach = await client.get(_path("p", "attach"), params={"stdout": "1"})
        pf = await client.post(_path("p", "portforward"))
        pf_pending = await client.post(_path("pending", "portforward"))
    assert await _error(plain, 400) == "Upgrade request required"
    assert await _error(done, 400) == (
        "cannot exec into a container in a completed pod; current phase is Succeeded"
    )
    assert await _error(pending, 400) == 'container not found ("c")'
    assert await _error(multi, 400) == (
        "a container name must be specified for pod multi, choose one of: [a b]"
    )
    assert await _error(bad, 400) == "container zz is not valid for pod p"
    assert await _error(no_cmd, 400) == "you must specify at least one command for the container"
    assert await _error(no_streams, 400) == "you must specify at least 1 of stdin, stdout, stderr"
    assert await _error(attach, 400) == "Upgrade request required"
    assert await _error(pf, 400) == "Upgrade request required"
    assert await _error(pf_pending, 400) == (
        "unable to forward port because pod is not running. Current status=Pending"
    )


# -- exec / attach over WebSocket ---------------------------------------------------


async def _ws(
    env: Env,
    path: str,
    *,
    subprotocols: list[str],
    send: list[bytes] = (),  # type: ignore[assignment]
    hang_up_on: bytes = b"",
) -> list[dict[str, Any]]:
    """Drive one WebSocket exchange through the ASGI app; the messages it sent.

    The client disconnects when the server closes, or once it sent ``hang_up_on``.
    """
    path, _, query = path.partition("?")
    scope = {
        "type": "websocket",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"t")],
        "subprotocols": subprotocols,
        "scheme": "ws",
        "server": ("t", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "extensions": {"websocket.http.response": {}},
        "asgi": {"version": "3.0"},
    }
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    incoming.put_nowait({"type": "websocket.connect"})
    out: list[dict[str, Any]] = []
    accepted = asyncio.Event()

    async def receive() -> dict[str, Any]:
        return await incoming.get()

    async def send_(message: dict[str, Any]) -> None:
        out.append(message)
        if message["type"] == "websocket.accept":
            accepted.set()
        done = message["type"] in ("websocket.close", "websocket.http.response.body")
        if done or (hang_up_on and hang_up_on in (message.get("bytes") or b"")):
            incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})

    task = asyncio.create_task(env.app(scope, receive, send_))
    async with asyncio.timeout(5):
        if send:
            await accepted.wait()
            for data in send:
                incoming.put_nowait({"type": "websocket.receive", "bytes": data})
        await task
    return out


def _channels(messages: list[dict[str, Any]]) -> dict[int, bytes]:
    got: dict[int, bytes] = {}
    for m in messages:
        if m["type"] == "websocket.send" and m.get("bytes"):
            got[m["bytes"][0]] = got.get(m["bytes"][0], b"") + m["bytes"][1:]
    return got


async def test_ws_exec_reports_exit_code(env: Env) -> None:
    pod = await env.pod("p", ["c"])
    await env.container(await env.sandbox(pod), "c", env={fake.EXEC_EXIT_CODE: "3"})
    out = await _ws(
        env,
        _path("p", "exec") + "?command=sh&command=-c&command=exit+3&stdout=true",
        subprotocols=[channels.V5],
    )
    assert out[0] == {"type": "websocket.accept", "subprotocol": channels.V5, "headers": []}
    status = json.loads(_channels(out)[channels.ERROR])
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    assert out[-1]["type"] == "websocket.close" and out[-1]["code"] == 1000


async def test_ws_exec_echoes_stdin(env: Env) -> None:
    pod = await env.pod("p", ["c"])
    await env.container(await env.sandbox(pod), "c")
    out = await _ws(
        env,
        _path("p", "exec") + "?command=cat&stdin=true&stdout=true&stderr=true",
        subprotocols=[channels.V5],
        send=[bytes([channels.STDIN]) + b"hello\n", bytes([channels.CLOSE, channels.STDIN])],
    )
    got = _channels(out)
    assert got[channels.STDOUT] == b"hello\n"
    assert json.loads(got[channels.ERROR]) == {"metadata": {}, "status": "Success"}


async def test_ws_attach_to_running_container(env: Env) -> None:
    pod = await env.pod(
        "p", ["c"], spec_extra={"containers": [{"name": "c", "image": IMAGE, "stdin": True}]}
    )
    await env.container(await env.sandbox(pod), "c", stdin=True)
    out = await _ws(
        env,
        _path("p", "attach") + "?container=c&stdin=true&stdout=true",
        subprotocols=[channels.V4],
        send=[bytes([channels.STDIN]) + b"typed\n"],
        hang_up_on=b"typed",
    )
    assert out[0]["type"] == "websocket.accept"
    assert _channels(out)[channels.STDOUT] == b"typed\n"


async def test_ws_attach_ends_in_success_whatever_the_exit_code(env: Env) -> None:
    pod = await env.pod("p", ["c"])
    await env.container(await env.sandbox(pod), "c")
    session = fake.EchoSession(code=5)
    await session.close_stdin()

    async def attach(container_id: str, *, stdin: bool = False, tty: bool = False) -> Any:
        return session

    env.runtime.attach = attach  # type: ignore[method-assign]
    out = await _ws(env, _path("p", "attach") + "?stdout=true", subprotocols=[channels.V5])
    assert json.loads(_channels(out)[channels.ERROR]) == {"metadata": {}, "status": "Success"}


async def test_ws_errors_are_denial_responses(env: Env) -> None:
    await env.pod("done", ["c"], phase="Failed")
    out = await _ws(
        env, _path("done", "exec") + "?command=ls&stdout=true", subprotocols=[channels.V5]
    )
    assert out[0]["type"] == "websocket.http.response.start" and out[0]["status"] == 400
    body = json.loads(b"".join(m.get("body", b"") for m in out[1:]))
    assert body["message"] == (
        "cannot exec into a container in a completed pod; current phase is Failed"
    )


async def test_ws_unknown_subprotocol_is_refused(env: Env) -> None:
    pod = await env.pod("p", ["c"])
    await env.container(await env.sandbox(pod), "c")
    out = await _ws(env, _path("p", "exec") + "?command=ls&stdout=1", subprotocols=["nope"])
    assert out == [{"type": "websocket.close", "code": 1002, "reason": ""}]


async def test_ws_portforward_on_fake_runtime_reports_pending_pod(env: Env) -> None:
    await env.pod("p", ["c"], phase="Pending")
    out = await _ws(env, _path("p", "portforward"), subprotocols=["SPDY/3.1+portforward.k8s.io"])
    assert out[0]["type"] == "websocket.http.response.start" and out[0]["status"] == 400
