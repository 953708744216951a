#!/usr/bin/env python3
"""Generate microkube/api/data/proto_schema.json.gz from a kubectl binary.

Why a kubectl binary and not the ``generated.proto`` text: every kubectl
(gogo-protobuf generated code) registers the gzipped ``FileDescriptorProto``
of each ``k8s.io/api/*/generated.proto`` and ``k8s.io/apimachinery``
``generated.proto`` it links. Those descriptors are the compiled form of the
very .proto files the client encodes with, so field numbers and types are
exact for that client version, and no fetched source has to be kept around.
Field numbers in Kubernetes protos are append-only, so the newest kubectl's
descriptors decode bodies from every older client.

Two facts the descriptors do not carry are read from the Go struct tags that
the same binary holds as plain text (``json:"…" protobuf:"…,N,…,name=…"``):

* embedded structs serialised inline in JSON (``json:",inline"``), e.g.
  ``Volume.volumeSource`` or ``IngressRule.ingressRuleValue``: their JSON name
  is written as ``""`` and the decoder merges them into the parent object;
* the rare proto field names that differ from the JSON name;
* which scalar fields Go's encoding/json would leave out when zero: gogo
  writes every non-pointer scalar, even a zero one, so the wire alone cannot
  tell ``hostNetwork: false`` (omitempty, dropped from JSON) from
  ``replicas: 0`` (a pointer, kept). The Go reflection data of the binary can:
  each struct's field records point at the tag text and at the field's type,
  whose kind byte says pointer or not. Structs are matched to messages by
  their set of (proto number, name) pairs; where candidates disagree the
  field is left as "keep when present".

Output shape (compact on purpose)::

    {"source": "kubectl.1.33",
     "messages": {"k8s.io.api.core.v1.Pod":
                    {"1": ["metadata", ".k8s.io.apimachinery…ObjectMeta", 0], …}},
     "kinds": {"apps/v1/Deployment": "k8s.io.api.apps.v1.Deployment", …}}

A field is ``[json_name, type, repeated, omit_zero]`` or, for a map,
``[json_name, "map", 0, key_type, value_type]``; a type is a scalar name
(``string``, ``int64``, ``bool``, ``bytes``, …) or ``.`` + a message's full
name (enums never occur in Kubernetes protos, which use strings).

Usage: ``python scripts/gen_proto_schema.py [--kubectl PATH] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import array
import glob
import gzip
import json
import re
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from microkube.api import protobuf as wire  # noqa: E402

_GZIP_MAGIC = re.compile(rb"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")
_TAG = re.compile(
    rb'json:"([^",]*)((?:,[a-z]+)*)"(?: \w+:"[^"]*")* protobuf:"(?:bytes|varint|fixed64|fixed32),'
    rb"(\d+),(?:(?:opt|rep|req),)?name=(\w+)"
)
_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
# reflect.Kind values (abi.Kind): scalars that encoding/json's omitempty drops at zero.
_GO_SCALAR_KINDS = set(range(1, 15)) | {24}
_GO_POINTER = 22
_SCALARS = {
    1: "double",
    2: "float",
    3: "int64",
    4: "uint64",
    5: "int32",
    6: "fixed64",
    7: "fixed32",
    8: "bool",
    9: "string",
    12: "bytes",
    13: "uint32",
    14: "enum",
    15: "sfixed32",
    16: "sfixed64",
    17: "sint32",
    18: "sint64",
}
_MESSAGE = 11
# Inline embedded fields whose Go tag carries no name= (so _TAG cannot see them):
# EphemeralContainer embeds EphemeralContainerCommon as `protobuf:"bytes,1,req"`.
_UNNAMED_INLINE = {("ephemeralContainerCommon", 1)}
# FieldDescriptorProto numbers we read.
_FIELD_KEYS = {1: "name", 3: "number", 4: "label", 5: "type", 6: "type_name"}
_REPEATED = 3
# API group of each k8s.io/api directory whose name is not "<dir>.k8s.io".
_GROUPS = {
    "core": "",
    "apps": "apps",
    "batch": "batch",
    "autoscaling": "autoscaling",
    "policy": "policy",
    "extensions": "extensions",
    "rbac": "rbac.authorization.k8s.io",
    "flowcontrol": "flowcontrol.apiserver.k8s.io",
    "apiserverinternal": "internal.apiserver.k8s.io",
}


def default_kubectl() -> str:
    """The newest kubectl.1.NN on this machine."""
    found = glob.glob("/usr/lib/google-cloud-sdk/bin/kubectl.1.*")
    if not found:
        raise SystemExit("no kubectl.1.NN found; pass --kubectl")
    return max(found, key=lambda p: int(p.rsplit(".", 1)[1]))


def descriptors(binary: bytes) -> dict[str, bytes]:
    """Every k8s.io FileDescriptorProto gzipped inside ``binary``, by file name."""
    out: dict[str, bytes] = {}
    for match in _GZIP_MAGIC.finditer(binary):
        try:
            raw = zlib.decompressobj(31).decompress(
                binary[match.start() : match.start() + (4 << 20)]
            )
        except zlib.error:
            continue
        try:
            fields = list(wire.iter_fields(raw))
        except wire.WireError:
            continue
        names = [v for n, t, v in fields if n == 1 and isinstance(v, bytes)]
        if names and names[0].startswith(b"k8s.io/") and names[0].endswith(b".proto"):
            out.setdefault(names[0].decode(), raw)
    return out


def struct_tags(binary: bytes) -> tuple[set[tuple[str, int]], dict[tuple[str, int], str]]:
    """Inline embedded fields and proto→JSON renames, from Go struct tags."""
    inline: set[tuple[str, int]] = set(_UNNAMED_INLINE)
    renames: dict[tuple[str, int], set[str]] = {}
    for m in _TAG.finditer(binary):
        json_name, opts, number, proto_name = m.group(1), m.group(2), m.group(3), m.group(4)
        key = (proto_name.decode(), int(number))
        if not json_name and b",inline" in opts:
            inline.add(key)
        elif json_name and json_name != proto_name and json_name != b"-":
            renames.setdefault(key, set()).add(json_name.decode())
    unique = {k: next(iter(v)) for k, v in renames.items() if len(v) == 1}
    return inline, unique


class _Elf:
    """Virtual address <-> file offset for a statically linked ELF64 (Go) binary."""

    def __init__(self, binary: bytes) -> None:
        self.data = binary
        phoff = struct.unpack_from("<Q", binary, 0x20)[0]
        entsize, count = struct.unpack_from("<HH", binary, 0x36)
        self.loads: list[tuple[int, int, int]] = []
        for i in range(count):
            p_type, _, offset, vaddr, _, filesz = struct.unpack_from(
                "<IIQQQQ", binary, phoff + i * entsize
            )
            if p_type == 1:  # PT_LOAD
                self.loads.append((offset, vaddr, filesz))

    def vaddr(self, offset: int) -> int | None:
        for start, vaddr, size in self.loads:
            if start <= offset < start + size:
                return offset - start + vaddr
        return None

    def offset(self, vaddr: int) -> int | None:
        for start, base, size in self.loads:
            if base <= vaddr < base + size:
                return vaddr - base + start
        return None


def _name_blobs(elf: _Elf) -> dict[int, tuple[int, str, bool]]:
    """Go ``abi.Name`` blobs with a protobuf tag: vaddr -> (number, proto name, omitempty).

    A name is ``flags, varint len, name, varint tag len, tag``; the tag text
    is found by _TAG and the header is recovered by walking back from it.
    """
    data = elf.data
    out: dict[int, tuple[int, str, bool]] = {}
    for m in _TAG.finditer(data):
        t = m.start()
        for width in (1, 2):
            if width == 1:
                if data[t - 1] & 0x80:
                    continue
                tag_len = data[t - 1]
            else:
                if not data[t - 2] & 0x80:
                    continue
                tag_len = (data[t - 2] & 0x7F) | data[t - 1] << 7
            if tag_len < m.end() - t or data[t + tag_len - 1 : t + tag_len] != b'"':
                continue
            name_end = t - width
            for length in range(1, 100):
                start = name_end - length - 2
                if (
                    data[name_end - length - 1] == length
                    and data[start] & 3 == 3  # exported, has tag
                    and _IDENT.fullmatch(data[name_end - length : name_end])
                ):
                    vaddr = elf.vaddr(start)
                    if vaddr is not None:
                        out[vaddr] = (
                            int(m.group(3)),
                            m.group(4).decode(),
                            b"omitempty" in m.group(2),
                        )
                    break
            break
    return out


def go_structs(binary: bytes) -> dict[frozenset[tuple[int, str]], list[dict[int, bool]]]:
    """Go structs with protobuf tags, keyed by their (number, proto name) set.

    Each value lists, per matching struct, ``number -> omit_zero``: True for a
    non-pointer scalar tagged omitempty (encoding/json drops it when zero).
    """
    elf = _Elf(binary)
    blobs = _name_blobs(elf)

    def record(vaddr: int) -> tuple[int, int, int] | None:
        offset = elf.offset(vaddr)
        if offset is None or offset + 24 > len(binary):
            return None
        name, typ, field_offset = struct.unpack_from("<QQQ", binary, offset)
        if elf.offset(name) is None or elf.offset(typ) is None or field_offset > 1 << 24:
            return None
        return name, typ, field_offset

    # structField records are {name *abi.Name, typ *abi.Type, offset uintptr}.
    hits: list[int] = []
    for start, base, size in elf.loads:
        words = array.array("Q")
        words.frombytes(binary[start : start + size - size % 8])
        hits += [base + i * 8 for i, word in enumerate(words) if word in blobs]

    out: dict[frozenset[tuple[int, str]], list[dict[int, bool]]] = {}
    seen: set[int] = set()
    for hit in hits:
        first, current = hit, record(hit)
        while current is not None and current[2] != 0:  # back to the field at offset 0
            previous = record(first - 24)
            if previous is None or previous[2] >= current[2]:
                current = None
                break
            first, current = first - 24, previous
        if current is None or first in seen:
            continue
        seen.add(first)
        fields: dict[int, bool] = {}
        names: set[tuple[int, str]] = set()
        address, last = first, -1
        while (rec := record(address)) is not None and rec[2] > last or address == first:
            if rec is None:
                break
            last = rec[2]
            if rec[0] in blobs:
                number, proto_name, omitempty = blobs[rec[0]]
                type_offset = elf.offset(rec[1])
                kind = binary[type_offset + 23] & 0x1F if type_offset is not None else 0
                fields[number] = omitempty and kind in _GO_SCALAR_KINDS
                names.add((number, proto_name))
            address += 24
        out.setdefault(frozenset(names), []).append(fields)
    return out


def _message(
    raw: bytes,
    prefix: str,
    out: dict[str, Any],
    maps: dict[str, tuple[str, str]],
) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """Collect one DescriptorProto (and its nested types) into ``out``."""
    name = ""
    fields: list[tuple[int, dict[str, Any]]] = []
    nested: list[bytes] = []
    is_map = False
    for num, _, value in wire.iter_fields(raw):
        if num == 1 and isinstance(value, bytes):
            name = value.decode()
        elif num == 2 and isinstance(value, bytes):
            f: dict[str, Any] = {}
            for fnum, _, fval in wire.iter_fields(value):
                key = _FIELD_KEYS.get(fnum)
                if key:
                    f[key] = fval.decode() if isinstance(fval, bytes) else fval
            fields.append((int(f["number"]), f))
        elif num == 3 and isinstance(value, bytes):
            nested.append(value)
        elif num == 7 and isinstance(value, bytes):
            is_map = any(n == 7 and v == 1 for n, _, v in wire.iter_fields(value))
    full = f"{prefix}.{name}"
    for child in nested:
        _message(child, full, out, maps)
    if is_map:
        by_num = dict(fields)
        maps["." + full] = (_type(by_num[1]), _type(by_num[2]))
    else:
        out[full] = fields
    return full, fields


def _type(f: dict[str, Any]) -> str:
    if f["type"] == _MESSAGE:
        return str(f["type_name"])
    return _SCALARS[int(f["type"])]


def _omit_zero(
    structs: dict[frozenset[tuple[int, str]], list[dict[int, bool]]],
    fields: list[tuple[int, dict[str, Any]]],
) -> dict[int, bool]:
    """number -> omit_zero for a message, if its Go structs all agree."""
    candidates = structs.get(frozenset((n, str(f["name"])) for n, f in fields), [])
    agreed: dict[int, bool] = {}
    for number, _ in fields:
        votes = {c.get(number, False) for c in candidates}
        agreed[number] = votes == {True}
    return agreed


def build(binary: bytes, source: str) -> dict[str, Any]:
    raw_messages: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    maps: dict[str, tuple[str, str]] = {}
    packages: dict[str, str] = {}
    for raw in descriptors(binary).values():
        package = next(
            v.decode() for n, _, v in wire.iter_fields(raw) if n == 2 and isinstance(v, bytes)
        )
        for num, _, value in wire.iter_fields(raw):
            if num == 4 and isinstance(value, bytes):
                full, _ = _message(value, package, raw_messages, maps)
                packages[full] = package
    inline, renames = struct_tags(binary)
    structs = go_structs(binary)

    messages: dict[str, dict[str, list[Any]]] = {}
    for full, fields in sorted(raw_messages.items()):
        table: dict[str, list[Any]] = {}
        omit_zero = _omit_zero(structs, fields)
        for number, f in sorted(fields, key=lambda item: item[0]):
            name = str(f["name"])
            json_name = renames.get((name, number), name)
            if f["type"] == _MESSAGE and (name, number) in inline:
                json_name = ""
            type_name = _type(f)
            if type_name in maps:
                key_type, value_type = maps[type_name]
                table[str(number)] = [json_name, "map", 0, key_type, value_type]
            else:
                repeated = f.get("label") == _REPEATED
                table[str(number)] = [
                    json_name,
                    type_name,
                    int(repeated),
                    int(not repeated and omit_zero.get(number, False)),
                ]
        messages[full] = table

    kinds: dict[str, str] = {}
    for full, package in sorted(packages.items()):
        if not package.startswith("k8s.io.api."):
            continue
        directory, version = package.split(".")[3:5]
        group = _GROUPS.get(directory, f"{directory}.k8s.io")
        api_version = f"{group}/{version}" if group else version
        if any(f[0] == "metadata" for f in messages[full].values()):
            kinds[f"{api_version}/{full.rsplit('.', 1)[1]}"] = full
    return {"source": source, "messages": messages, "kinds": kinds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubectl", default=None, help="kubectl binary to read")
    parser.add_argument(
        "--out",
        default=str(
            Path(__file__).resolve().parent.parent / "microkube/api/data/proto_schema.json.gz"
        ),
    )
    args = parser.parse_args(argv)
    path = args.kubectl or default_kubectl()
    schema = build(Path(path).read_bytes(), Path(path).name)
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    # mtime=0 keeps the output byte-identical between runs.
    Path(args.out).write_bytes(gzip.compress(text.encode(), mtime=0))
    print(
        f"{args.out}: {len(schema['messages'])} messages, {len(schema['kinds'])} kinds from {path}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
