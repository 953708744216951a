"""Field validation against the generated definitions (fieldValidation=Strict/Warn)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from microkube.resources import schema

DEPLOY = "io.k8s.api.apps.v1.Deployment"


def _deployment(**spec_extra: object) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "b"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx",
                            "ports": [{"containerPort": 80}],
                            "resources": {"limits": {"cpu": "100m", "memory": 64}},
                            "env": [{"name": "A", "value": "1"}],
                        }
                    ]
                },
            },
            **spec_extra,
        },
    }


def test_definitions_load_without_the_client_and_carry_upstream_names() -> None:
    defs = schema.definitions()
    for name in (
        "io.k8s.api.core.v1.Pod",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.api.resource.Quantity",
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        "io.k8s.api.autoscaling.v1.Scale",
        "io.k8s.api.policy.v1.Eviction",
    ):
        assert name in defs, name
    assert defs[DEPLOY]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    assert "containers" in defs["io.k8s.api.core.v1.PodSpec"]["required"]


def test_patch_extensions_match_upstream_tags() -> None:
    d = schema.definitions()
    containers = d["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    volumes = d["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"]
    assert volumes["x-kubernetes-patch-strategy"] == "merge,retainKeys"
    ports = d["io.k8s.api.core.v1.Container"]["properties"]["ports"]
    assert ports["x-kubernetes-patch-merge-key"] == "containerPort"
    assert (
        d["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]["x-kubernetes-patch-merge-key"]
        == "port"
    )
    assert (
        d["io.k8s.api.core.v1.Container"]["properties"]["volumeMounts"][
            "x-kubernetes-patch-merge-key"
        ]
        == "mountPath"
    )
    assert (
        d["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"][
            "x-kubernetes-patch-strategy"
        ]
        == "retainKeys"
    )
    meta = d["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["finalizers"]["x-kubernetes-patch-strategy"] == "merge"
    assert meta["ownerReferences"]["x-kubernetes-patch-merge-key"] == "uid"
    conds = d["io.k8s.api.apps.v1.DeploymentStatus"]["properties"]["conditions"]
    assert conds["x-kubernetes-patch-merge-key"] == "type"
    assert (
        "x-kubernetes-patch-merge-key"
        not in d["io.k8s.api.core.v1.Container"]["properties"]["command"]
    )
    target = d["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]
    assert target["$ref"].endswith("intstr.IntOrString")
    limits = d["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"]["$ref"].endswith("resource.Quantity")


def test_every_ref_resolves() -> None:
    defs = schema.definitions()
    refs: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"].removeprefix("#/definitions/"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(defs)
    assert refs and refs <= set(defs)


def test_committed_file_is_small_gzip() -> None:
    path = Path(schema.__file__).parent / "data" / "definitions.json.gz"
    assert path.stat().st_size < 1_000_000
    assert json.loads(gzip.decompress(path.read_bytes()))


def test_valid_object_has_no_unknown_fields() -> None:
    assert schema.unknown_fields(_deployment(), DEPLOY) == []


def test_unknown_fields_are_reported_with_json_paths() -> None:
    obj = _deployment(foo=1)
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolizy"] = "Always"
    obj["metadata"]["nam"] = "x"
    obj["status"] = {"bogus": True}
    assert schema.unknown_fields(obj, DEPLOY) == [
        "metadata.nam",
        "spec.template.spec.containers[0].imagePullPolizy",
        "spec.foo",
        "status.bogus",
    ]
    assert (
        schema.strict_error_message(["spec.foo", "spec.bar"])
        == 'strict decoding error: unknown field "spec.foo", unknown field "spec.bar"'
    )
    assert schema.warning_messages(["spec.foo"]) == ['unknown field "spec.foo"']


def test_maps_and_raw_extensions_are_open() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "y"}}
    assert schema.unknown_fields(cm, "io.k8s.api.core.v1.ConfigMap") == []
    rev = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "r"},
        "revision": 1,
        "data": {"spec": {"anything": {"goes": 1}}},
    }
    assert schema.unknown_fields(rev, "io.k8s.api.apps.v1.ControllerRevision") == []
    assert schema.unknown_fields({"a": 1}, "no.such.Definition") == []


def test_crd_structural_schema_is_closed_unless_preserved() -> None:
    crd_schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "size": {"type": "integer"},
                    "tags": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                    },
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "empty": {"type": "object"},
                },
            }
        },
    }
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "bogus": 1},
        "spec": {
            "size": 1,
            "colour": "red",
            "tags": [{"k": "a", "v": "b"}],
            "free": {"x": {"y": 1}},
            "labels": {"a": "b"},
            "empty": {"dropped": 1},
        },
    }
    name = "com.example.v1.Widget"
    assert schema.unknown_fields(obj, name, extra_schemas={name: crd_schema}) == [
        "metadata.bogus",
        "spec.colour",
        "spec.tags[0].v",
        "spec.empty.dropped",
    ]


def test_decode_errors_mirror_go_json_messages() -> None:
    assert schema.decode_error(_deployment(), DEPLOY) is None
    bad = _deployment()
    bad["spec"]["replicas"] = "three"
    assert schema.decode_error(bad, DEPLOY) == (
        "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas "
        "of type int32"
    )
    bad = _deployment()
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = 5
    assert schema.decode_error(bad, DEPLOY) == (
        "json: cannot unmarshal number into Go struct field "
        "Container.spec.template.spec.containers.image of type string"
    )
    ok = _deployment()
    ok["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = 1
    assert schema.decode_error(ok, DEPLOY) is None
