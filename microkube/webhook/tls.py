"""SSL contexts for webhook calls: verify against ``caBundle`` (or the system roots)."""

from __future__ import annotations

import base64
import binascii
import ssl
from functools import lru_cache


class BadCABundle(ValueError):
    pass


def decode_ca_bundle(ca_bundle: str | bytes | None) -> bytes:
    """``caBundle`` as PEM bytes (it is base64 of PEM on the wire)."""
    if not ca_bundle:
        return b""
    if isinstance(ca_bundle, bytes):
        return ca_bundle
    try:
        return base64.b64decode(ca_bundle, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadCABundle("caBundle is not valid base64") from exc


@lru_cache(maxsize=64)
def context_for(ca_pem: bytes) -> ssl.SSLContext:
    """A client context trusting ``ca_pem`` (system roots when empty); hostnames checked."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_pem:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(cadata=ca_pem.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise BadCABundle(f"unable to load root certificates: {exc}") from exc
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
