"""Server-side apply and managedFields, against upstream-observed outputs.

The expected ``fieldsV1`` documents are the ones a real apiserver writes for
the same requests (``kubectl apply --server-side``, ``kubectl create``/client-side
apply), and the conflict texts are those of ``internal.NewConflictError``.
"""

from __future__ import annotations

import copy
import json

import pytest

from microkube import errors
from microkube.objects import fieldmanager as fm
from microkube.objects import fieldpath
from microkube.resources import schema as resource_schema

T0 = "2024-01-01T00:00:00Z"
T1 = "2024-01-01T00:01:00Z"
T2 = "2024-01-01T00:02:00Z"


@pytest.fixture(scope="module")
def defs():
    return resource_schema.definitions()


def deployment(replicas=2, image="nginx", **extra_container):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, **extra_container}]},
            },
        },
    }


def entries(obj):
    return obj["metadata"]["managedFields"]


def entry(obj, manager, operation=None):
    (found,) = [
        e for e in entries(obj) if e["manager"] == manager and operation in (None, e["operation"])
    ]
    return found


def store(obj, rv="1"):
    """What the store would add: identity fields that are never owned."""
    out = copy.deepcopy(obj)
    out["metadata"].update(uid="u-1", resourceVersion=rv, creationTimestamp=T0, generation=1)
    return out


def test_first_apply_creates_object_and_apply_entry(defs):
    out = fm.apply(None, deployment(), manager="kubectl", force=False, schema=defs, now=T0)
    assert out["spec"]["replicas"] == 2
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "web", "image": "nginx"}]
    assert entries(out) == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}}
                            }
                        },
                    },
                },
            },
        }
    ]


def test_update_entry_encoding_matches_upstream_create(defs):
    dep = deployment(ports=[{"containerPort": 80}])
    out = fm.update_managed_fields(
        None, dep, manager="kubectl-client-side-apply", schema=defs, now=T0
    )
    e = entry(out, "kubectl-client-side-apply")
    assert e["operation"] == "Update" and e["apiVersion"] == "apps/v1" and e["time"] == T0
    expected = (
        '{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},'
        '"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":'
        '{"k:{\\"name\\":\\"web\\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{".":{},'
        '"k:{\\"containerPort\\":80,\\"protocol\\":\\"TCP\\"}":{".":{},"f:containerPort":{}}}}}}}}}'
    )
    assert json.dumps(e["fieldsV1"], separators=(",", ":")) == expected


def test_identity_and_status_fields_are_never_owned(defs):
    dep = store(deployment())
    dep["status"] = {"replicas": 2}
    out = fm.update_managed_fields(None, dep, manager="kubectl-create", schema=defs, now=T0)
    fields = entry(out, "kubectl-create")["fieldsV1"]
    assert "f:status" not in fields
    assert set(fields["f:metadata"]) == {"f:labels"}


def test_second_apply_without_a_field_removes_it(defs):
    first = store(fm.apply(None, deployment(), manager="kubectl", force=False, schema=defs, now=T0))
    second = deployment()
    del second["spec"]["replicas"]
    second["metadata"]["labels"]["tier"] = "front"
    out = fm.apply(first, second, manager="kubectl", force=False, schema=defs, now=T1)
    assert "replicas" not in out["spec"]
    assert out["metadata"]["labels"] == {"app": "web", "tier": "front"}
    e = entry(out, "kubectl")
    assert e["time"] == T1
    assert "f:replicas" not in e["fieldsV1"]["f:spec"]
    assert e["fieldsV1"]["f:metadata"] == {"f:labels": {"f:app": {}, "f:tier": {}}}
    assert out["metadata"]["uid"] == "u-1"  # untouched identity


