"""DaemonSet controller: one pod on every node that should run it.

Mirrors ``pkg/controller/daemon`` (``daemon_controller.go``, ``update.go`` and
``util/daemonset_util.go``)::

    ds/pod/node events ─► queue(ds) ─► sync
        per node: should run? (nodeSelector, required node affinity, taints)
          yes, no pod      → create a pod pinned by node affinity
          yes, failed pod  → delete it (recreated on the next pass)
          no, pods         → delete them (misscheduled)
        RollingUpdate: replace old-revision pods within maxUnavailable/maxSurge
        status: desired/current/misscheduled/ready/available/updated counts

Pods are pinned as upstream does since 1.12: ``spec.affinity.nodeAffinity.
requiredDuringSchedulingIgnoredDuringExecution`` is replaced by a
``metadata.name In [node]`` field term, and the scheduler binds them.  DS pods
tolerate the node-condition taints (not-ready/unreachable NoExecute; disk,
memory, pid pressure and unschedulable NoSchedule; network-unavailable for
host-network pods).  The pod label ``controller-revision-hash`` is the bare
template hash (the ControllerRevision is ``<ds>-<hash>``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from microkube import errors
from microkube.client.informer import InformerFactory, split_key
from microkube.client.local import LocalClient
from microkube.controllers import events, history
from microkube.controllers.base import Clock, Controller
from microkube.objects import meta

log = logging.getLogger(__name__)

_EXISTS = "Exists"
DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": _EXISTS, "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": _EXISTS, "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": _EXISTS, "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": _EXISTS, "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": _EXISTS, "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": _EXISTS, "effect": "NoSchedule"},
]
_NETWORK = {
    "key": "node.kubernetes.io/network-unavailable",
    "operator": _EXISTS,
    "effect": "NoSchedule",
}


# --- node predicates (pure) ---------------------------------------------------------


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (
            taint.get("value") or ""
        ):
            return True
    return False


def _term_matches(term: dict[str, Any], node: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    for e in term.get("matchExpressions") or []:
        key, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        have = key in labels
        v = labels.get(key)
        ok = {
            "In": have and v in vals,
            "NotIn": not have or v not in vals,
            "Exists": have,
            "DoesNotExist": not have,
            "Gt": have and _int(v) is not None and vals and _int(v) > _int(vals[0]),  # type: ignore[operator]
            "Lt": have and _int(v) is not None and vals and _int(v) < _int(vals[0]),  # type: ignore[operator]
        }.get(op, False)
        if not ok:
            return False
    for f in term.get("matchFields") or []:
        value = node["metadata"]["name"] if f.get("key") == "metadata.name" else None
        vals = f.get("values") or []
        if (f.get("operator") == "In") != (value in vals):
            return False
    return bool(term.get("matchExpressions") or term.get("matchFields"))


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def should_run(template_spec: dict[str, Any], node: dict[str, Any]) -> bool:
    """Mirrors ``NodeShouldRunDaemonPod`` for a pod built from the template."""
    labels = node["metadata"].get("labels") or {}
    for k, v in (template_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (
        ((template_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms")
    if required and not any(_term_matches(t, node) for t in required):
        return False
    tolerations = list(template_spec.get("tolerations") or []) + DEFAULT_TOLERATIONS
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return False
    return True


def daemon_pod(
    ds: dict[str, Any], template: dict[str, Any], node: str, hash_: str
) -> dict[str, Any]:
    pod = history.pod_from_template(ds, template)
    pod["metadata"]["labels"][history.REVISION_HASH_LABEL] = hash_
    spec = pod["spec"]
    affinity = spec.setdefault("affinity", {})
    affinity.setdefault("nodeAffinity", {})["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]
    }
    tolerations = spec.setdefault("tolerations", [])
    extra = DEFAULT_TOLERATIONS + ([_NETWORK] if spec.get("hostNetwork") else [])
    for t in extra:
        if not any(
            x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in tolerations
        ):
            tolerations.append(dict(t))
    return pod


def pod_node(pod: dict[str, Any]) -> str | None:
    """The node a DS pod is for: nodeName, else its pinning affinity."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    terms = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    for t in terms:
        for f in t.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and f.get("values"):
                return str(f["values"][0])
    return None


