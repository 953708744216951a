"""Errors of the OCI Distribution API, rendered in the spec's JSON format.

The registry speaks its own error dialect, not Kubernetes' ``Status``: every
4xx/5xx body is ``{"errors": [{"code", "message", "detail"}]}`` with one of the
codes of the distribution spec (v1.1, "Error Codes").  The spec names the
codes but not their HTTP statuses; we use the statuses of the reference
implementation (distribution/distribution ``registry/api/errcode``), e.g.
``MANIFEST_BLOB_UNKNOWN`` is 400 there, not 404.

Two conditions have no code of their own in the spec:

* the size quota: answered ``DENIED`` with 403 (a policy refusal of the write;
  ``TOOMANYREQUESTS`` is about request rate and invites the client to retry,
  which would never succeed);
* a full disk (``ENOSPC``): answered 507 Insufficient Storage with code
  ``UNKNOWN`` (distribution's catch-all for storage driver errors), after the
  partial write has been rolled back.
"""

from __future__ import annotations

from typing import Any

STATUS: dict[str, int] = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "UNKNOWN": 500,
}
"""HTTP status of each error code (as distribution answers them)."""


class RegistryError(Exception):
    """One spec error; raise it anywhere below a handler.

    ``status`` defaults to the code's usual status; ``headers`` are added to the
    response (``Range`` on a 416, ``WWW-Authenticate`` on a 401).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        detail: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status if status is not None else STATUS[code]
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return {"errors": [entry]}


def disk_full(exc: OSError) -> RegistryError:
    """The 507 answered when the disk is full (see the module doc)."""
    return RegistryError(
        "UNKNOWN", "insufficient storage: the registry disk is full", detail=str(exc), status=507
    )
