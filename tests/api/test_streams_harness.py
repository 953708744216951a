"""A tiny TLS API server for the streaming tests: just enough for kubectl exec/port-forward.

Serves discovery, one Running pod ``p`` and its exec/attach/portforward subresources
through microkube.api.streams, on a real uvicorn configured exactly as the API server
must be (``http=SpdyUpgradeH11Protocol``). Exec runs a real local subprocess as the
session (the command of the request), so stdin, stdout, stderr and exit codes are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from microkube.api.streams import portforward, remotecommand, spdy, upgrade

TOKEN = "streams-test-token"


class SubprocessSession:
    """:class:`remotecommand.ExecSession` backed by a local process (the test's 'container')."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.resizes: list[tuple[int, int]] = []
        self.closed = False
        self._output: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._readers = [
            asyncio.create_task(self._copy("stdout", proc.stdout)),
            asyncio.create_task(self._copy("stderr", proc.stderr)),
        ]
        self._open = 2

    @classmethod
    async def start(cls, command: list[str], *, stdin: bool) -> SubprocessSession:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _copy(self, name: str, stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        while data := await stream.read(65536):
            self._output.put_nowait((name, data))
        self._open -= 1
        if self._open == 0:
            self._output.put_nowait(None)

    async def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()

    async def read(self) -> tuple[str, bytes] | None:
        return await self._output.get()

    async def resize(self, width: int, height: int) -> None:
        self.resizes.append((width, height))

    async def wait(self) -> int:
        return await self.proc.wait()

    async def close(self) -> None:
        self.closed = True
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for task in self._readers:
            task.cancel()


def _pod(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": "0b6f5d3e-0000-4000-8000-000000000001",
            "resourceVersion": "1",
            "creationTimestamp": "2024-01-01T00:00:00Z",
        },
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                }
            ]
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "c",
                    "ready": True,
                    "restartCount": 0,
                    "image": "busybox",
                    "imageID": "",
                    "state": {"running": {}},
                }
            ],
        },
    }


_RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"],
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
        {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["create", "get"]},
        {"name": "pods/attach", "singularName": "", "namespaced": True, "kind": "PodAttachOptions", "verbs": ["create", "get"]},
        {"name": "pods/portforward", "singularName": "", "namespaced": True, "kind": "PodPortForwardOptions",
         "verbs": ["create", "get"]},
    ],
}  # fmt: skip


def _flag(params: Any, name: str) -> bool:
    return params.get(name, "").lower() in ("true", "1")


