"""The verified TLS client certificate of a connection, for the ASGI scope.

uvicorn does not expose the peer certificate to the application.  The API
server's TLS context asks for a client certificate *optionally*
(``CERT_OPTIONAL`` with microkube's CA loaded, like Go's
``VerifyClientCertIfGiven``): a client without one connects as before, one
with a certificate the CA did not sign (or not meant for client
authentication) fails the handshake.  The HTTP and WebSocket protocol classes
of :mod:`microkube.api.streams.upgrade` call :func:`peer_certificate` once per
connection and put the result into every request's scope under
:data:`SCOPE_KEY`; :class:`microkube.auth.authn.Authenticator` maps its
subject to a user.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

SCOPE_KEY = "microkube.peer_cert"


def server_options(ca_file: str) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments that request (not require) client certificates."""
    return {"ssl_cert_reqs": ssl.CERT_OPTIONAL, "ssl_ca_certs": ca_file}


def peer_certificate(transport: asyncio.BaseTransport | None) -> dict[str, Any] | None:
    """``getpeercert()`` of the connection: the verified client certificate, or None."""
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    try:
        cert = ssl_object.getpeercert()
    except (ValueError, ssl.SSLError):
        return None
    return cert or None
