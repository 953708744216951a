"""Service-account tokens: signed, audience-bound, expiring JWTs (ES256).

Mirrors the apiserver's TokenRequest tokens: issuer
``https://kubernetes.default.svc.cluster.local``, subject
``system:serviceaccount:<ns>:<name>``, a ``kubernetes.io`` claim naming the
service account (and the bound pod), and a review that checks signature,
expiry, audience and that the service account (and bound object) still exist
with the same uid.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ISSUER = "https://kubernetes.default.svc.cluster.local"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class TokenIssuer:
    default_audiences = [ISSUER]

    def __init__(self, key_path: Path, registry: Any) -> None:
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self._key = key
        self._pub = key.public_key()
        self._registry = registry
        der = self._pub.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashes.Hash(hashes.SHA256())
        digest.update(der)
        self.kid = _b64(digest.finalize())

    def issue(
        self,
        sa: dict[str, Any],
        *,
        audiences: list[str],
        seconds: int,
        bound: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        """Return (token, expirationTimestamp)."""
        now = int(time.time())
        m = sa["metadata"]
        claims: dict[str, Any] = {
            "aud": audiences,
            "exp": now + seconds,
            "iat": now,
            "nbf": now,
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{m['namespace']}:{m['name']}",
            "kubernetes.io": {
                "namespace": m["namespace"],
                "serviceaccount": {"name": m["name"], "uid": m["uid"]},
            },
        }
        if bound and bound.get("kind") in ("Pod", "Secret") and bound.get("name"):
            claims["kubernetes.io"][bound["kind"].lower()] = {
                "name": bound["name"],
                "uid": bound.get("uid", ""),
            }
        header = {"alg": "ES256", "kid": self.kid}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        exp = datetime.fromtimestamp(now + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return signing_input + "." + _b64(sig), exp

    def review(self, token: str, audiences: list[str]) -> dict[str, Any] | None:
        """``{"user": ..., "audiences": [...]}`` for a valid token, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            sig = _unb64(parts[2])
            if len(sig) != 64:
                return None
            der = encode_dss_signature(
                int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            )
            self._pub.verify(der, (parts[0] + "." + parts[1]).encode(), ec.ECDSA(hashes.SHA256()))
            claims = json.loads(_unb64(parts[1]))
        except (InvalidSignature, ValueError):
            return None
        now = time.time()
        if (
            claims.get("iss") != ISSUER
            or claims.get("exp", 0) < now
            or claims.get("nbf", 0) > now + 60
        ):
            return None
        token_aud = claims.get("aud") or []
        wanted = audiences or self.default_audiences
        matched = [a for a in wanted if a in token_aud]
        if not matched:
            return None
        k8s = claims.get("kubernetes.io") or {}
        ns = k8s.get("namespace", "")
        sa = k8s.get("serviceaccount") or {}
        rt = self._registry.catalog.get("", "v1", "serviceaccounts")
        live = self._registry.try_get(rt, ns, sa.get("name", ""))
        if live is None or live["metadata"].get("uid") != sa.get("uid"):
            return None
        pod = k8s.get("pod")
        extra: dict[str, list[str]] = {}
        if pod:
            prt = self._registry.catalog.get("", "v1", "pods")
            live_pod = self._registry.try_get(prt, ns, pod.get("name", ""))
            if live_pod is None or live_pod["metadata"].get("uid") != pod.get("uid"):
                return None
            extra = {
                "authentication.kubernetes.io/pod-name": [pod["name"]],
                "authentication.kubernetes.io/pod-uid": [pod["uid"]],
            }
        user = {
            "username": claims["sub"],
            "uid": sa.get("uid", ""),
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{ns}",
                "system:authenticated",
            ],
        }
        if extra:
            user["extra"] = extra
        return {"user": user, "audiences": matched}
