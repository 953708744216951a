"""The Kubernetes channel protocol over WebSocket (exec and attach).

Mirrors apiserver's ``wsstream`` and client-go's ``tools/remotecommand/websocket.go``:
each WebSocket message carries one channel's data, prefixed by the channel number.

* ``v5.channel.k8s.io`` (kubectl 1.30+): binary frames; 0 stdin, 1 stdout, 2 stderr,
  3 error (a ``metav1.Status`` in JSON), 4 resize (``{"Width":…,"Height":…}``) and
  255 close, whose payload is the one channel being half-closed (``[255, 0]`` = stdin EOF).
* ``v4.channel.k8s.io`` (the Python client): the same without the close signal.
* ``channel.k8s.io`` … ``v3``: older numbering, same framing; the error channel holds text.
* ``base64.channel.k8s.io`` / ``v4.base64.channel.k8s.io``: text frames, the channel as
  an ASCII digit and the payload base64-encoded (browsers' consoles).

This module is pure: negotiation and framing; remotecommand.py drives the session.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
CLOSE = 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V2 = "v2.channel.k8s.io"
V1 = "channel.k8s.io"
BASE64 = "base64.channel.k8s.io"

# Preference order when a client offers several (as apiserver: newest first).
SUPPORTED = (V5, V4, V4_BASE64, V3, V2, V1, BASE64)
_BASE64 = {V4_BASE64, BASE64}
_STATUS_JSON = {V5, V4, V4_BASE64}


def negotiate(offered: list[str] | tuple[str, ...]) -> str | None:
    """The subprotocol to echo, or ``None`` if the client offers none we speak."""
    wanted = {p.strip() for p in offered}
    for proto in SUPPORTED:
        if proto in wanted:
            return proto
    return None


@dataclass(frozen=True)
class Framing:
    """How one negotiated subprotocol frames channel data."""

    protocol: str

    @property
    def is_base64(self) -> bool:
        return self.protocol in _BASE64

    @property
    def status_json(self) -> bool:
        """Whether the error channel carries a ``metav1.Status`` (v4+) or plain text."""
        return self.protocol in _STATUS_JSON

    @property
    def has_close(self) -> bool:
        return self.protocol == V5

    def encode(self, channel: int, data: bytes) -> bytes | str:
        """One message for ``channel``: ``bytes`` for binary framing, ``str`` for base64."""
        if self.is_base64:
            return str(channel) + base64.b64encode(data).decode()
        return bytes([channel]) + data

    def decode(self, message: bytes | str) -> tuple[int, bytes] | None:
        """``(channel, payload)`` of a client message; ``None`` for an empty or garbled one."""
        if isinstance(message, str):
            if not self.is_base64 or not message or not message[0].isdigit():
                return None
            try:
                return int(message[0]), base64.b64decode(message[1:])
            except (binascii.Error, ValueError):
                return None
        if not message:
            return None
        return message[0], bytes(message[1:])
