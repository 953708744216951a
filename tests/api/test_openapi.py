"""OpenAPI v2/v3 documents derived from the catalog and the schema data."""

from __future__ import annotations

import json

import pytest

from microkube.api import openapi
from microkube.resources.catalog import Catalog, default_catalog
from microkube.resources.types import ResourceType

WIDGETS = ResourceType("example.com", "v1", "Widget", "widgets", subresources=("status",))
WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def _refs(node: object, out: set[str]) -> set[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            out.add(node["$ref"])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


@pytest.fixture
def catalog() -> Catalog:
    cat = default_catalog()
    cat.register(WIDGETS)
    return cat


def _extra() -> dict:
    return {"com.example.v1.Widget": WIDGET_SCHEMA}


def test_index_lists_every_group_version_with_hash(catalog: Catalog) -> None:
    index = openapi.v3_index(catalog, _extra())
    expected = {openapi.gv_path(g, v) for g, vs in catalog.group_versions().items() for v in vs}
    assert set(index["paths"]) == expected
    assert "api/v1" in index["paths"] and "apis/apps/v1" in index["paths"]
    entry = index["paths"]["apis/apps/v1"]
    doc = openapi.v3_document(catalog, "apps", "v1", _extra())
    assert doc is not None
    assert entry["serverRelativeURL"] == "/openapi/v3/apis/apps/v1?hash=" + openapi.document_hash(
        doc
    )
    assert openapi.document_hash(doc).isupper() and len(openapi.document_hash(doc)) == 128


@pytest.mark.parametrize("gv", ["api/v1", "apis/apps/v1", "apis/example.com/v1", "apis/batch/v1"])
def test_v3_documents_are_structurally_valid(catalog: Catalog, gv: str) -> None:
    parts = gv.split("/")
    group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
    doc = openapi.v3_document(catalog, group, version, _extra())
    assert doc is not None
    json.dumps(doc)  # serialisable
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc, set()):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    # kubectl's field-validation probe: every kind has a PATCH with GVK and fieldValidation.
    for rt in catalog.in_group_version(group, version):
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        patches = [
            item["patch"]
            for item in doc["paths"].values()
            if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"] == gvk
        ]
        if "patch" not in rt.verbs:
            continue
        assert patches, rt.kind
        for op in patches:
            names = {(p["name"], p["in"]) for p in op["parameters"]}
            assert ("fieldValidation", "query") in names
            assert ("dryRun", "query") in names and ("fieldManager", "query") in names
            assert set(op["requestBody"]["content"]) == set(openapi.PATCH_CONTENT_TYPES)
            assert op["x-kubernetes-action"] == "patch"
        # explain finds the kind's schema by its GVK extension
        assert any(gvk in s.get("x-kubernetes-group-version-kind", []) for s in schemas.values()), (
            rt.kind
        )


def test_explain_targets_are_present(catalog: Catalog) -> None:
    apps = openapi.v3_document(catalog, "apps", "v1")
    assert apps is not None
    schemas = apps["components"]["schemas"]
    spec = schemas["io.k8s.api.apps.v1.DeploymentSpec"]
    strategy = spec["properties"]["strategy"]
    assert strategy["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}
    ]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"
    assert "description" in schemas["io.k8s.api.apps.v1.DeploymentStrategy"]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert "io.k8s.api.core.v1.Pod" not in schemas  # only what apps/v1 reaches
    assert "io.k8s.api.autoscaling.v1.Scale" in schemas  # deployments/scale
    core = openapi.v3_document(catalog, "", "v1")
    assert core is not None
    assert "/api/v1/namespaces/{namespace}/pods/{name}" in core["paths"]
    assert "/api/v1/pods" in core["paths"]
    assert "/api/v1/nodes/{name}/status" in core["paths"]
    assert "/api/v1/namespaces/{namespace}/pods/{name}/status" in core["paths"]


def test_crd_schema_comes_from_extra_schemas(catalog: Catalog) -> None:
    doc = openapi.v3_document(catalog, "example.com", "v1", _extra())
    assert doc is not None
    widget = doc["components"]["schemas"]["com.example.v1.Widget"]
    assert widget["properties"]["spec"]["properties"]["size"] == {"type": "integer"}
    assert widget["x-kubernetes-group-version-kind"] == [
        {"group": "example.com", "kind": "Widget", "version": "v1"}
    ]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    assert "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}" in doc["paths"]
    assert openapi.crd_definition_name("stable.example.com", "v1", "CronTab") == (
        "com.example.stable.v1.CronTab"
    )


def test_unknown_group_version_is_none(catalog: Catalog) -> None:
    assert openapi.v3_document(catalog, "nope.io", "v1") is None


def test_hash_changes_when_catalog_changes(catalog: Catalog) -> None:
    before = openapi.v3_index(catalog, _extra())["paths"]["apis/example.com/v1"]
    catalog.register(ResourceType("example.com", "v1", "Gadget", "gadgets"))
    after = openapi.v3_index(catalog, _extra())["paths"]["apis/example.com/v1"]
    assert before != after
    catalog.unregister("example.com", "widgets")
    catalog.unregister("example.com", "gadgets")
    assert "apis/example.com/v1" not in openapi.v3_index(catalog)["paths"]


def test_v2_document_resolves_every_ref(catalog: Catalog) -> None:
    doc = openapi.v2_document(catalog, _extra())
    assert doc["swagger"] == "2.0"
    for ref in _refs(doc, set()):
        assert ref.removeprefix("#/definitions/") in doc["definitions"], ref
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/strategic-merge-patch+json" in patch["consumes"]
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    assert any(p["in"] == "body" for p in patch["parameters"])


def test_documents_are_cached_per_generation(catalog: Catalog) -> None:
    a = openapi.v3_document(catalog, "apps", "v1")
    assert openapi.v3_document(catalog, "apps", "v1") is a
    catalog.register(WIDGETS)
    assert openapi.v3_document(catalog, "apps", "v1") is not a
