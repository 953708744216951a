"""Decode Kubernetes protobuf request bodies into the equivalent JSON dicts.

kubectl 1.32+ sends typed ``create`` bodies (and TokenRequest, access reviews,
Evictions…) as ``application/vnd.kubernetes.protobuf``. A 415 is fatal to it,
so the API layer turns such a body into the dict the JSON body would have
been, and everything after that sees JSON only. Responses stay JSON.

Wire format (mirrors apimachinery ``runtime/serializer/protobuf``): the magic
``k8s\x00`` then a ``runtime.Unknown``: 1 = TypeMeta (1 apiVersion, 2 kind),
2 = the object's own message bytes, 3 = contentEncoding, 4 = contentType.

Rather than depend on ``google.protobuf`` and generated classes for ~1100
messages, the wire format is walked directly here and interpreted with the
field table of :mod:`.protobuf_schema` (generated from kubectl's own
descriptors). Kubernetes protos are proto2 and gogo writes every non-pointer
scalar, zero or not, so presence alone would turn ``hostNetwork`` into
``false`` and ``restartPolicy`` into ``""`` where kubectl's JSON leaves them
out (and server-side defaulting would then see a value). The schema marks
non-pointer ``omitempty`` scalars (read from the Go types in the same
binary); those are dropped when zero, exactly as encoding/json does, while a
pointer sent as zero (``replicas: 0``) is kept. An absent field is left out. Types whose JSON form is not their message form are special-cased
as apimachinery marshals them: Time/MicroTime → RFC 3339, Duration → Go
duration string, Quantity → string, IntOrString → int or string,
RawExtension and FieldsV1 → embedded JSON, bytes → base64, named slices →
arrays, embedded ``json:",inline"`` structs → merged into the parent.

Every malformed body raises :class:`microkube.errors.BadRequest`.
"""

from __future__ import annotations

import base64
import datetime
import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

from microkube import errors
from microkube.api import protobuf_schema as schema

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5

_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


# --- wire primitives -------------------------------------------------------


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned varint at ``pos``; return ``(value, next_pos)``."""
    result = 0
    shift = 0
    end = len(buf)
    for _ in range(_MAX_VARINT_BYTES):
        if pos >= end:
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
    raise WireError("varint longer than 10 bytes")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)`` for each field of a message.

    ``value`` is an ``int`` for varint and fixed-width fields (fixed fields
    are returned as their unsigned little-endian integer) and ``bytes`` for
    length-delimited fields. Groups (deprecated, never used by Kubernetes)
    are rejected.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0 or number > 0x1FFFFFFF:
            raise WireError(f"invalid field number {number}")
        if wire_type == VARINT:
            value, pos = read_varint(buf, pos)
            yield number, wire_type, value
        elif wire_type == LEN:
            length, pos = read_varint(buf, pos)
            if length > end - pos:
                raise WireError(f"field {number}: length {length} past end of message")
            yield number, wire_type, bytes(buf[pos : pos + length])
            pos += length
        elif wire_type == I64:
            if pos + 8 > end:
                raise WireError(f"field {number}: truncated fixed64")
            yield number, wire_type, int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire_type == I32:
            if pos + 4 > end:
                raise WireError(f"field {number}: truncated fixed32")
            yield number, wire_type, int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise WireError(f"field {number}: unsupported wire type {wire_type}")


def packed_varints(data: bytes) -> list[int]:
    """Decode a packed run of varints (a packed ``repeated int32`` and friends)."""
    out: list[int] = []
    pos = 0
    while pos < len(data):
        value, pos = read_varint(data, pos)
        out.append(value)
    return out


def packed_fixed(data: bytes, width: int) -> list[int]:
    """Decode a packed run of 4- or 8-byte little-endian integers."""
    if len(data) % width:
        raise WireError(f"packed fixed{width * 8} length {len(data)} is not a multiple")
    return [int.from_bytes(data[i : i + width], "little") for i in range(0, len(data), width)]


def signed(value: int, bits: int) -> int:
    """Two's-complement reinterpretation of an unsigned varint (int32/int64)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def zigzag(value: int) -> int:
    """Decode a zig-zag varint (sint32/sint64)."""
    return (value >> 1) ^ -(value & 1)


def as_double(value: int) -> float:
    return float(struct.unpack("<d", value.to_bytes(8, "little"))[0])


def as_float(value: int) -> float:
    return float(struct.unpack("<f", value.to_bytes(4, "little"))[0])


# --- Kubernetes objects ----------------------------------------------------

_MAX_DEPTH = 100
_VARINT_TYPES = {"int32", "int64", "uint32", "uint64", "bool", "enum", "sint32", "sint64"}
_FIXED_WIDTH = {"fixed32": 4, "sfixed32": 4, "float": 4, "fixed64": 8, "sfixed64": 8, "double": 8}
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def decode(body: bytes) -> dict[str, Any]:
    """Decode a ``application/vnd.kubernetes.protobuf`` body into a JSON dict.

    Args:
        body: the raw request body, starting with the ``k8s\\x00`` magic.

    Returns:
        The object as its JSON form would be, with ``apiVersion`` and
        ``kind`` taken from the envelope's TypeMeta.

    Raises:
        errors.BadRequest: the body is malformed, or its kind has no known
            protobuf encoding.
    """
    try:
        return _decode_envelope(bytes(body), 0)
    except errors.ApiError:
        raise
    except (WireError, ValueError, OverflowError, RecursionError) as exc:
        raise errors.BadRequest(f"unable to decode protobuf body: {exc}") from exc


