"""The one error tree of microkube.

Every error that can reach a client is an :class:`ApiError` carrying the HTTP
``code`` and the Kubernetes ``reason``; the API layer renders it as a
``metav1.Status`` in a single exception handler (mirrors apiserver's
``StatusError``)::

    ApiError
    ├── BadRequest              400 BadRequest
    ├── Unauthorized            401 Unauthorized
    ├── Forbidden               403 Forbidden
    ├── NotFound                404 NotFound
    ├── MethodNotAllowed        405 MethodNotAllowed
    ├── NotAcceptable           406 NotAcceptable
    ├── AlreadyExists           409 AlreadyExists
    ├── Conflict                409 Conflict
    ├── Gone                    410 Expired  ("too old resource version")
    ├── RequestEntityTooLarge   413 RequestEntityTooLarge
    ├── UnsupportedMediaType    415 UnsupportedMediaType
    ├── Invalid                 422 Invalid  (with field causes)
    ├── TooManyRequests         429 TooManyRequests
    ├── InternalError           500 InternalError
    ├── ServiceUnavailable      503 ServiceUnavailable
    └── Timeout                 504 Timeout
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One entry of ``details.causes``: a field-level reason."""

    reason: str
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


class ApiError(Exception):
    """Base class: an error the API reports as a ``metav1.Status``."""

    code = 500
    reason = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        name: str = "",
        group: str = "",
        kind: str = "",
        uid: str = "",
        causes: list[Cause] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.group = group
        self.kind = kind
        self.uid = uid
        self.causes = list(causes or [])
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        """The ``metav1.Status`` body for this error."""
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.uid:
            details["uid"] = self.uid
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


class BadRequest(ApiError):
    code, reason = 400, "BadRequest"


class Unauthorized(ApiError):
    code, reason = 401, "Unauthorized"


class Forbidden(ApiError):
    code, reason = 403, "Forbidden"


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class NotAcceptable(ApiError):
    code, reason = 406, "NotAcceptable"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"


class Conflict(ApiError):
    code, reason = 409, "Conflict"


class Gone(ApiError):
    code, reason = 410, "Expired"


class RequestEntityTooLarge(ApiError):
    code, reason = 413, "RequestEntityTooLarge"


class UnsupportedMediaType(ApiError):
    code, reason = 415, "UnsupportedMediaType"


class Invalid(ApiError):
    code, reason = 422, "Invalid"


class TooManyRequests(ApiError):
    code, reason = 429, "TooManyRequests"


class InternalError(ApiError):
    code, reason = 500, "InternalError"


class ServiceUnavailable(ApiError):
    code, reason = 503, "ServiceUnavailable"


class Timeout(ApiError):
    code, reason = 504, "Timeout"


# Field-error helpers, mirroring apimachinery's field.ErrorList constructors.


def required(field: str) -> Cause:
    return Cause("FieldValueRequired", "Required value", field)


def invalid_value(field: str, value: Any, detail: str) -> Cause:
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return Cause("FieldValueInvalid", f"Invalid value: {shown}: {detail}", field)


def unsupported_value(field: str, value: Any, supported: list[str]) -> Cause:
    shown = ", ".join(f'"{s}"' for s in supported)
    return Cause(
        "FieldValueNotSupported", f'Unsupported value: "{value}": supported values: {shown}', field
    )


def forbidden_field(field: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", field)


def duplicate(field: str, value: Any) -> Cause:
    return Cause("FieldValueDuplicate", f"Duplicate value: {value!r}", field)


def immutable(field: str) -> Cause:
    return Cause("FieldValueInvalid", "Invalid value: field is immutable", field)


def invalid(kind: str, name: str, causes: list[Cause], *, group: str = "") -> Invalid:
    """Build the 422 kubectl renders as ``The Kind "name" is invalid: f: msg``."""
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return Invalid(
        f'{kind} "{name}" is invalid: {summary}', name=name, kind=kind, group=group, causes=causes
    )