def test_removed_field_owned_by_another_manager_is_kept(defs):
    first = store(fm.apply(None, deployment(), manager="kubectl", force=False, schema=defs, now=T0))
    # Another applier also sets replicas to the same value: shared ownership.
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2},
    }
    shared = store(fm.apply(first, other, manager="hpa", force=False, schema=defs, now=T1), "2")
    second = deployment()
    del second["spec"]["replicas"]
    out = fm.apply(shared, second, manager="kubectl", force=False, schema=defs, now=T2)
    assert out["spec"]["replicas"] == 2
    assert "f:replicas" not in entry(out, "kubectl")["fieldsV1"]["f:spec"]
    assert entry(out, "hpa")["fieldsV1"] == {"f:spec": {"f:replicas": {}}}


def _csa_created(defs, *, annotate):
    dep = deployment(replicas=1)
    if annotate:
        dep["metadata"]["annotations"] = {fm.LAST_APPLIED: json.dumps(deployment(replicas=1))}
    created = fm.update_managed_fields(
        None, dep, manager="kubectl-client-side-apply", schema=defs, now=T0
    )
    return store(created)


def test_conflict_with_client_side_apply_update(defs):
    live = _csa_created(defs, annotate=False)
    with pytest.raises(errors.Conflict) as info:
        fm.apply(live, deployment(replicas=3), manager="kubectl", force=False, schema=defs, now=T1)
    err = info.value
    assert err.message == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        ".spec.replicas"
    )
    status = err.status()
    assert status["code"] == 409 and status["reason"] == "Conflict"
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
            "field": ".spec.replicas",
        }
    ]


def test_same_values_do_not_conflict_and_become_shared(defs):
    live = _csa_created(defs, annotate=False)
    out = fm.apply(
        live, deployment(replicas=1), manager="kubectl", force=False, schema=defs, now=T1
    )
    assert "f:replicas" in entry(out, "kubectl")["fieldsV1"]["f:spec"]
    assert "f:replicas" in entry(out, "kubectl-client-side-apply")["fieldsV1"]["f:spec"]


def test_force_takes_ownership(defs):
    live = _csa_created(defs, annotate=False)
    out = fm.apply(live, deployment(replicas=3), manager="kubectl", force=True, schema=defs, now=T1)
    assert out["spec"]["replicas"] == 3
    assert "f:replicas" in entry(out, "kubectl")["fieldsV1"]["f:spec"]
    assert "f:replicas" not in entry(out, "kubectl-client-side-apply")["fieldsV1"]["f:spec"]
    assert [e["operation"] for e in entries(out)] == ["Apply", "Update"]


def test_kubectl_takes_over_client_side_apply_via_last_applied(defs):
    # Upstream lastAppliedManager: fields recorded in the last-applied annotation
    # and unchanged since are the applier's to take, without a conflict.
    live = _csa_created(defs, annotate=True)
    out = fm.apply(
        live, deployment(replicas=3), manager="kubectl", force=False, schema=defs, now=T1
    )
    assert out["spec"]["replicas"] == 3
    last = json.loads(out["metadata"]["annotations"][fm.LAST_APPLIED])
    assert last["spec"]["replicas"] == 3
    # Another manager name gets the conflict.
    with pytest.raises(errors.Conflict):
        fm.apply(live, deployment(replicas=3), manager="other", force=False, schema=defs, now=T1)


def test_two_appliers_keep_their_containers(defs):
    base = deployment()
    live = store(fm.apply(None, base, manager="a", force=False, schema=defs, now=T0))
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "side", "image": "busybox", "args": ["sleep"]}]}
            }
        },
    }
    live = store(fm.apply(live, sidecar, manager="b", force=False, schema=defs, now=T1), "2")
    names = [c["name"] for c in live["spec"]["template"]["spec"]["containers"]]
    assert names == ["web", "side"]
    # a re-applies its config (image bumped): b's container survives.
    out = fm.apply(live, deployment(image="nginx:2"), manager="a", force=False, schema=defs, now=T2)
    containers = out["spec"]["template"]["spec"]["containers"]
    assert containers == [
        {"name": "web", "image": "nginx:2"},
        {"name": "side", "image": "busybox", "args": ["sleep"]},
    ]
    b_containers = entry(out, "b")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert b_containers == {
        'k:{"name":"side"}': {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}
    }
    # b drops its sidecar: it is pruned, a's container stays.
    empty = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    out = fm.apply(store(out, "3"), empty, manager="b", force=False, schema=defs, now=T2)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["web"]
    assert [e["manager"] for e in entries(out)] == ["a"]