def build_app(
    connect: portforward.Connect,
    *,
    minor: str = "27",
    sessions: list[SubprocessSession] | None = None,
    transports: list[str] | None = None,
) -> Starlette:
    """The Starlette app; ``connect`` dials the 'pod' ports.

    Started sessions are appended to ``sessions``; ``transports`` records ``"<verb> ws"`` or
    ``"<verb> spdy"`` per streaming request, so tests can tell which path a kubectl took.
    """
    started = sessions if sessions is not None else []
    used = transports if transports is not None else []

    async def version(request: Request) -> Response:
        return JSONResponse(
            {"major": "1", "minor": minor, "gitVersion": f"v1.{minor}.0", "platform": "linux/amd64"}
        )

    async def api(request: Request) -> Response:
        return JSONResponse(
            {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        )

    async def api_v1(request: Request) -> Response:
        return JSONResponse(_RESOURCES)

    async def apis(request: Request) -> Response:
        return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    async def get_pod(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse(
                {"kind": "Status", "status": "Failure", "code": 401, "reason": "Unauthorized"}, 401
            )
        return JSONResponse(_pod(request.path_params["ns"], request.path_params["name"]))

    def _options(params: Any) -> dict[str, bool]:
        return {k: _flag(params, k) for k in ("stdin", "stdout", "stderr", "tty")}

    async def exec_http(request: Request) -> Response:
        if not upgrade.is_spdy_upgrade(request.scope):
            return PlainTextResponse("upgrade required", status_code=400)
        used.append("exec spdy")
        opts = _options(request.query_params)
        command = request.query_params.getlist("command") or ["cat"]
        session = await SubprocessSession.start(command, stdin=opts["stdin"])
        started.append(session)
        return remotecommand.spdy_response(session, **opts)  # type: ignore[return-value]

    async def exec_ws(websocket: WebSocket) -> None:
        used.append("exec ws")
        opts = _options(websocket.query_params)
        command = websocket.query_params.getlist("command") or ["cat"]
        session = await SubprocessSession.start(command, stdin=opts["stdin"])
        started.append(session)
        await remotecommand.serve_remotecommand_ws(websocket, session, **opts)

    async def pf_http(request: Request) -> Response:
        if not upgrade.is_spdy_upgrade(request.scope):
            return PlainTextResponse("upgrade required", status_code=400)
        used.append("portforward spdy")
        return portforward.spdy_response(connect)  # type: ignore[return-value]

    async def pf_ws(websocket: WebSocket) -> None:
        used.append("portforward ws")
        await portforward.serve_portforward_ws(websocket, connect)

    base = "/api/v1/namespaces/{ns}/pods/{name}"
    return Starlette(
        routes=[
            Route("/version", version),
            Route("/api", api),
            Route("/api/v1", api_v1),
            Route("/apis", apis),
            Route(base, get_pod),
            Route(base + "/exec", exec_http, methods=["GET", "POST"]),
            Route(base + "/attach", exec_http, methods=["GET", "POST"]),
            WebSocketRoute(base + "/exec", exec_ws),
            WebSocketRoute(base + "/attach", exec_ws),
            Route(base + "/portforward", pf_http, methods=["GET", "POST"]),
            WebSocketRoute(base + "/portforward", pf_ws),
        ]
    )


def write_cert(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "microkube-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / "tls.crt", directory / "tls.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


@contextlib.contextmanager
def serve(app: Starlette, directory: Path, *, graceful_timeout: float | None = 2) -> Iterator[int]:
    """Run ``app`` on a real TLS uvicorn in a thread; yield its port; stop it on exit."""
    certfile, keyfile = write_cert(directory)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        **upgrade.uvicorn_options(),
        ssl_certfile=str(certfile),
        ssl_keyfile=str(keyfile),
        lifespan="off",
        log_level=os.environ.get("STREAMS_LOG", "warning"),
        timeout_graceful_shutdown=graceful_timeout,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("uvicorn did not shut down within 10 s")


def write_kubeconfig(directory: Path, port: int) -> Path:
    path = directory / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: t
  cluster:
    server: https://127.0.0.1:{port}
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: {TOKEN}
contexts:
- name: t
  context: {{cluster: t, user: u, namespace: default}}
current-context: t
"""
    )
    return path


def kubectl_env(directory: Path, kubeconfig: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env.update(HOME=str(directory), KUBECONFIG=str(kubeconfig))
    return env


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A threaded TCP echo server standing for the pod's port; yields its port."""

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError):
                while data := self.request.recv(65536):
                    self.request.sendall(data)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def connect_to(
    port_map: dict[int, int],
) -> Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]:
    """``connect`` for port-forward: pod port → local port (unmapped ports are refused)."""

    async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if port not in port_map:
            raise ConnectionRefusedError(f"dial tcp4 127.0.0.1:{port}: connect: connection refused")
        return await asyncio.open_connection("127.0.0.1", port_map[port])

    return connect


class SpdyClient:
    """A minimal SPDY/3.1 client over TLS, speaking like client-go (for tests without kubectl)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.response = response
        self.codec = spdy.Codec()
        self.next_id = 1

    @classmethod
    async def upgrade(cls, port: int, path: str, protocols: list[str]) -> SpdyClient:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        head = [
            f"POST {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Connection: Upgrade",
            "Upgrade: SPDY/3.1",
        ]
        head += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
        head += [f"Authorization: Bearer {TOKEN}", "Content-Length: 0"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        response = await reader.readuntil(b"\r\n\r\n")
        return cls(reader, writer, response)

    async def send(self, frame: spdy.Frame) -> None:
        self.writer.write(self.codec.encode(frame))
        await self.writer.drain()

    async def open(self, headers: dict[str, str]) -> int:
        stream_id = self.next_id
        self.next_id += 2
        await self.send(spdy.SynStream(stream_id, {k: [v] for k, v in headers.items()}))
        return stream_id

    async def frames(self, limit: float = 5.0) -> list[spdy.Frame]:
        """Every frame until the server closes the connection."""
        out: list[spdy.Frame] = []
        async with asyncio.timeout(limit):
            while data := await self.reader.read(65536):
                out += self.codec.feed(data)
        return out

    async def next_frames(self, limit: float = 5.0) -> list[spdy.Frame]:
        async with asyncio.timeout(limit):
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return []
                frames = self.codec.feed(data)
                if frames:
                    return frames

    def close(self) -> None:
        self.writer.close()


def stream_data(frames: list[spdy.Frame], stream_id: int) -> tuple[bytes, bool]:
    """Concatenated DATA of one stream and whether it was FIN'd."""
    data = b"".join(
        f.data for f in frames if isinstance(f, spdy.DataFrame) and f.stream_id == stream_id
    )
    fin = any(isinstance(f, spdy.DataFrame) and f.stream_id == stream_id and f.fin for f in frames)
    return data, fin
