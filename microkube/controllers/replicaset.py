"""ReplicaSet controller: keep ``spec.replicas`` pods matching the selector.

Mirrors ``pkg/controller/replicaset``::

    rs/pod events ─► queue(rs key) ─► reconcile
        claim pods (adopt matching orphans, release owned pods that stopped matching)
        if expectations satisfied: create missing pods / delete surplus pods
        status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas

* Pods are created from the template with ``generateName: <rs>-`` and a
  controller ownerReference (blockOwnerDeletion), in slow-start batches
  (1, 2, 4, …) capped by ``burst_replicas`` (500), so a failing create does
  not turn into 500 failures.
* :class:`~microkube.controllers.base.Expectations` stop the controller from
  creating again while its own creates have not reached the cache yet.
* Surplus pods go in upstream's ``ActivePodsWithRanks`` order: unscheduled,
  then pending, then not ready, then ready for less time, then more restarts,
  then newest.
* ``availableReplicas`` honours ``minReadySeconds``; when pods are ready but
  not yet available the key is re-queued for when they will be.
"""

from __future__ import annotations

import copy
import logging
from datetime import timedelta
from typing import Any

from microkube import errors
from microkube.client.informer import InformerFactory, key_of, split_key
from microkube.client.local import LocalClient
from microkube.controllers import events
from microkube.controllers.base import Clock, Controller, Expectations, parse_time
from microkube.objects import meta
from microkube.objects.selectors import LabelSelector

log = logging.getLogger(__name__)

Obj = dict[str, Any]
BURST_REPLICAS = 500


# --- pod state (shared with the deployment controller) ------------------------------


