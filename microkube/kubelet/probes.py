"""Liveness, readiness and startup probes: when to run them, what a result means.

Mirrors ``pkg/kubelet/prober``:

* :class:`ProbeTracker` is the pure part of a probe worker: it decides when
  the next run is due (``initialDelaySeconds`` after the container started,
  then every ``periodSeconds``) and turns raw outcomes into a result with
  ``successThreshold``/``failureThreshold`` hysteresis.  The initial result
  is *failure* for readiness/startup and *success* for liveness, as upstream.
* :func:`run` executes one probe (``exec`` via the runtime, ``httpGet`` with
  a plain HTTP/1.1 request to the pod IP, ``tcpSocket`` by connecting,
  ``grpc`` is not supported and fails), bounded by ``timeoutSeconds``.
  Like upstream, HTTP 200–399 is success and redirects are not followed.

A ``(ok, message)`` pair is returned so that ``Unhealthy`` events carry the
same text as upstream (``Liveness probe failed: ...``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from microkube.kubelet import runtime as rt

Obj = dict[str, Any]
KINDS = ("startup", "liveness", "readiness")
FIELD = {"startup": "startupProbe", "liveness": "livenessProbe", "readiness": "readinessProbe"}


@dataclass
class ProbeTracker:
    kind: str
    probe: Obj
    started_at: datetime
    result: bool = False
    successes: int = 0
    failures: int = 0
    last_run: datetime | None = None
    last_message: str = ""
    history: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.result = self.kind == "liveness"

    def _int(self, key: str, default: int) -> int:
        v = self.probe.get(key)
        return int(v) if v is not None else default

    def next_due(self) -> datetime:
        if self.last_run is None:
            return self.started_at + timedelta(seconds=self._int("initialDelaySeconds", 0))
        return self.last_run + timedelta(seconds=max(1, self._int("periodSeconds", 10)))

    def due(self, now: datetime) -> bool:
        return now >= self.next_due()

    @property
    def timeout(self) -> float:
        return float(max(1, self._int("timeoutSeconds", 1)))

    def record(self, ok: bool, now: datetime, message: str = "") -> bool:
        """Fold one outcome in; returns the (possibly unchanged) result."""
        self.last_run = now
        self.last_message = message
        self.history.append(ok)
        del self.history[:-10]
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= max(1, self._int("successThreshold", 1)):
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= max(1, self._int("failureThreshold", 3)):
                self.result = False
        return self.result

    def reset_counts(self) -> None:
        self.successes = self.failures = 0


def _port(value: Any, container: Obj) -> int:
    if isinstance(value, int):
        return value
    s = str(value)
    if s.isdigit():
        return int(s)
    for p in container.get("ports") or []:
        if p.get("name") == s:
            return int(p["containerPort"])
    raise ValueError(f"port {s!r} not found in the container's ports")


async def _http(handler: Obj, host: str, container: Obj) -> tuple[bool, str]:
    port = _port(handler.get("port"), container)
    target = handler.get("host") or host
    path = handler.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    scheme = (handler.get("scheme") or "HTTP").upper()
    headers = {"Host": f"{target}:{port}", "User-Agent": "kube-probe/1.32", "Accept": "*/*"}
    for h in handler.get("httpHeaders") or []:
        headers[h.get("name", "")] = h.get("value", "")
    ssl_ctx = None
    if scheme == "HTTPS":
        import ssl

        ssl_ctx = ssl.create_default_context()
        ssl_ctx.check_hostname = False
        ssl_ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(target, port, ssl=ssl_ctx)
    try:
        head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write((head + "Connection: close\r\n\r\n").encode())
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    parts = line.decode(errors="replace").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f'Get "{scheme.lower()}://{target}:{port}{path}": malformed HTTP response'
    code = int(parts[1])
    if 200 <= code < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {code}"


async def _tcp(handler: Obj, host: str, container: Obj) -> tuple[bool, str]:
    port = _port(handler.get("port"), container)
    target = handler.get("host") or host
    try:
        _, writer = await asyncio.open_connection(target, port)
    except OSError as exc:
        return False, f"dial tcp {target}:{port}: connect: {exc.strerror or exc}"
    writer.close()
    return True, ""


async def run(
    probe: Obj,
    *,
    runtime: rt.ContainerRuntime,
    container_id: str,
    pod_ip: str,
    container: Obj,
    timeout: float,  # noqa: ASYNC109 - probe timeoutSeconds, also passed to exec
) -> tuple[bool, str]:
    """Run a probe or lifecycle handler once; ``(ok, failure message)``."""
    try:
        if "exec" in probe:
            cmd = list((probe["exec"] or {}).get("command") or [])
            code, out, err = await runtime.exec_sync(container_id, cmd, timeout)
            if code == 0:
                return True, ""
            text = (out + err).decode(errors="replace").strip()
            return False, text or f"command {cmd!r} exited with {code}"
        if ("httpGet" in probe or "tcpSocket" in probe) and runtime.simulated_network:
            # Simulated pods have no network to probe (kwok treats such probes
            # as passing); they answer as the runtime's exec probes do.
            code, _, _ = await runtime.exec_sync(container_id, [], timeout)
            return code == 0, "" if code == 0 else f"simulated probe failed with {code}"
        if "httpGet" in probe:
            return await asyncio.wait_for(_http(probe["httpGet"], pod_ip, container), timeout)
        if "tcpSocket" in probe:
            return await asyncio.wait_for(_tcp(probe["tcpSocket"], pod_ip, container), timeout)
        if "sleep" in probe:
            await asyncio.sleep(float((probe["sleep"] or {}).get("seconds", 0)))
            return True, ""
        return False, "unsupported probe handler"
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except (OSError, ValueError, rt.ContainerRuntimeError) as exc:
        return False, str(exc)
