"""Authentication: who is making this request?

Bearer tokens only travel over TLS (client-go sends them only to https
servers).  Accepted identities, in order:

1. the admin token from ``pki/admin.token`` → ``admin`` in ``system:masters``;
2. service-account tokens signed by ``pki/sa.key`` (see :mod:`microkube.auth.tokens`);
3. client certificates signed by the CA, when the transport exposes them.

Anything else is 401, as is a request with no credentials: microkube has no
anonymous access.
"""

from __future__ import annotations

import hmac
from typing import Any

from microkube import errors

ADMIN = {"username": "admin", "uid": "admin", "groups": ["system:masters", "system:authenticated"]}


class Authenticator:
    def __init__(self, admin_token: str, tokens: Any = None) -> None:
        self._admin = admin_token
        self.tokens = tokens
        #: Extra static identities: token → user info (tests, add-user by token).
        self.static: dict[str, dict[str, Any]] = {}

    def authenticate(
        self, headers: dict[str, str], peer_cert: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
            if token and hmac.compare_digest(token.encode(), self._admin.encode()):
                return dict(ADMIN)
            if token in self.static:
                return dict(self.static[token])
            if self.tokens is not None:
                info = self.tokens.review(token, [])
                if info:
                    return dict(info["user"])
            raise errors.Unauthorized("Unauthorized")
        if peer_cert:
            return peer_cert
        raise errors.Unauthorized("Unauthorized")