def test_set_lists_merge_as_sets(defs):
    def cm(finalizers):
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "finalizers": finalizers},
            "data": {"k": "v"},
        }

    live = store(
        fm.apply(None, cm(["a.example/f1"]), manager="one", force=False, schema=defs, now=T0)
    )
    live = store(
        fm.apply(live, cm(["a.example/f2"]), manager="two", force=False, schema=defs, now=T1), "2"
    )
    assert live["metadata"]["finalizers"] == ["a.example/f1", "a.example/f2"]
    assert entry(live, "two")["fieldsV1"] == {
        "f:data": {"f:k": {}},
        "f:metadata": {"f:finalizers": {'v:"a.example/f2"': {}}},
    }
    out = fm.apply(live, cm([]), manager="one", force=False, schema=defs, now=T2)
    assert out["metadata"]["finalizers"] == ["a.example/f2"]


def test_atomic_lists_are_replaced_and_owned_whole(defs):
    live = store(
        fm.apply(
            None, deployment(args=["a", "b"]), manager="kubectl", force=False, schema=defs, now=T0
        )
    )
    out = fm.apply(
        live, deployment(args=["c"]), manager="kubectl", force=False, schema=defs, now=T1
    )
    assert out["spec"]["template"]["spec"]["containers"][0]["args"] == ["c"]
    c = entry(out, "kubectl")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert c['k:{"name":"web"}']["f:args"] == {}


def test_update_steals_ownership_without_conflict(defs):
    live = store(fm.apply(None, deployment(), manager="kubectl", force=False, schema=defs, now=T0))
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    out = fm.update_managed_fields(
        live, scaled, manager="kubectl", subresource="scale", schema=defs, now=T1
    )
    assert out["spec"]["replicas"] == 5
    assert "f:replicas" not in entry(out, "kubectl", "Apply")["fieldsV1"]["f:spec"]
    assert entry(out, "kubectl", "Update") == {
        "manager": "kubectl",
        "operation": "Update",
        "apiVersion": "apps/v1",
        "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
        "subresource": "scale",
    }
    # A later apply changing replicas now conflicts with that updater.
    with pytest.raises(errors.Conflict) as info:
        fm.apply(
            store(out, "2"),
            deployment(replicas=7),
            manager="kubectl",
            force=False,
            schema=defs,
            now=T2,
        )
    assert info.value.causes[0].message == (
        'conflict with "kubectl" with subresource "scale" using apps/v1'
    )


def test_noop_writes_keep_timestamps(defs):
    live = store(fm.apply(None, deployment(), manager="kubectl", force=False, schema=defs, now=T0))
    again = fm.apply(live, deployment(), manager="kubectl", force=False, schema=defs, now=T1)
    assert again == live
    same = fm.update_managed_fields(live, copy.deepcopy(live), manager="x", schema=defs, now=T1)
    assert same == live


def test_status_writes_own_status_only(defs):
    live = store(fm.apply(None, deployment(), manager="kubectl", force=False, schema=defs, now=T0))
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
    out = fm.update_managed_fields(
        live, new, manager="kube-controller-manager", subresource="status", schema=defs, now=T1
    )
    e = entry(out, "kube-controller-manager")
    assert e["subresource"] == "status"
    assert e["fieldsV1"] == {
        "f:status": {
            ".": {},
            "f:conditions": {
                ".": {},
                'k:{"type":"Available"}': {".": {}, "f:status": {}, "f:type": {}},
            },
            "f:replicas": {},
        }
    }


