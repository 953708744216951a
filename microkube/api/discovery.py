"""Discovery documents derived from the catalog.

Legacy discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/<g>/<v>``) and the
aggregated form (``apidiscovery.k8s.io`` v2 and v2beta1) that kubectl prefers:
it asks with an Accept header naming ``as=APIGroupDiscoveryList`` and detects
the format only from the response Content-Type.
"""

from __future__ import annotations

from typing import Any

from microkube.resources.catalog import Catalog
from microkube.resources.types import KNOWN_SUBRESOURCES, ResourceType

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4+microkube",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-11-01T00:00:00Z",
    "goVersion": "go1.23.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}

AGGREGATED = "apidiscovery.k8s.io"


def aggregated_version(accept: str) -> str | None:
    """The apidiscovery version the client asked for first (``v2``/``v2beta1``), or None."""
    for part in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("g") == AGGREGATED and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") in ("v2", "v2beta1"):
                return params["v"]
        elif part.split(";")[0].strip() in ("application/json", "*/*"):
            return None
    return None


def aggregated_content_type(version: str) -> str:
    return f"application/json;g={AGGREGATED};v={version};as=APIGroupDiscoveryList"


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list(catalog: Catalog) -> dict[str, Any]:
    groups = []
    for group, versions in catalog.group_versions().items():
        if not group:
            continue
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(catalog: Catalog, group: str) -> dict[str, Any] | None:
    versions = catalog.group_versions().get(group)
    if not versions:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": gvs,
        "preferredVersion": gvs[0],
    }


def _storage_hash(rt: ResourceType) -> str:
    import hashlib

    return hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).hexdigest()[:16]


def api_resource_list(catalog: Catalog, group: str, version: str) -> dict[str, Any] | None:
    types = catalog.in_group_version(group, version)
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for rt in sorted(types, key=lambda t: t.plural):
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        if "list" in rt.verbs:
            entry["storageVersionHash"] = _storage_hash(rt)
        resources.append(entry)
        for sub in rt.subresources:
            info = KNOWN_SUBRESOURCES.get(sub)
            if info is None:
                continue
            s: dict[str, Any] = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": info.kind or rt.kind,
                "verbs": list(info.verbs),
            }
            if info.group or info.version:
                s["group"] = info.group
                s["version"] = info.version
            resources.append(s)
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }


def _aggregated_resource(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    subs = []
    for sub in rt.subresources:
        info = KNOWN_SUBRESOURCES.get(sub)
        if info is None:
            continue
        subs.append(
            {
                "subresource": sub,
                "responseKind": {
                    "group": info.group if info.kind else rt.group,
                    "version": info.version if info.kind else rt.version,
                    "kind": info.kind or rt.kind,
                },
                "verbs": list(info.verbs),
            }
        )
    if subs:
        entry["subresources"] = subs
    return entry


def aggregated(catalog: Catalog, *, legacy: bool, version: str) -> dict[str, Any]:
    """The APIGroupDiscoveryList for ``/api`` (legacy) or ``/apis``."""
    items = []
    for group, versions in catalog.group_versions().items():
        if legacy != (group == ""):
            continue
        vs = []
        for v in versions:
            resources = [
                _aggregated_resource(rt)
                for rt in sorted(catalog.in_group_version(group, v), key=lambda t: t.plural)
            ]
            vs.append({"version": v, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": vs})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"{AGGREGATED}/{version}",
        "metadata": {},
        "items": items,
    }
