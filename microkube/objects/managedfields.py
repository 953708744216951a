"""``metadata.managedFields`` entries ⇄ per-manager field sets.

Mirrors ``k8s.io/apimachinery/pkg/util/managedfields/internal``:
``managedfields.go`` (decode, encode, manager identifiers, entry order) and
``capmanagers.go`` (at most 10 Update entries; the oldest are folded into
``ancient-changes`` buckets per apiVersion).

An entry is keyed by its *identifier*, the JSON of the entry without
``fieldsType``, ``fieldsV1`` and ``time`` (and without ``apiVersion`` for
Apply entries, so an applier keeps one entry across versions).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from microkube.objects import fieldpath
from microkube.objects.fieldpath import FieldSet

MAX_UPDATE_MANAGERS = 10
ANCIENT_CHANGES = "ancient-changes"


class ManagerId(NamedTuple):
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str  # "" for Apply
    subresource: str

    def display(self) -> str:
        """Upstream ``printManager``: ``"kubectl"``, ``"x" using apps/v1``."""
        out = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            out += f" with subresource {json.dumps(self.subresource, ensure_ascii=False)}"
        if self.operation == "Update":
            out += f" using {self.api_version}"
        return out

    @classmethod
    def from_identifier(cls, text: str) -> ManagerId:
        data = json.loads(text)
        return cls(
            data.get("manager", ""),
            data.get("operation", ""),
            data.get("apiVersion", ""),
            data.get("subresource", ""),
        )


def identifier(mid: ManagerId) -> str:
    """Upstream ``BuildManagerIdentifier`` (Go struct field order, omitempty)."""
    data: dict[str, str] = {}
    if mid.manager:
        data["manager"] = mid.manager
    if mid.operation:
        data["operation"] = mid.operation
    if mid.api_version and mid.operation != "Apply":
        data["apiVersion"] = mid.api_version
    if mid.subresource:
        data["subresource"] = mid.subresource
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass
class VersionedSet:
    set: FieldSet
    api_version: str
    applied: bool
    time: str | None = None


Managers = dict[ManagerId, VersionedSet]


def decode(obj: Mapping[str, Any] | None) -> Managers:
    """The managers recorded in ``obj``; malformed entries are skipped."""
    out: Managers = {}
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    if not isinstance(entries, list):
        return out
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("fieldsType", "FieldsV1") != "FieldsV1":
            continue
        operation = str(entry.get("operation", ""))
        api_version = str(entry.get("apiVersion", ""))
        mid = ManagerId(
            str(entry.get("manager", "")),
            operation,
            "" if operation == "Apply" else api_version,
            str(entry.get("subresource", "")),
        )
        try:
            paths = fieldpath.from_fields_v1(entry.get("fieldsV1") or {})
        except ValueError:
            continue
        previous = out.get(mid)
        if previous is not None:
            previous.set |= paths
            continue
        time = entry.get("time")
        out[mid] = VersionedSet(
            paths, api_version, operation == "Apply", time if isinstance(time, str) else None
        )
    return out


def encode(managers: Managers) -> list[dict[str, Any]]:
    """managedFields entries, in upstream order (operation, time, manager, …)."""
    entries = []
    for mid, vs in managers.items():
        if not vs.set:
            continue
        entry: dict[str, Any] = {"manager": mid.manager, "operation": mid.operation}
        if vs.api_version:
            entry["apiVersion"] = vs.api_version
        if vs.time:
            entry["time"] = vs.time
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = fieldpath.to_fields_v1(vs.set)
        if mid.subresource:
            entry["subresource"] = mid.subresource
        entries.append(entry)
    entries.sort(
        key=lambda e: (
            e["operation"],
            _seconds(e.get("time")),
            e["manager"],
            e.get("apiVersion", ""),
            e.get("subresource", ""),
        )
    )
    return entries


def _seconds(time: str | None) -> str:
    # RFC 3339 UTC stamps ("2024-01-02T03:04:05Z") sort as text to the second.
    return (time or "")[:19]


def cap_update_managers(managers: Managers, limit: int = MAX_UPDATE_MANAGERS) -> None:
    """Fold the oldest Update entries into ``ancient-changes`` (capmanagers.go)."""
    updaters = [mid for mid, vs in managers.items() if not vs.applied]
    if len(updaters) <= limit:
        return
    updaters.sort(key=lambda m: (_seconds(managers[m].time), identifier(m)))
    first_of_version: dict[str, ManagerId] = {}
    length = len(updaters)
    for mid in updaters:
        if length <= limit:
            break
        vs = managers[mid]
        bucket = ManagerId(ANCIENT_CHANGES, "Update", vs.api_version, "")
        first = first_of_version.get(vs.api_version)
        if first is None:
            first_of_version[vs.api_version] = mid
            continue
        if bucket not in managers:
            managers[bucket] = managers.pop(first)
        merged = managers[bucket].set | vs.set
        managers[bucket] = VersionedSet(merged, vs.api_version, False, vs.time)
        del managers[mid]
        length -= 1