def test_schemaless_objects_merge_maps_and_replace_lists():
    def widget(items, **spec):
        return {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"items": items, **spec},
        }

    live = store(
        fm.apply(None, widget([1, 2], a=1), manager="one", force=False, schema=None, now=T0)
    )
    assert entry(live, "one")["fieldsV1"] == {"f:spec": {".": {}, "f:a": {}, "f:items": {}}}
    out = fm.apply(live, widget([3]), manager="two", force=True, schema=None, now=T1)
    assert out["spec"] == {"items": [3], "a": 1}


def test_managed_fields_in_applied_config_are_rejected(defs):
    dep = deployment()
    dep["metadata"]["managedFields"] = []
    with pytest.raises(errors.BadRequest):
        fm.apply(None, dep, manager="kubectl", force=False, schema=defs, now=T0)


def test_missing_map_key_is_a_bad_request(defs):
    dep = deployment()
    dep["spec"]["template"]["spec"]["containers"] = [{"image": "nginx"}]
    with pytest.raises(errors.BadRequest, match='omits key field "name"'):
        fm.apply(None, dep, manager="kubectl", force=False, schema=defs, now=T0)


def test_reset_managed_fields(defs):
    live = store(fm.apply(None, deployment(), manager="kubectl", force=False, schema=defs, now=T0))
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [{}]
    out = fm.update_managed_fields(live, new, manager="kubectl-edit", schema=defs, now=T1)
    assert "managedFields" not in out["metadata"]


def test_update_managers_are_capped(defs):
    live = store(fm.apply(None, deployment(), manager="kubectl", force=False, schema=defs, now=T0))
    for i in range(12):
        new = copy.deepcopy(live)
        new["metadata"]["labels"][f"l{i}"] = "x"
        live = store(
            fm.update_managed_fields(
                live, new, manager=f"m{i}", schema=defs, now=f"2024-01-01T01:{i:02d}:00Z"
            ),
            str(i + 2),
        )
    managers = [e["manager"] for e in entries(live)]
    assert managers[0] == "kubectl"
    assert len(managers) == 11 and "ancient-changes" in managers
    assert "m0" not in managers and "m11" in managers


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ("kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd", "kubectl"),
        ("Python-urllib/3.11", "Python-urllib"),
        ("OpenAPI-Generator/29.0.0/python", "OpenAPI-Generator"),
        ("", ""),
        ("bad\x00agent", "badagent"),
        ("x" * 200, "x" * 128),
    ],
)
def test_default_manager(agent, expected):
    assert fm.default_manager(agent) == expected


def test_fieldsv1_round_trip_and_paths():
    data = {
        "f:metadata": {"f:finalizers": {'v:"a"': {}}},
        "f:spec": {
            "f:ports": {
                ".": {},
                'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}},
            }
        },
    }
    paths = fieldpath.from_fields_v1(data)
    assert fieldpath.to_fields_v1(paths) == data
    strings = sorted(fieldpath.path_string(p) for p in paths)
    assert strings == [
        '.metadata.finalizers[="a"]',
        ".spec.ports",
        '.spec.ports[port=80,protocol="TCP"]',
        '.spec.ports[port=80,protocol="TCP"].port',
    ]


def test_untracked_object_is_owned_by_before_first_apply(defs):
    live = store(deployment(replicas=1))  # no managedFields at all
    with pytest.raises(errors.Conflict) as info:
        fm.apply(live, deployment(replicas=3), manager="helm", force=False, schema=defs, now=T1)
    assert info.value.message == (
        'Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: '
        ".spec.replicas"
    )
    out = fm.apply(live, deployment(replicas=1), manager="helm", force=False, schema=defs, now=T1)
    assert [e["manager"] for e in entries(out)] == ["helm", "before-first-apply"]
