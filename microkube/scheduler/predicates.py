"""Pure scheduling filters: does a pod fit a node?  No I/O, raw dicts in, reasons out.

Mirrors the default kube-scheduler filter plugins a single-node cluster
meets, each returning upstream's failure reason verbatim so that
``kubectl describe pod`` reads the same:

==========================  ==================================================
plugin                      reason
==========================  ==================================================
NodeUnschedulable           node(s) were unschedulable
NodeName                    node(s) didn't match the requested node name
TaintToleration             node(s) had untolerated taint {key: value}
NodeAffinity                node(s) didn't match Pod's node affinity/selector
NodeResourcesFit            Insufficient cpu / memory / ephemeral-storage,
                            Too many pods
==========================  ==================================================

:func:`unschedulable_message` folds per-node reasons into upstream's
``0/1 nodes are available: 1 Insufficient memory.``
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from microkube.objects import quantity

Obj = dict[str, Any]

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def pod_requests(pod: Obj) -> dict[str, int]:
    """Effective requests: max(sum of containers, each init container) + overhead.

    CPU in millicores, everything else in units (bytes); mirrors
    ``resourcehelper.PodRequests``.
    """
    spec = pod.get("spec") or {}

    def of(c: Obj) -> dict[str, int]:
        req = (c.get("resources") or {}).get("requests") or {}
        return {k: _amount(k, v) for k, v in req.items()}

    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        for k, v in of(c).items():
            total[k] = total.get(k, 0) + v
    for c in spec.get("initContainers") or []:
        for k, v in of(c).items():
            total[k] = max(total.get(k, 0), v)
    for k, v in (spec.get("overhead") or {}).items():
        total[k] = total.get(k, 0) + _amount(k, v)
    return total


def _amount(resource: str, q: Any) -> int:
    return quantity.milli(q) if resource == "cpu" else quantity.value(q)


def allocatable(node: Obj) -> dict[str, int]:
    alloc = (node.get("status") or {}).get("allocatable") or {}
    return {k: _amount(k, v) for k, v in alloc.items()}


def _tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        op = t.get("operator") or "Equal"
        if not t.get("key"):
            if op == "Exists":
                return True
            continue
        if t["key"] != taint.get("key"):
            continue
        if op == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _match_expression(labels: dict[str, str], expr: Obj) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
    have = labels.get(key)
    if op == "In":
        return have is not None and have in values
    if op == "NotIn":
        return have is None or have not in values
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt") and have is not None and values:
        try:
            a, b = int(have), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def _match_fields(node: Obj, expr: Obj) -> bool:
    if expr.get("key") != "metadata.name":
        return False
    return _match_expression({"metadata.name": node["metadata"]["name"]}, expr)


def matches_node_affinity(pod: Obj, node: Obj) -> bool:
    """nodeSelector AND requiredDuringSchedulingIgnoredDuringExecution (terms ORed)."""
    spec = pod.get("spec") or {}
    labels = node.get("metadata", {}).get("labels") or {}
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    required = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms")
    if not required:
        return True
    for term in required:
        exprs = term.get("matchExpressions") or []
        fields = term.get("matchFields") or []
        if not exprs and not fields:
            continue  # an empty term matches nothing
        if all(_match_expression(labels, e) for e in exprs) and all(
            _match_fields(node, f) for f in fields
        ):
            return True
    return False


def filter_node(pod: Obj, node: Obj, existing: list[Obj]) -> list[str]:
    """Reasons ``pod`` cannot run on ``node`` (empty: it fits).

    ``existing`` are the pods already bound to the node; terminal ones are ignored.
    """
    spec = pod.get("spec") or {}
    node_spec = node.get("spec") or {}
    name = node["metadata"]["name"]
    tolerations = spec.get("tolerations") or []
    if node_spec.get("unschedulable") and not _tolerates(
        tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    ):
        return ["node(s) were unschedulable"]
    if spec.get("nodeName") and spec["nodeName"] != name:
        return ["node(s) didn't match the requested node name"]
    for taint in node_spec.get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not _tolerates(tolerations, taint):
            return [
                f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
            ]
    if not matches_node_affinity(pod, node):
        return ["node(s) didn't match Pod's node affinity/selector"]
    return _resource_reasons(pod, node, existing)


def _resource_reasons(pod: Obj, node: Obj, existing: list[Obj]) -> list[str]:
    alloc = allocatable(node)
    live = [
        p for p in existing if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]
    reasons = []
    if "pods" in alloc and len(live) + 1 > alloc["pods"]:
        reasons.append("Too many pods")
    want = pod_requests(pod)
    used: dict[str, int] = {}
    for p in live:
        for k, v in pod_requests(p).items():
            used[k] = used.get(k, 0) + v
    for res in sorted(want):
        if want[res] <= 0:
            continue
        have = alloc.get(res)
        if have is None:
            if res in ("cpu", "memory", "ephemeral-storage") or "/" not in res:
                continue  # a node that does not report it is not constrained
            reasons.append(f"Insufficient {res}")
        elif used.get(res, 0) + want[res] > have:
            reasons.append(f"Insufficient {res}")
    return reasons


def unschedulable_message(total_nodes: int, reasons: dict[str, list[str]]) -> str:
    """Upstream's FitError text, e.g. ``0/1 nodes are available: 1 Insufficient memory.``."""
    if total_nodes == 0:
        return "no nodes available to schedule pods"
    counts: Counter[str] = Counter()
    for node_reasons in reasons.values():
        counts.update(set(node_reasons))
    parts = sorted(f"{n} {r}" for r, n in counts.items())
    return f"0/{total_nodes} nodes are available: {', '.join(parts)}."
