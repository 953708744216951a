"""Pure filter tests: each upstream filter's reason, and the folded message."""

from __future__ import annotations

from typing import Any

from microkube.scheduler import predicates


def node(**kw: Any) -> dict[str, Any]:
    alloc = kw.pop("allocatable", {"cpu": "2", "memory": "1Gi", "pods": "110"})
    return {
        "metadata": {"name": kw.pop("name", "n1"), "labels": kw.pop("labels", {})},
        "spec": kw.pop("spec", {}),
        "status": {"allocatable": alloc},
    }


def pod(requests: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "x"}
    if requests:
        c["resources"] = {"requests": requests}
    return {"metadata": {"name": "p"}, "spec": {"containers": [c], **spec}}


def test_fits_empty_node() -> None:
    assert predicates.filter_node(pod({"cpu": "500m"}), node(), []) == []


def test_insufficient_memory_counts_existing_pods() -> None:
    existing = [pod({"memory": "768Mi"})]
    assert predicates.filter_node(pod({"memory": "512Mi"}), node(), existing) == [
        "Insufficient memory"
    ]
    # terminal pods do not count
    existing[0]["status"] = {"phase": "Succeeded"}
    assert predicates.filter_node(pod({"memory": "512Mi"}), node(), existing) == []


def test_quantities_cpu_and_init_containers() -> None:
    p = pod({"cpu": "1500m"})
    p["spec"]["initContainers"] = [
        {"name": "i", "image": "x", "resources": {"requests": {"cpu": "3"}}}
    ]
    assert predicates.pod_requests(p)["cpu"] == 3000
    assert predicates.filter_node(p, node(), []) == ["Insufficient cpu"]


def test_too_many_pods() -> None:
    n = node(allocatable={"cpu": "2", "memory": "1Gi", "pods": "1"})
    assert predicates.filter_node(pod(), n, [pod()]) == ["Too many pods"]


def test_node_selector_and_affinity() -> None:
    n = node(labels={"disk": "ssd", "zone": "a"})
    assert predicates.filter_node(pod(nodeSelector={"disk": "ssd"}), n, []) == []
    assert predicates.filter_node(pod(nodeSelector={"disk": "hdd"}), n, []) == [
        "node(s) didn't match Pod's node affinity/selector"
    ]
    terms = [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
        {"matchExpressions": [{"key": "disk", "operator": "Exists"}]},
    ]
    aff = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }
    }
    assert predicates.filter_node(pod(affinity=aff), n, []) == []
    terms.pop()
    assert predicates.filter_node(pod(affinity=aff), n, []) != []


def test_taints_and_tolerations() -> None:
    n = node(spec={"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]})
    assert predicates.filter_node(pod(), n, []) == [
        "node(s) had untolerated taint {dedicated: gpu}"
    ]
    tol = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    assert predicates.filter_node(pod(tolerations=tol), n, []) == []
    assert predicates.filter_node(pod(tolerations=[{"operator": "Exists"}]), n, []) == []
    prefer = node(spec={"taints": [{"key": "k", "effect": "PreferNoSchedule"}]})
    assert predicates.filter_node(pod(), prefer, []) == []


def test_cordoned_node_and_node_name() -> None:
    assert predicates.filter_node(pod(), node(spec={"unschedulable": True}), []) == [
        "node(s) were unschedulable"
    ]
    assert predicates.filter_node(pod(nodeName="other"), node(), []) == [
        "node(s) didn't match the requested node name"
    ]


def test_message() -> None:
    assert (
        predicates.unschedulable_message(1, {"n1": ["Insufficient memory"]})
        == "0/1 nodes are available: 1 Insufficient memory."
    )
    assert (
        predicates.unschedulable_message(
            2, {"a": ["Insufficient cpu", "Insufficient memory"], "b": ["Insufficient cpu"]}
        )
        == "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."
    )
    assert predicates.unschedulable_message(0, {}) == "no nodes available to schedule pods"
