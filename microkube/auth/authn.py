"""Authentication: who is making this request?

Bearer tokens only travel over TLS (client-go sends them only to https
servers).  Accepted identities, in order:

1. the admin token from ``pki/admin.token`` → ``admin`` in ``system:masters``;
2. service-account tokens signed by ``pki/sa.key`` (see :mod:`microkube.auth.tokens`);
3. client certificates signed by the CA (``microkube add-user``): the TLS
   layer asks for one optionally and verifies it against the CA, the HTTP
   protocol puts the verified subject into the ASGI scope
   (:mod:`microkube.api.tlspeer`), and ``CN`` is the user name, each ``O`` a
   group, as upstream's x509 authenticator.  Like upstream, a certificate is
   tried before a bearer token.

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
        """The user of a request; ``peer_cert`` is ``SSLSocket.getpeercert()`` of a verified peer."""
        if peer_cert:
            user = user_from_cert(peer_cert)
            if user is not None:
                return user
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
        raise errors.Unauthorized("Unauthorized")


def user_from_cert(cert: dict[str, Any]) -> dict[str, Any] | None:
    """CN → user, O → groups (mirrors ``x509.CommonNameUserConversion``); None without a CN."""
    name, groups = "", []
    for rdn in cert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName" and not name:
                name = str(value)
            elif key == "organizationName":
                groups.append(str(value))
    if not name:
        return None
    return {"username": name, "groups": [*groups, "system:authenticated"]}