def _decode_envelope(body: bytes, depth: int) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise errors.BadRequest("protobuf body does not start with the k8s\\x00 magic")
    api_version = kind = encoding = ""
    raw = b""
    for number, wire_type, value in iter_fields(body[len(MAGIC) :]):
        if number == 1 and isinstance(value, bytes):
            for sub, _, sub_value in iter_fields(value):
                if sub == 1 and isinstance(sub_value, bytes):
                    api_version = sub_value.decode()
                elif sub == 2 and isinstance(sub_value, bytes):
                    kind = sub_value.decode()
        elif number == 2 and isinstance(value, bytes):
            raw = value
        elif number == 3 and isinstance(value, bytes):
            encoding = value.decode()
        elif number in (1, 2, 3, 4) and wire_type != LEN:
            raise WireError(f"runtime.Unknown field {number} has wire type {wire_type}")
    if encoding:
        raise errors.BadRequest(f"protobuf contentEncoding {encoding!r} is not supported")
    if not kind or not api_version:
        raise errors.BadRequest("protobuf body has no apiVersion/kind in its TypeMeta")
    name = schema.kind_message(api_version, kind)
    if name is None:
        raise errors.BadRequest(
            f"{kind} in {api_version} is not supported in protobuf; send it as JSON"
        )
    obj: dict[str, Any] = {"apiVersion": api_version, "kind": kind}
    obj.update(_message(raw, name, depth + 1))
    return obj


def _message(buf: bytes, name: str, depth: int) -> Any:
    """Decode one message to its JSON value (usually a dict)."""
    if depth > _MAX_DEPTH:
        raise WireError("message nesting too deep")
    special = _SPECIAL.get(name)
    if special is not None:
        return special(buf, depth)
    fields = schema.message(name)
    if fields is None:
        raise WireError(f"no schema for message {name}")
    if schema.is_list_wrapper(name):
        return _message_fields(buf, fields, depth).get("items", [])
    return _message_fields(buf, fields, depth)


