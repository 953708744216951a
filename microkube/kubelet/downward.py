"""The downward API and ``$(VAR)`` expansion, shared by env vars and volumes.

Mirrors ``pkg/fieldpath`` (``fieldRef`` paths, labels/annotations rendered
as ``key="value"`` lines), ``resource.ExtractResourceValueByContainerName``
(``resourceFieldRef``: limits fall back to node allocatable, values rounded
up by ``divisor``) and ``third_party/forked/golang/expansion`` (``$(VAR)``
replaced when defined, ``$$`` escapes, unknown references kept verbatim).
"""

from __future__ import annotations

import math
import re
from typing import Any

from microkube.objects import quantity

Obj = dict[str, Any]

_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _format_map(m: dict[str, str]) -> str:
    return "\n".join(f'{k}="{_escape(v)}"' for k, v in sorted(m.items()))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def field_value(pod: Obj, path: str) -> str:
    m, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    sub = _SUBSCRIPT.match(path)
    if sub:
        return str((m.get(sub.group(1)) or {}).get(sub.group(2), ""))
    simple = {
        "metadata.name": m.get("name", ""),
        "metadata.namespace": m.get("namespace", ""),
        "metadata.uid": m.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    if path == "metadata.labels":
        return _format_map(m.get("labels") or {})
    if path == "metadata.annotations":
        return _format_map(m.get("annotations") or {})
    raise ValueError(f"unsupported fieldPath {path!r}")


def resource_value(pod: Obj, ref: Obj, node: Obj | None, container_name: str = "") -> str:
    name = ref.get("containerName") or container_name
    resource = str(ref.get("resource", ""))
    kind, _, res = resource.partition(".")
    container = next(
        (c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == name),
        None,
    )
    if container is None:
        raise ValueError(f"container {name!r} not found for resourceFieldRef")
    amounts = (container.get("resources") or {}).get(kind) or {}
    raw = amounts.get(res)
    if raw is None and kind == "limits":
        raw = ((node or {}).get("status") or {}).get("allocatable", {}).get(res)
    if raw is None:
        raw = 0
    divisor = quantity.parse(ref.get("divisor") or "1")
    if divisor <= 0:
        divisor = quantity.parse("1")
    return str(math.ceil(quantity.parse(raw) / divisor))


def expand(text: str, env: dict[str, str]) -> str:
    """``$(VAR)`` expansion as Kubernetes does it for command, args and env values."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    if name in env:
                        out.append(env[name])
                    else:
                        out.append(text[i : end + 1])
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def env_for_expansion(pod: Obj, container: Obj) -> dict[str, str]:
    """Plain ``env`` values (enough for ``subPathExpr``, which may only use those)."""
    out: dict[str, str] = {}
    for e in container.get("env") or []:
        if "value" in e:
            out[e["name"]] = expand(str(e.get("value") or ""), out)
        elif (e.get("valueFrom") or {}).get("fieldRef"):
            out[e["name"]] = field_value(pod, e["valueFrom"]["fieldRef"].get("fieldPath", ""))
    return out