def pod_condition(pod: Obj, type_: str) -> Obj | None:
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = pod_condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def is_pod_available(pod: Obj, min_ready_seconds: int, now: Any) -> bool:
    """Ready for at least ``min_ready_seconds`` (mirrors podutil.IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    c = pod_condition(pod, "Ready") or {}
    since = parse_time(c.get("lastTransitionTime"))
    return since is not None and since + timedelta(seconds=min_ready_seconds) <= now


def is_pod_active(pod: Obj) -> bool:
    """Not terminated and not being deleted (controller.IsPodActive)."""
    phase = pod.get("status", {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not meta.is_deleting(pod)


def _deletion_rank(pod: Obj, related_on_node: int) -> tuple[Any, ...]:
    """Sort key: smaller sorts first = deleted first (ActivePodsWithRanks.Less)."""
    spec, status = pod.get("spec", {}), pod.get("status", {})
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", "Pending"), 0)
    ready = is_pod_ready(pod)
    ready_since = ""
    if ready:
        ready_since = (pod_condition(pod, "Ready") or {}).get("lastTransitionTime") or ""
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    created = pod["metadata"].get("creationTimestamp") or ""
    return (
        1 if spec.get("nodeName") else 0,  # unassigned first
        phase_rank,  # pending < unknown < running
        1 if ready else 0,  # not ready first
        -related_on_node,  # doubled-up pods first
        _neg(ready_since),  # ready for less time first
        -restarts,  # more restarts first
        _neg(created),  # newer first
    )


def _neg(stamp: str) -> tuple[int, ...]:
    """Descending order for an RFC 3339 string (empty sorts first, as upstream)."""
    return (0,) if not stamp else (1, *(-ord(ch) for ch in stamp))


def pods_to_delete(pods: list[Obj], n: int) -> list[Obj]:
    nodes: dict[str, int] = {}
    for p in pods:
        node = p.get("spec", {}).get("nodeName") or ""
        nodes[node] = nodes.get(node, 0) + 1
    ranked = sorted(
        pods, key=lambda p: _deletion_rank(p, nodes[p.get("spec", {}).get("nodeName") or ""])
    )
    return ranked[:n]


def pod_from_template(owner: Obj, template: Obj) -> Obj:
    """A pod for ``owner`` built from its template (controller.GetPodFromTemplate)."""
    tmeta = template.get("metadata") or {}
    m: Obj = {"generateName": owner["metadata"]["name"] + "-"}
    if tmeta.get("labels"):
        m["labels"] = dict(tmeta["labels"])
    if tmeta.get("annotations"):
        m["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        m["finalizers"] = list(tmeta["finalizers"])
    m["ownerReferences"] = [meta.owner_ref(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": m,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


class ReplicaSetController(Controller):
    name = "replicaset-controller"
    workers = 2

    def __init__(
        self, client: LocalClient, informers: InformerFactory, *, clock: Clock | None = None
    ) -> None:
        super().__init__(client, informers, clock=clock)
        self.rs_rt = client.resource("apps", "replicasets")
        self.pod_rt = client.resource("", "pods")
        self.rs_informer = informers.informer(self.rs_rt)
        self.pod_informer = informers.informer(self.pod_rt)
        self.expectations = Expectations()
        self.recorder = events.EventRecorder(client, self.name, clock=clock)
        self.burst_replicas = BURST_REPLICAS
        self.rs_informer.add_handler(
            on_add=self.enqueue,
            on_update=lambda old, new: self.enqueue(new),
            on_delete=self._rs_deleted,
        )
        self.pod_informer.add_handler(
            on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted
        )

    # --- event handlers -------------------------------------------------------------

    def _rs_deleted(self, rs: Obj) -> None:
        self.expectations.forget(key_of(rs))
        self.enqueue(rs)

    def _pod_added(self, pod: Obj) -> None:
        owner = self.owner_key(pod, "ReplicaSet")
        if owner is not None:
            if meta.is_deleting(pod):
                self._pod_deleted(pod)
                return
            self.expectations.creation_observed(owner)
            self.queue.add(owner)
            return
        self._enqueue_matching(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        owner = self.owner_key(new, "ReplicaSet")
        if meta.is_deleting(new) and not meta.is_deleting(old):
            self._pod_deleted(new)
            return
        old_owner = self.owner_key(old, "ReplicaSet")
        if old_owner and old_owner != owner:
            self.queue.add(old_owner)
        if owner is not None:
            self.queue.add(owner)
            ready_changed = is_pod_ready(old) != is_pod_ready(new)
            rs = self.rs_informer.get_key(owner)
            mrs = int((rs or {}).get("spec", {}).get("minReadySeconds") or 0)
            if ready_changed and mrs > 0:
                self.queue.add_after(owner, mrs + 1)
            return
        if old.get("metadata", {}).get("labels") != new.get("metadata", {}).get("labels"):
            self._enqueue_matching(new)

    def _pod_deleted(self, pod: Obj) -> None:
        owner = self.owner_key(pod, "ReplicaSet")
        if owner is not None:
            self.expectations.deletion_observed(owner, key_of(pod))
            self.queue.add(owner)

    def _enqueue_matching(self, pod: Obj) -> None:
        labels = pod.get("metadata", {}).get("labels") or {}
        ns = pod["metadata"].get("namespace", "")
        for rs in self.rs_informer.list(ns):
            sel = rs.get("spec", {}).get("selector")
            if sel and LabelSelector.from_structured(sel).matches(labels):
                self.enqueue(rs)

    # --- reconcile --------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        cached = self.rs_informer.get(ns, name)
        if cached is None:
            self.expectations.forget(key)
            return
        rs = copy.deepcopy(cached)
        spec = rs.get("spec", {})
        selector = LabelSelector.from_structured(spec.get("selector") or {})
        needs_sync = self.expectations.satisfied(key)
        pods = [p for p in self.pod_informer.list(ns) if is_pod_active(p)]
        owned = await self.claim_pods(rs, selector, pods)
        manage_error: Exception | None = None
        if needs_sync and not meta.is_deleting(rs):
            try:
                await self.manage_replicas(owned, rs, key)
            except errors.ApiError as exc:
                manage_error = exc
        await self.update_status(rs, owned, manage_error)
        if manage_error is not None:
            raise manage_error
        mrs = int(spec.get("minReadySeconds") or 0)
        if mrs > 0:
            now = self.now()
            ready = [p for p in owned if is_pod_ready(p)]
            if any(not is_pod_available(p, mrs, now) for p in ready):
                self.queue.add_after(key, mrs)

    async def claim_pods(self, rs: Obj, selector: LabelSelector, pods: list[Obj]) -> list[Obj]:
        """Adopt matching orphans, release non-matching owned pods (PodControllerRefManager)."""
        uid = rs["metadata"]["uid"]
        out = []
        for pod in pods:
            ref = meta.controller_ref(pod)
            labels = pod["metadata"].get("labels") or {}
            matches = not selector.empty and selector.matches(labels)
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if matches:
                    out.append(pod)
                elif not meta.is_deleting(rs):
                    await self._release(pod, uid)
                continue
            if not matches or meta.is_deleting(rs) or meta.is_deleting(pod):
                continue
            adopted = await self._adopt(rs, pod)
            if adopted is not None:
                out.append(adopted)
        return out

    async def _adopt(self, rs: Obj, pod: Obj) -> Obj | None:
        fresh = self.client.try_get(self.rs_rt, rs["metadata"]["namespace"], rs["metadata"]["name"])
        if fresh is None or fresh["metadata"]["uid"] != rs["metadata"]["uid"]:
            return None  # recheck before adopting, as upstream's canAdopt

        def adopt(p: Obj) -> Obj | None:
            if meta.controller_ref(p) is not None:
                return None
            p["metadata"].setdefault("ownerReferences", []).append(meta.owner_ref(rs))
            return p

        try:
            return await self.client.mutate(
                self.pod_rt, pod["metadata"]["namespace"], pod["metadata"]["name"], adopt
            )
        except errors.NotFound:
            return None

    async def _release(self, pod: Obj, uid: str) -> None:
        def release(p: Obj) -> Obj | None:
            refs = p["metadata"].get("ownerReferences") or []
            kept = [r for r in refs if r.get("uid") != uid]
            if len(kept) == len(refs):
                return None
            p["metadata"]["ownerReferences"] = kept
            if not kept:
                p["metadata"].pop("ownerReferences")
            return p

        try:
            await self.client.mutate(
                self.pod_rt, pod["metadata"]["namespace"], pod["metadata"]["name"], release
            )
        except errors.NotFound:
            pass

    async def manage_replicas(self, pods: list[Obj], rs: Obj, key: str) -> None:
        ns = rs["metadata"]["namespace"]
        diff = len(pods) - int(rs["spec"].get("replicas", 1))
        if diff < 0:
            want = min(-diff, self.burst_replicas)
            self.expectations.expect_creations(key, want)
            created, batch = 0, 1
            template = rs["spec"].get("template") or {}
            while created < want:
                n = min(batch, want - created)
                for _ in range(n):
                    try:
                        pod = await self.client.create(
                            self.pod_rt, ns, pod_from_template(rs, template)
                        )
                    except errors.ApiError as exc:
                        self.expectations.lower_creations(key, want - created)
                        await self.recorder.event(
                            rs, events.WARNING, "FailedCreate", f"Error creating: {exc}"
                        )
                        raise
                    created += 1
                    await self.recorder.event(
                        rs,
                        events.NORMAL,
                        "SuccessfulCreate",
                        f"Created pod: {pod['metadata']['name']}",
                    )
                batch *= 2
        elif diff > 0:
            victims = pods_to_delete(pods, min(diff, self.burst_replicas))
            self.expectations.expect_deletions(key, [key_of(p) for p in victims])
            for pod in victims:
                pname = pod["metadata"]["name"]
                try:
                    await self.client.delete(self.pod_rt, ns, pname, uid=pod["metadata"]["uid"])
                except errors.NotFound:
                    self.expectations.deletion_observed(key, key_of(pod))
                    continue
                except errors.ApiError as exc:
                    self.expectations.deletion_observed(key, key_of(pod))
                    await self.recorder.event(
                        rs, events.WARNING, "FailedDelete", f"Error deleting: {exc}"
                    )
                    raise
                await self.recorder.event(
                    rs, events.NORMAL, "SuccessfulDelete", f"Deleted pod: {pname}"
                )

    def calculate_status(self, rs: Obj, pods: list[Obj], error: Exception | None) -> Obj:
        spec = rs.get("spec", {})
        tlabels = (spec.get("template") or {}).get("metadata", {}).get("labels") or {}
        mrs = int(spec.get("minReadySeconds") or 0)
        now = self.now()
        full = sum(
            1
            for p in pods
            if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in tlabels.items())
        )
        status: Obj = dict(rs.get("status") or {})
        status["replicas"] = len(pods)
        status["fullyLabeledReplicas"] = full
        status["readyReplicas"] = sum(1 for p in pods if is_pod_ready(p))
        status["availableReplicas"] = sum(1 for p in pods if is_pod_available(p, mrs, now))
        status["observedGeneration"] = rs["metadata"].get("generation", 1)
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        if error is not None:
            old = next(
                (c for c in status.get("conditions") or [] if c["type"] == "ReplicaFailure"), None
            )
            conds.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate"
                    if len(pods) < int(spec.get("replicas", 1))
                    else "FailedDelete",
                    "message": str(error),
                    "lastTransitionTime": (old or {}).get("lastTransitionTime") or meta.now(),
                }
            )
        status["conditions"] = conds
        if not conds:
            status.pop("conditions")
        for k in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
            if not status[k]:
                status.pop(k)  # omitempty, as upstream serialises them
        return status

    async def update_status(self, rs: Obj, pods: list[Obj], error: Exception | None) -> None:
        status = self.calculate_status(rs, pods, error)
        if status == (rs.get("status") or {}):
            return

        def write(obj: Obj) -> Obj | None:
            if obj["metadata"]["uid"] != rs["metadata"]["uid"]:
                return None
            if obj.get("status") == status:
                return None
            obj["status"] = status
            return obj

        try:
            await self.client.mutate(
                self.rs_rt,
                rs["metadata"]["namespace"],
                rs["metadata"]["name"],
                write,
                subresource="status",
            )
        except errors.NotFound:
            pass
