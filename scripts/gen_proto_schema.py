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
* the rare proto field names that differ from the JSON name.

Output shape (compact on purpose)::

    {"source": "kubectl.1.33",
     "messages": {"k8s.io.api.core.v1.Pod":
                    {"1": ["metadata", ".k8s.io.apimachinery…ObjectMeta", 0], …}},
     "kinds": {"apps/v1/Deployment": "k8s.io.api.apps.v1.Deployment", …}}

A field is ``[json_name, type, repeated]`` or, for a map,
``[json_name, "map", 0, key_type, value_type]``; a type is a scalar name
(``string``, ``int64``, ``bool``, ``bytes``, …) or ``.`` + a message's full
name (enums never occur in Kubernetes protos, which use strings).

Usage: ``python scripts/gen_proto_schema.py [--kubectl PATH] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import re
import sys
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from microkube.api import protobuf as wire  # noqa: E402

_GZIP_MAGIC = re.compile(rb"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")
_TAG = re.compile(
    rb'json:"([^",]*)((?:,[a-z]+)*)" protobuf:"(?:bytes|varint|fixed64|fixed32),(\d+),'
    rb"(?:(?:opt|rep|req),)?name=(\w+)"
)
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

    messages: dict[str, dict[str, list[Any]]] = {}
    for full, fields in sorted(raw_messages.items()):
        table: dict[str, list[Any]] = {}
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
                table[str(number)] = [json_name, type_name, int(f.get("label") == _REPEATED)]
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
