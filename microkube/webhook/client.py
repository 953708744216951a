"""POST a JSON body to a webhook and read a JSON answer, bounded by a timeout.

One ``httpx.AsyncClient`` per (event loop, caBundle) keeps connections alive,
so a webhook on loopback costs a request, not a TLS handshake, per call.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

import httpx

from microkube.webhook import resolve, tls


class CallError(Exception):
    """The webhook could not be called or gave an unusable answer.

    ``str(exc)`` is upstream's text after ``failed calling webhook "NAME": ``.
    """


class WebhookClient:
    """Calls webhooks described by a WebhookClientConfig."""

    def __init__(
        self, lookup: resolve.ServiceLookup | None = None, *, use_cluster_ip: bool = False
    ) -> None:
        self.lookup = lookup
        self.use_cluster_ip = use_cluster_ip
        self._clients: dict[tuple[int, bytes], httpx.AsyncClient] = {}

    def _client(self, ca_pem: bytes) -> httpx.AsyncClient:
        key = (id(asyncio.get_running_loop()), ca_pem)
        c = self._clients.get(key)
        if c is None:
            c = httpx.AsyncClient(
                verify=tls.context_for(ca_pem),
                limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=30),
                trust_env=False,
            )
            self._clients[key] = c
        return c

    async def post(
        self, config: dict[str, Any], body: dict[str, Any], *, timeout_seconds: float
    ) -> dict[str, Any]:
        """POST ``body`` to the webhook ``config`` names; the decoded JSON object back."""
        timeout = timeout_seconds
        secs = max(1, int(timeout))
        try:
            t = resolve.target(
                config, self.lookup, query=f"timeout={secs}s", use_cluster_ip=self.use_cluster_ip
            )
        except resolve.ResolveError as exc:
            raise CallError(f"failed to call webhook: {exc}") from exc
        try:
            ca = tls.decode_ca_bundle(config.get("caBundle"))
            client = self._client(ca)
        except tls.BadCABundle as exc:
            raise CallError(f"failed to call webhook: {exc}") from exc
        payload = json.dumps(body, separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "accept": "application/json, */*",
            "host": t.host_header,
        }
        ext = {"sni_hostname": t.server_name}
        try:
            async with asyncio.timeout(timeout):
                resp = await client.post(
                    t.dial_url, content=payload, headers=headers, extensions=ext, timeout=timeout
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise CallError(
                f'failed to call webhook: Post "{t.url}": context deadline exceeded'
            ) from exc
        except httpx.ConnectError as exc:
            raise CallError(f'failed to call webhook: Post "{t.url}": {_reason(exc, t)}') from exc
        except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
            raise CallError(f'failed to call webhook: Post "{t.url}": {_reason(exc, t)}') from exc
        if resp.status_code < 200 or resp.status_code >= 300:
            raise CallError(
                f"received invalid webhook response: expected response code 200, got {resp.status_code}"
                if resp.status_code < 400
                else f"failed to call webhook: the server responded with status {resp.status_code}: "
                f"{resp.text[:256]}"
            )
        try:
            out = json.loads(resp.content)
        except ValueError as exc:
            raise CallError(f"received invalid webhook response: {_json_reason(exc)}") from exc
        if not isinstance(out, dict):
            raise CallError("received invalid webhook response: response is not a JSON object")
        return out

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for c in clients:
            try:
                await c.aclose()
            except RuntimeError:
                pass  # its event loop is gone


def _reason(exc: BaseException, t: resolve.Target) -> str:
    addr = urlsplit(t.dial_url).netloc
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"tls: failed to verify certificate: {cause.verify_message}"
        if isinstance(cause, ConnectionRefusedError):
            return f"dial tcp {addr}: connect: connection refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return f"dial tcp {addr}: connect: connection refused"
    return text


def _json_reason(exc: ValueError) -> str:
    return f"couldn't get version/kind; json parse error: {exc}"
