"""Content negotiation: request bodies in, response bodies out.

Request bodies may be JSON, YAML or Kubernetes protobuf (kubectl's typed
commands send protobuf; a 415 would be fatal for them).  Responses are JSON
(client-go picks its decoder from the response Content-Type), YAML when that is
the only thing asked for, and ``meta.k8s.io/v1`` Tables when the Accept header
asks ``as=Table``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response

from microkube import errors

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply-cbor",
}


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dups = []
    for k, v in pairs:
        if k in out:
            dups.append(k)
        out[k] = v
    if dups:
        out["\x00duplicates"] = dups
    return out


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes * 2:
        raise errors.RequestEntityTooLarge(f"Request entity too large: limit is {max_bytes * 2}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes * 2:
            raise errors.RequestEntityTooLarge(
                f"Request entity too large: limit is {max_bytes * 2}"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def decode(body: bytes, content_type: str) -> Any:
    """Decode a request body by its media type. Raises BadRequest/UnsupportedMediaType."""
    if not body.strip():
        raise errors.BadRequest("Object 'Kind' is missing in ''")
    if content_type == PROTOBUF:
        from microkube.api import protobuf

        return protobuf.decode(body)
    if content_type in (
        "",
        JSON,
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "*/*",
        "text/plain",
    ):
        try:
            return json.loads(body, object_pairs_hook=_no_duplicates)
        except (ValueError, UnicodeDecodeError) as exc:
            if content_type in ("", "*/*", "text/plain"):
                return _yaml(body)
            raise errors.BadRequest(f"error decoding JSON: {exc}") from exc
    if content_type in (YAML, "application/x-yaml", "text/yaml", "application/apply-patch+yaml"):
        return _yaml(body)
    raise errors.UnsupportedMediaType(
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{JSON}, {YAML}, {PROTOBUF}"
    )


def _yaml(body: bytes) -> Any:
    try:
        return yaml.safe_load(body)
    except yaml.YAMLError as exc:
        raise errors.BadRequest(f"error converting YAML to JSON: {exc}") from exc


def pop_duplicates(obj: Any, path: str = "") -> list[str]:
    """Remove the duplicate-key markers left by decoding; return their JSON paths."""
    found: list[str] = []
    if isinstance(obj, dict):
        for k in obj.pop("\x00duplicates", []):
            found.append(f"{path}.{k}" if path else k)
        for k, v in obj.items():
            found += pop_duplicates(v, f"{path}.{k}" if path else k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += pop_duplicates(v, f"{path}[{i}]")
    return found


@dataclass
class Accept:
    table: bool = False
    yaml: bool = False
    partial_metadata: bool = False

    @classmethod
    def parse(cls, header: str) -> Accept:
        out = cls()
        for part in header.split(","):
            params = [p.strip() for p in part.split(";")]
            mt = params[0].lower()
            kv = dict(p.split("=", 1) for p in params[1:] if "=" in p)
            if kv.get("as") == "Table" and mt in (JSON, "*/*"):
                out.table = True
                return out
            if (
                kv.get("as") in ("PartialObjectMetadata", "PartialObjectMetadataList")
                and mt == JSON
            ):
                out.partial_metadata = True
                return out
            if mt in (JSON, PROTOBUF, "*/*", ""):
                return out
            if mt in (YAML,):
                out.yaml = True
                return out
        return out


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    if pretty:
        return json.dumps(obj, indent=2, ensure_ascii=False).encode()
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def respond(
    request: Request, obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    pretty = request.query_params.get("pretty") in ("true", "1")
    accept = Accept.parse(request.headers.get("accept", ""))
    if accept.yaml:
        return Response(yaml.safe_dump(obj, sort_keys=False), status, headers, media_type=YAML)
    return Response(dumps(obj, pretty=pretty), status, headers, media_type=JSON)
