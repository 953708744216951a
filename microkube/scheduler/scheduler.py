"""The scheduler: assigns pending pods to nodes through ``pods/binding`` semantics.

Data flow (a reduced kube-scheduler)::

    registry.watch(pods) ─┐                     ┌─► bind ─► Scheduled event
                          ├─► caches ─► wake ─► pass ─┤
    registry.watch(nodes)─┘                     └─► PodScheduled=False/Unschedulable
                                                    + FailedScheduling event

A *pass* tries every pending pod (no ``spec.nodeName``, our schedulerName, not
deleting, no scheduling gates), oldest first, so that pods bound earlier in
the pass count against the node's allocatable for later ones.  Filters are the
pure functions of :mod:`microkube.scheduler.predicates`; among fitting nodes
the least requested one wins.

Retry: an unschedulable pod is tried again when the cluster changes in a way
that could make it fit (a node is added or changed, a pod is deleted or
finishes) or its own spec changes (tolerations added), and at least every
``retry_interval`` seconds (upstream flushes its unschedulable queue after
5 minutes).  Our own status writes do not trigger retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from microkube import errors
from microkube.controllers import events
from microkube.objects import meta
from microkube.scheduler import binding, predicates, volumebinding

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_SCHEDULER = "default-scheduler"


class Scheduler:
    def __init__(
        self,
        registry: Any,
        *,
        name: str = DEFAULT_SCHEDULER,
        retry_interval: float = 60.0,
    ) -> None:
        self.registry = registry
        self.name = name
        self.retry_interval = retry_interval
        self.pods_rt = registry.catalog.get("", "v1", "pods")
        self.nodes_rt = registry.catalog.get("", "v1", "nodes")
        self.pvcs_rt = registry.catalog.get("", "v1", "persistentvolumeclaims")
        self.pvs_rt = registry.catalog.get("", "v1", "persistentvolumes")
        self.classes_rt = registry.catalog.get("storage.k8s.io", "v1", "storageclasses")
        self.recorder = events.EventRecorder.for_registry(registry, name)
        self.pods: dict[str, Obj] = {}
        self.nodes: dict[str, Obj] = {}
        self._generation = 0  # bumped by cluster changes that may free room
        self._tried: dict[str, tuple[int, str, float]] = {}  # uid -> (gen, spec, when)
        self._wake = asyncio.Event()
        self._snapshot: dict[str, list[Obj]] | None = None  # node -> its pods, during a pass

    # --- caches ---------------------------------------------------------------

    def prime(self) -> None:
        """Fill the caches with one list (tests; also the start of :meth:`run`)."""
        self.pods = {p["metadata"]["uid"]: p for p in self.registry.list(self.pods_rt, None).items}
        self.nodes = {
            n["metadata"]["name"]: n for n in self.registry.list(self.nodes_rt, None).items
        }
        self._generation += 1

    def _on_pod(self, etype: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        old = self.pods.get(uid)
        if etype == "DELETED":
            self.pods.pop(uid, None)
            self._tried.pop(uid, None)
            if (pod.get("spec") or {}).get("nodeName"):
                self._generation += 1
        else:
            self.pods[uid] = pod
            phase = (pod.get("status") or {}).get("phase")
            old_phase = ((old or {}).get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed") and phase != old_phase:
                self._generation += 1
        self._wake.set()

    def _on_node(self, etype: str, node: Obj) -> None:
        name = node["metadata"]["name"]
        old = self.nodes.get(name)
        if etype == "DELETED":
            self.nodes.pop(name, None)
        else:
            self.nodes[name] = node
        if old is None or _node_shape(old) != _node_shape(node):
            self._generation += 1
        self._wake.set()

    # --- one pass ---------------------------------------------------------------

    def _pending(self) -> list[Obj]:
        out = []
        for pod in self.pods.values():
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or meta.is_deleting(pod):
                continue
            if (spec.get("schedulerName") or DEFAULT_SCHEDULER) != self.name:
                continue
            if spec.get("schedulingGates"):
                continue
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            out.append(pod)
        out.sort(key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        return out

    def _due(self, pod: Obj, now: float) -> bool:
        tried = self._tried.get(pod["metadata"]["uid"])
        if tried is None:
            return True
        gen, spec, when = tried
        return (
            gen != self._generation or spec != _spec_key(pod) or now - when >= self.retry_interval
        )

    async def schedule_pending(self) -> int:
        """Try every due pending pod once; returns how many were bound."""
        now = asyncio.get_running_loop().time()
        bound = 0
        # A snapshot of the pods on each node for this pass (kept up to date
        # with our own bindings), so a pass over N pods is not O(N²).  A failure
        # is recorded at the snapshot's generation: a pod deleted while the pass
        # runs (it awaits writes) still occupied the snapshot, so pods it failed
        # must be due again at once, not after retry_interval.
        generation = self._generation
        self._snapshot = {}
        for p in self.pods.values():
            if node := (p.get("spec") or {}).get("nodeName"):
                self._snapshot.setdefault(node, []).append(p)
        try:
            for pod in self._pending():
                if not self._due(pod, now):
                    continue
                if await self.schedule_one(pod):
                    bound += 1
                else:
                    uid = pod["metadata"]["uid"]
                    self._tried[uid] = (generation, _spec_key(pod), now)
        finally:
            self._snapshot = None
        return bound

    def _on_node_pods(self, node: str) -> list[Obj]:
        if self._snapshot is not None:
            return self._snapshot.get(node, [])
        return [p for p in self.pods.values() if (p.get("spec") or {}).get("nodeName") == node]

    def _on_claim(self, etype: str, obj: Obj) -> None:
        """A claim or volume changed: pods waiting for their claims may go on."""
        self._generation += 1
        self._wake.set()

    def _volume_check(self, pod: Obj) -> tuple[str, list[Obj], list[str]]:
        """VolumeBinding: (PreFilter failure, unbound delayed claims, node reasons)."""
        if not volumebinding.claim_names(pod):
            return "", [], []
        ns = pod["metadata"]["namespace"]

        def get_class(name: str) -> Obj | None:
            return self.registry.try_get(self.classes_rt, "", name) if name else None

        failure, delayed = volumebinding.prefilter(
            pod, lambda n: self.registry.try_get(self.pvcs_rt, ns, n), get_class
        )
        if failure or not delayed:
            return failure, [], []
        volumes = self.registry.list(self.pvs_rt, None).items
        return "", delayed, volumebinding.filter_claims(delayed, get_class, volumes)

    async def _select_node_for_claims(self, claims: list[Obj], node: str) -> None:
        """PreBind: tell the provisioner where the pod goes (``selected-node``)."""

        def mutate(obj: Obj) -> Obj | None:
            anns = obj["metadata"].setdefault("annotations", {})
            if anns.get(volumebinding.SELECTED_NODE) == node:
                return None
            anns[volumebinding.SELECTED_NODE] = node
            return obj

        for pvc in claims:
            m = pvc["metadata"]
            try:
                await self.registry.guaranteed_update(
                    self.pvcs_rt, m["namespace"], m["name"], mutate, field_manager="kube-scheduler"
                )
            except errors.NotFound:
                pass

    async def schedule_one(self, pod: Obj) -> bool:
        m = pod["metadata"]
        reasons: dict[str, list[str]] = {}
        fits: list[tuple[int, str]] = []
        failure, delayed, volume_reasons = self._volume_check(pod)
        for name, node in sorted(self.nodes.items()) if not failure else ():
            r = predicates.filter_node(pod, node, self._on_node_pods(name)) + volume_reasons
            if r:
                reasons[name] = r
            else:
                fits.append((_requested_share(node, self._on_node_pods(name)), name))
        if not fits:
            if failure and self.nodes:
                message = f"0/{len(self.nodes)} nodes are available: {failure}."
            else:
                message = predicates.unschedulable_message(len(self.nodes), reasons)
            try:
                await binding.set_scheduled_condition(
                    self.registry,
                    m["namespace"],
                    m["name"],
                    "False",
                    reason="Unschedulable",
                    message=message,
                )
            except errors.NotFound:
                return False
            await self.recorder.event(pod, events.WARNING, "FailedScheduling", message)
            return False
        node_name = min(fits)[1]
        if delayed:
            # Bound once the claims are (the provisioner reacts to selected-node,
            # and the claim's change triggers another pass).
            await self._select_node_for_claims(delayed, node_name)
            return False
        try:
            new = await binding.bind(
                self.registry, m["namespace"], m["name"], node_name, uid=m["uid"]
            )
        except (errors.NotFound, errors.Conflict) as exc:
            log.debug("binding %s/%s: %s", m["namespace"], m["name"], exc)
            return False
        self.pods[m["uid"]] = new
        if self._snapshot is not None:
            self._snapshot.setdefault(node_name, []).append(new)
        self._tried.pop(m["uid"], None)
        await self.recorder.event(
            pod,
            events.NORMAL,
            "Scheduled",
            f"Successfully assigned {m['namespace']}/{m['name']} to {node_name}",
        )
        return True

    # --- running -----------------------------------------------------------------

    async def _watch(self, rt: Any, handler: Any) -> None:
        while True:
            try:
                async for etype, obj in self.registry.watch(rt, None):
                    if etype in ("ADDED", "MODIFIED", "DELETED"):
                        handler(etype, obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-list and watch again
                log.debug("scheduler watch %s ended: %s", rt.plural, exc)
            await asyncio.sleep(0.5)

    async def run(self) -> None:
        self.prime()
        watchers = [
            asyncio.create_task(self._watch(self.pods_rt, self._on_pod), name="scheduler-pods"),
            asyncio.create_task(self._watch(self.nodes_rt, self._on_node), name="scheduler-nodes"),
            asyncio.create_task(self._watch(self.pvcs_rt, self._on_claim), name="scheduler-pvcs"),
            asyncio.create_task(self._watch(self.pvs_rt, self._on_claim), name="scheduler-pvs"),
        ]
        try:
            while True:
                self._wake.clear()
                try:
                    await self.schedule_pending()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - keep scheduling
                    log.exception("scheduling pass failed")
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.retry_interval / 4)
                except TimeoutError:
                    pass
                await asyncio.sleep(0.02)  # coalesce bursts of events into one pass
        finally:
            for t in watchers:
                t.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)


def _spec_key(pod: Obj) -> str:
    return json.dumps(pod.get("spec") or {}, sort_keys=True)


def _node_shape(node: Obj) -> str:
    """What of a node matters to scheduling (heartbeats do not)."""
    return json.dumps(
        [
            node.get("spec") or {},
            node.get("metadata", {}).get("labels") or {},
            (node.get("status") or {}).get("allocatable") or {},
        ],
        sort_keys=True,
    )


def _requested_share(node: Obj, pods: list[Obj]) -> int:
    """Per-mille of the node's cpu+memory already requested (lower is better)."""
    alloc = predicates.allocatable(node)
    used: dict[str, int] = {}
    for p in pods:
        for k, v in predicates.pod_requests(p).items():
            used[k] = used.get(k, 0) + v
    share = 0
    for res in ("cpu", "memory"):
        if alloc.get(res):
            share += used.get(res, 0) * 1000 // alloc[res]
    return share