def scaled(value: Any, total: int) -> int:
    """IntOrString with percentages rounded up (``GetScaledValueFromIntOrPercent``)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value or 0)


# --- controller -------------------------------------------------------------------------


class DaemonSetController(Controller):
    name = "daemonset-controller"

    def __init__(
        self, client: LocalClient, informers: InformerFactory, *, clock: Clock | None = None
    ) -> None:
        super().__init__(client, informers, clock=clock)
        self.ds_rt = client.resource("apps", "daemonsets")
        self.pod_rt = client.resource("", "pods")
        self.node_rt = client.resource("", "nodes")
        self.recorder = events.EventRecorder(client, self.name, clock=clock)
        self.ds_informer = informers.informer(self.ds_rt)
        self.enqueue_changes(self.ds_informer)
        self.enqueue_owner_changes(informers.informer(self.pod_rt), "DaemonSet")
        informers.informer(self.node_rt).add_handler(
            self._all, lambda old, new: self._all(new), self._all
        )

    def _all(self, _node: dict[str, Any]) -> None:
        for key in self.ds_informer.keys():
            self.queue.add(key)

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        await self.sync(ns, name)

    async def sync(self, namespace: str, name: str) -> None:
        ds = self.client.try_get(self.ds_rt, namespace, name)
        if ds is None or meta.is_deleting(ds):
            return
        revisions = history.owned_revisions(self.client, ds)
        status = ds.get("status") or {}
        rev, collisions = await history.ensure_revision(
            self.client, ds, revisions, collision_count=int(status.get("collisionCount") or 0)
        )
        hash_ = rev["metadata"]["labels"][history.REVISION_HASH_LABEL]
        nodes = self.client.list(self.node_rt).items
        template = ds["spec"].get("template") or {}
        by_node: dict[str, list[dict[str, Any]]] = {}
        for p in history.owned(self.client.list(self.pod_rt, namespace).items, ds):
            by_node.setdefault(pod_node(p) or "", []).append(p)
        wanted = {n["metadata"]["name"] for n in nodes if should_run(template.get("spec") or {}, n)}
        for node in sorted(wanted):
            live = [p for p in by_node.get(node, []) if not meta.is_deleting(p)]
            failed = [p for p in live if (p.get("status") or {}).get("phase") == "Failed"]
            for p in failed:
                await self._delete(ds, p)
            if len(live) == len(failed):
                await self._create(ds, template, node, hash_)
            else:
                # Duplicates of one revision: keep the oldest (a surge pair of two
                # revisions is the rolling update's business).
                groups: dict[str, list[dict[str, Any]]] = {}
                for p in live:
                    if p not in failed:
                        groups.setdefault(_hash(p), []).append(p)
                for group in groups.values():
                    group.sort(
                        key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"])
                    )
                    for p in group[1:]:
                        await self._delete(ds, p)
        for node, ps in by_node.items():
            if node not in wanted:
                for p in ps:
                    if not meta.is_deleting(p):
                        await self._delete(ds, p)
        if (ds["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate":
            await self._roll(ds, template, wanted, hash_)
        await self._status(ds, wanted, hash_, collisions)
        live_revs = {rev["metadata"]["name"]}
        await history.truncate_history(self.client, ds, revisions, live_revs)

    def _pods_by_node(self, ds: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        pods = history.owned(self.client.list(self.pod_rt, ds["metadata"]["namespace"]).items, ds)
        for p in pods:
            out.setdefault(pod_node(p) or "", []).append(p)
        return out

    async def _roll(
        self, ds: dict[str, Any], template: dict[str, Any], wanted: set[str], hash_: str
    ) -> None:
        """Mirrors ``rollingUpdate``: replace old pods within maxUnavailable/maxSurge."""
        ru = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        desired = len(wanted)
        max_surge = scaled(ru.get("maxSurge", 0), desired)
        max_unavailable = scaled(ru.get("maxUnavailable", 1), desired)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1
        by_node = self._pods_by_node(ds)
        unavailable = 0
        old_on: list[tuple[str, dict[str, Any], bool]] = []
        for node in sorted(wanted):
            live = [p for p in by_node.get(node, []) if not meta.is_deleting(p)]
            new = [p for p in live if _hash(p) == hash_]
            old = [p for p in live if _hash(p) != hash_]
            if not any(history.pod_ready(p) for p in live):
                unavailable += 1
            if old and not new:
                old_on.append((node, old[0], history.pod_ready(old[0])))
            elif old and new and history.pod_ready(new[0]):
                for p in old:  # surge pod is ready: retire the old one
                    await self._delete(ds, p)
        surged = sum(
            1
            for node in wanted
            for p in by_node.get(node, [])
            if _hash(p) == hash_ and any(_hash(q) != hash_ for q in by_node.get(node, []))
        )
        for node, pod, ready in sorted(old_on, key=lambda x: x[2]):
            if not ready:
                await self._delete(ds, pod)  # already unavailable: replacing costs nothing
            elif max_surge > 0 and surged < max_surge:
                await self._create(ds, template, node, hash_)
                surged += 1
            elif max_surge == 0 and unavailable < max_unavailable:
                await self._delete(ds, pod)
                unavailable += 1

    async def _create(
        self, ds: dict[str, Any], template: dict[str, Any], node: str, hash_: str
    ) -> None:
        body = daemon_pod(ds, template, node, hash_)
        try:
            out = await self.client.create(self.pod_rt, ds["metadata"]["namespace"], body)
        except errors.ApiError as exc:
            await self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {exc}")
            raise
        await self.recorder.event(
            ds, "Normal", "SuccessfulCreate", f"Created pod: {out['metadata']['name']}"
        )

    async def _delete(self, ds: dict[str, Any], pod: dict[str, Any]) -> None:
        m = pod["metadata"]
        if await history.delete_quietly(self.client, self.pod_rt, m["namespace"], m["name"]):
            await self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {m['name']}")

    async def _status(self, ds: dict[str, Any], wanted: set[str], hash_: str, coll: int) -> None:
        by_node = self._pods_by_node(ds)
        st: dict[str, Any] = {
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": len(wanted),
            "numberReady": 0,
            "observedGeneration": ds["metadata"].get("generation", 1),
            "updatedNumberScheduled": 0,
            "numberAvailable": 0,
            "numberUnavailable": 0,
        }
        for node, ps in by_node.items():
            live = [p for p in ps if not meta.is_deleting(p)]
            if not live:
                continue
            if node not in wanted:
                st["numberMisscheduled"] += 1
                continue
            st["currentNumberScheduled"] += 1
            if any(history.pod_ready(q) for q in live):
                st["numberReady"] += 1
                st["numberAvailable"] += 1
            if any(_hash(q) == hash_ for q in live):
                st["updatedNumberScheduled"] += 1
        st["numberUnavailable"] = len(wanted) - st["numberAvailable"]
        if coll:
            st["collisionCount"] = coll
        for k in ("numberAvailable", "numberUnavailable", "updatedNumberScheduled"):
            if not st[k]:
                st.pop(k)
        if st == ds.get("status"):
            return

        def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
            if obj["metadata"]["uid"] != ds["metadata"]["uid"]:
                return None
            obj["status"] = st
            return obj

        await self.client.mutate(
            self.ds_rt,
            ds["metadata"]["namespace"],
            ds["metadata"]["name"],
            mutate,
            subresource="status",
        )


def _hash(pod: dict[str, Any]) -> str:
    return str((pod["metadata"].get("labels") or {}).get(history.REVISION_HASH_LABEL, ""))


__all__ = ["DaemonSetController", "daemon_pod", "should_run", "tolerates"]