def _message_fields(buf: bytes, fields: dict[int, schema.Field], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Non-repeated embedded messages may occur several times; proto merges
    # them, which is what decoding their concatenated bytes does.
    embedded: dict[int, bytes] = {}
    for number, wire_type, value in iter_fields(buf):
        field = fields.get(number)
        if field is None:
            continue  # unknown field: skip, as proto2 parsers do
        if field.type == "map":
            if not isinstance(value, bytes):
                raise WireError(f"map field {field.json} has wire type {wire_type}")
            key, item = _map_entry(value, field, depth)
            out.setdefault(field.json, {})[key] = item
        elif field.type in _SCALAR_TYPES:
            items = _scalars(field, wire_type, value)
            if field.repeated:
                out.setdefault(field.json, []).extend(items)
            elif field.omit_zero and items[-1] in _ZEROS:
                out.pop(field.json, None)  # gogo wrote it, Go's JSON would not
            else:
                out[field.json] = items[-1]
        else:
            if not isinstance(value, bytes):
                raise WireError(f"message field {field.json} has wire type {wire_type}")
            if field.repeated:
                out.setdefault(field.json, []).append(_message(value, field.type, depth + 1))
            else:
                embedded[number] = embedded.get(number, b"") + value
    for number, data in embedded.items():
        field = fields[number]
        decoded = _message(data, field.type, depth + 1)
        if field.json == "":
            if isinstance(decoded, dict):
                out.update(decoded)  # Go embedded struct, json:",inline"
        else:
            out[field.json] = decoded
    return out


def _map_entry(data: bytes, field: schema.Field, depth: int) -> tuple[str, Any]:
    key: Any = None
    value: Any = None
    key_field = schema.Field("key", field.key, False)
    value_field = schema.Field("value", field.value, False)
    for number, wire_type, raw in iter_fields(data):
        if number == 1:
            key = _scalars(key_field, wire_type, raw)[-1]
        elif number == 2:
            if field.value in _SCALAR_TYPES:
                value = _scalars(value_field, wire_type, raw)[-1]
            elif isinstance(raw, bytes):
                value = _message(raw, field.value, depth + 1)
            else:
                raise WireError(f"map {field.json} value has wire type {wire_type}")
    if key is None:
        key = _zero(field.key)
    if value is None:
        value = (
            _zero(field.value)
            if field.value in _SCALAR_TYPES
            else _message(b"", field.value, depth + 1)
        )
    return str(key).lower() if isinstance(key, bool) else str(key), value


def _zero(type_name: str) -> Any:
    if type_name == "string" or type_name == "bytes":
        return ""
    if type_name == "bool":
        return False
    if type_name in ("double", "float"):
        return 0.0
    return 0


def _scalars(field: schema.Field, wire_type: int, value: int | bytes) -> list[Any]:
    """The value(s) of one scalar occurrence; a packed run yields several."""
    t = field.type
    if t in ("string", "bytes"):
        if not isinstance(value, bytes):
            raise WireError(f"field {field.json}: {t} with wire type {wire_type}")
        if t == "bytes":
            return [base64.b64encode(value).decode("ascii")]
        return [value.decode("utf-8")]
    if isinstance(value, bytes):  # packed repeated scalars
        if not field.repeated:
            raise WireError(f"field {field.json}: {t} with wire type {wire_type}")
        width = _FIXED_WIDTH.get(t)
        raw = packed_fixed(value, width) if width else packed_varints(value)
        return [_convert(t, v) for v in raw]
    expected = VARINT if t in _VARINT_TYPES else (I32 if _FIXED_WIDTH[t] == 4 else I64)
    if wire_type != expected:
        raise WireError(f"field {field.json}: {t} with wire type {wire_type}")
    return [_convert(t, value)]


def _convert(t: str, v: int) -> Any:
    if t == "bool":
        return v != 0
    if t in ("int32", "enum"):
        return signed(v, 32)
    if t == "int64":
        return signed(v, 64)
    if t == "uint32" or t == "fixed32":
        return v & 0xFFFFFFFF
    if t in ("uint64", "fixed64"):
        return v
    if t in ("sint32", "sint64"):
        return zigzag(v)
    if t == "sfixed32":
        return signed(v, 32)
    if t == "sfixed64":
        return signed(v, 64)
    if t == "double":
        return as_double(v)
    return as_float(v)  # float


_SCALAR_TYPES = _VARINT_TYPES | set(_FIXED_WIDTH) | {"string", "bytes"}
_ZEROS = ("", 0)  # False == 0 and 0.0 == 0 in Python


# --- types whose JSON is not their message form -------------------------------


def _ints(buf: bytes) -> dict[int, Any]:
    """Last value of each field of a small all-scalar message."""
    return {number: value for number, _, value in iter_fields(buf)}


def _time(buf: bytes, _depth: int, *, micro: bool = False) -> str | None:
    """metav1.Time/MicroTime: the zero time is ``null``, as in Go."""
    values = _ints(buf)
    seconds = signed(_as_int(values.get(1, 0)), 64)
    nanos = signed(_as_int(values.get(2, 0)), 32)
    if seconds == 0 and nanos == 0:
        return None
    try:
        moment = _EPOCH + datetime.timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError as exc:
        raise WireError(f"time {seconds}s out of range") from exc
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(buf: bytes, depth: int) -> str | None:
    return _time(buf, depth, micro=True)


def _as_int(value: int | bytes) -> int:
    if isinstance(value, bytes):
        raise WireError("expected a varint")
    return value


def _duration(buf: bytes, _depth: int) -> str:
    return go_duration(signed(_as_int(_ints(buf).get(1, 0)), 64))


def go_duration(nanos: int) -> str:
    """Format nanoseconds like Go's ``time.Duration.String`` ("1h0m0s", "1.5s")."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    n = abs(nanos)
    if n < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if n >= size:
                return sign + _fraction(n, size) + unit
    hours, rest = divmod(n, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _fraction(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _fraction(n: int, size: int) -> str:
    whole, frac = divmod(n, size)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def _quantity(buf: bytes, _depth: int) -> str:
    """resource.Quantity: field 1 is its canonical string; empty means zero."""
    text = "0"
    for number, _, value in iter_fields(buf):
        if number == 1 and isinstance(value, bytes):
            text = value.decode("utf-8")
    return text


def _int_or_string(buf: bytes, _depth: int) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for number, _, value in iter_fields(buf):
        if number == 1:
            kind = signed(_as_int(value), 64)
        elif number == 2:
            int_val = signed(_as_int(value), 32)
        elif number == 3 and isinstance(value, bytes):
            str_val = value.decode("utf-8")
    return str_val if kind == 1 else int_val


def _embedded_json(data: bytes, depth: int) -> Any:
    """Bytes holding an object: JSON, or a nested protobuf envelope."""
    if not data:
        return None
    if data.startswith(MAGIC):
        return _decode_envelope(data, depth)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"embedded object is neither JSON nor protobuf: {exc}") from exc


def _raw_field(buf: bytes, depth: int) -> Any:
    """RawExtension and FieldsV1: field 1 holds the raw object bytes."""
    raw = b""
    for number, _, value in iter_fields(buf):
        if number == 1 and isinstance(value, bytes):
            raw = value
    return _embedded_json(raw, depth + 1)


_SPECIAL: dict[str, Callable[[bytes, int], Any]] = {
    schema.TIME: _time,
    schema.MICRO_TIME: _micro_time,
    schema.DURATION: _duration,
    schema.QUANTITY: _quantity,
    schema.QUANTITY_VALUE: _quantity,
    schema.INT_OR_STRING: _int_or_string,
    schema.RAW_EXTENSION: _raw_field,
    schema.FIELDS_V1: _raw_field,
}
