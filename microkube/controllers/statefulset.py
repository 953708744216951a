"""StatefulSet controller: stable pod identities, ordered start/stop, PVCs that outlive pods.

Mirrors ``pkg/controller/statefulset`` (``stateful_set_control.go`` and
``stateful_set_utils.go``)::

    sts/pod events ─► queue ─► sync
        revisions: current (status.currentRevision) and update (template now)
        ordinals [start, start+replicas): create missing (PVCs first), replace failed
        ordinals outside: delete, highest first
        RollingUpdate: from the highest ordinal down to the partition, one at a time
        status: replicas/ready/available/current/updated, revisions, collisionCount

Identity of ordinal *i*: pod ``<sts>-<i>`` with hostname ``<sts>-<i>`` and
subdomain ``spec.serviceName``, labels ``statefulset.kubernetes.io/pod-name``,
``apps.kubernetes.io/pod-index`` and ``controller-revision-hash`` (the
ControllerRevision's *name*, as upstream), and one PVC per
``volumeClaimTemplate`` named ``<template>-<sts>-<i>``.  PVCs are never deleted
with their pod; ``persistentVolumeClaimRetentionPolicy`` ``whenDeleted:
Delete`` makes the StatefulSet their owner (the garbage collector removes
them with it) and ``whenScaled: Delete`` deletes them on scale-down.

``OrderedReady`` waits for each pod to be Running, Ready and *available*
(Ready for ``minReadySeconds``) before the next and stops at the first
unhealthy one; ``Parallel`` does not wait for creation or deletion.  Rolling
updates wait for availability in both modes; with
``updateStrategy.rollingUpdate.maxUnavailable`` (upstream's
MaxUnavailableStatefulSet) up to that many pods may be down at once, the
outdated ones deleted from the highest ordinal.  While a Ready pod waits out
``minReadySeconds`` the set is synced again when it becomes available.
"""

from __future__ import annotations

import copy
import logging
import re
from datetime import datetime, timedelta
from typing import Any

from microkube import errors
from microkube.client.informer import InformerFactory, split_key
from microkube.client.local import LocalClient
from microkube.controllers import events, history
from microkube.controllers.base import Clock, Controller, parse_time
from microkube.objects import meta

log = logging.getLogger(__name__)

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(sts_name: str, pod: dict[str, Any]) -> int | None:
    m = re.fullmatch(re.escape(sts_name) + r"-(\d+)", pod["metadata"]["name"])
    return int(m.group(1)) if m else None


def claim_name(template: dict[str, Any], sts_name: str, ordinal: int) -> str:
    return f"{template['metadata']['name']}-{sts_name}-{ordinal}"


def running_and_ready(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and history.pod_ready(pod)


def available_in(pod: dict[str, Any], min_ready: int, now: datetime) -> float | None:
    """Seconds until ``pod`` counts as available: 0 when it is, None when it is not Ready.

    Mirrors ``podutil.IsPodAvailable``: Ready, and Ready since at least
    ``minReadySeconds`` (a Ready condition without a transition time never is).
    """
    if not running_and_ready(pod):
        return None
    if min_ready <= 0:
        return 0.0
    cond: dict[str, Any] = next(
        (c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
        {},
    )
    since = parse_time(cond.get("lastTransitionTime"))
    if since is None:
        return float(min_ready)
    return max((since + timedelta(seconds=min_ready) - now).total_seconds(), 0.0)


def max_unavailable(value: Any, replicas: int) -> int:
    """Mirrors ``getStatefulSetMaxUnavailable``: int or percent (rounded down), at least 1."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            n = int(value[:-1]) * replicas // 100
        except ValueError:
            n = 1
    else:
        try:
            n = int(value) if value is not None else 1
        except (TypeError, ValueError):
            n = 1
    return max(n, 1)


def revision_template(revision: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    return template


def identity_pod(
    sts: dict[str, Any], template: dict[str, Any], ordinal: int, revision: str
) -> dict[str, Any]:
    """The pod of ``ordinal`` (mirrors ``newVersionedStatefulSetPod``)."""
    name = sts["metadata"]["name"]
    pod_name = f"{name}-{ordinal}"
    pod = history.pod_from_template(sts, template, name=pod_name)
    pod["metadata"]["labels"].update(
        {
            POD_NAME_LABEL: pod_name,
            POD_INDEX_LABEL: str(ordinal),
            history.REVISION_HASH_LABEL: revision,
        }
    )
    spec = pod["spec"]
    spec["hostname"] = pod_name
    if sts["spec"].get("serviceName"):
        spec["subdomain"] = sts["spec"]["serviceName"]
    claims = {
        t["metadata"]["name"]: claim_name(t, name, ordinal)
        for t in sts["spec"].get("volumeClaimTemplates") or []
    }
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
    volumes += [{"name": v, "persistentVolumeClaim": {"claimName": c}} for v, c in claims.items()]
    if volumes:
        spec["volumes"] = volumes
    return pod


class StatefulSetController(Controller):
    name = "statefulset-controller"

    def __init__(
        self, client: LocalClient, informers: InformerFactory, *, clock: Clock | None = None
    ) -> None:
        super().__init__(client, informers, clock=clock)
        self.sts_rt = client.resource("apps", "statefulsets")
        self.pod_rt = client.resource("", "pods")
        self.pvc_rt = client.resource("", "persistentvolumeclaims")
        self.recorder = events.EventRecorder(client, self.name, clock=clock)
        self.enqueue_changes(informers.informer(self.sts_rt))
        self.enqueue_owner_changes(informers.informer(self.pod_rt), "StatefulSet")

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        await self.sync(ns, name)

    async def sync(self, namespace: str, name: str) -> None:
        sts = self.client.try_get(self.sts_rt, namespace, name)
        if sts is None or meta.is_deleting(sts):
            return
        status = dict(sts.get("status") or {})
        revisions = history.owned_revisions(self.client, sts)
        update_rev, collisions = await history.ensure_revision(
            self.client, sts, revisions, collision_count=int(status.get("collisionCount") or 0)
        )
        revisions = history.owned_revisions(self.client, sts)
        by_name = {r["metadata"]["name"]: r for r in revisions}
        current_rev = by_name.get(status.get("currentRevision") or "", update_rev)
        pods = {
            o: p
            for p in history.owned(self.client.list(self.pod_rt, namespace).items, sts)
            if (o := ordinal_of(name, p)) is not None
        }
        await _Pass(self, sts, pods, current_rev, update_rev).run()
        pods = {
            o: p
            for p in history.owned(self.client.list(self.pod_rt, namespace).items, sts)
            if (o := ordinal_of(name, p)) is not None
        }
        await self._status(sts, pods, current_rev, update_rev, collisions)
        self._requeue_when_available(sts, pods)
        live = {current_rev["metadata"]["name"], update_rev["metadata"]["name"]}
        live |= {
            p["metadata"]["labels"].get(history.REVISION_HASH_LABEL, "") for p in pods.values()
        }
        await history.truncate_history(self.client, sts, revisions, live)

    def _requeue_when_available(self, sts: dict[str, Any], pods: dict[int, dict[str, Any]]) -> None:
        """Ready pods waiting out minReadySeconds make no event when they become available."""
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        if min_ready <= 0:
            return
        now = self.now()
        waits = [w for p in pods.values() if (w := available_in(p, min_ready, now))]
        if waits:
            m = sts["metadata"]
            self.queue.add_after(f"{m['namespace']}/{m['name']}", min(waits) + 0.05)

    async def _status(
        self,
        sts: dict[str, Any],
        pods: dict[int, dict[str, Any]],
        current: dict[str, Any],
        update: dict[str, Any],
        collisions: int,
    ) -> None:
        cur, upd = current["metadata"]["name"], update["metadata"]["name"]
        st: dict[str, Any] = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": 0,
            "readyReplicas": 0,
            "availableReplicas": 0,
            "currentReplicas": 0,
            "updatedReplicas": 0,
            "currentRevision": cur,
            "updateRevision": upd,
            "collisionCount": collisions,
        }
        min_ready, now = int(sts["spec"].get("minReadySeconds") or 0), self.now()
        for p in pods.values():
            st["replicas"] += 1
            if running_and_ready(p):
                st["readyReplicas"] += 1
                if available_in(p, min_ready, now) == 0:
                    st["availableReplicas"] += 1
            if not meta.is_deleting(p):
                rev = p["metadata"]["labels"].get(history.REVISION_HASH_LABEL)
                st["currentReplicas"] += rev == cur
                st["updatedReplicas"] += rev == upd
        want = int(sts["spec"].get("replicas", 1))
        if (
            st["updatedReplicas"] == want
            and st["readyReplicas"] == want
            and st["replicas"] == want
            and (sts["spec"].get("updateStrategy") or {}).get("type") != "OnDelete"
        ):
            st["currentRevision"] = upd
            st["currentReplicas"] = st["updatedReplicas"]
        old_conditions = (sts.get("status") or {}).get("conditions")
        if old_conditions:
            st["conditions"] = old_conditions
        st = {
            k: v
            for k, v in st.items()
            if v != 0 or k in ("replicas", "availableReplicas", "collisionCount")
        }
        if st == sts.get("status"):
            return

        def mutate(obj: dict[str, Any]) -> dict[str, Any] | None:
            if obj["metadata"]["uid"] != sts["metadata"]["uid"]:
                return None
            obj["status"] = st
            return obj

        await self.client.mutate(
            self.sts_rt,
            sts["metadata"]["namespace"],
            sts["metadata"]["name"],
            mutate,
            subresource="status",
        )


class _Pass:
    """One ``updateStatefulSet`` pass: create/replace, scale down, roll."""

    def __init__(
        self,
        ctl: StatefulSetController,
        sts: dict[str, Any],
        pods: dict[int, dict[str, Any]],
        current: dict[str, Any],
        update: dict[str, Any],
    ) -> None:
        self.ctl, self.sts, self.pods = ctl, sts, pods
        self.current, self.update = current, update
        spec = sts["spec"]
        self.monotonic = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        self.start = int((spec.get("ordinals") or {}).get("start") or 0)
        self.replicas = int(spec.get("replicas", 1))
        us = spec.get("updateStrategy") or {}
        self.rolling = us.get("type", "RollingUpdate") == "RollingUpdate"
        ru = us.get("rollingUpdate") or {}
        self.partition = int(ru.get("partition") or 0)
        self.max_unavailable = (
            max_unavailable(ru["maxUnavailable"], self.replicas)
            if ru.get("maxUnavailable") is not None
            else None
        )
        self.min_ready = int(spec.get("minReadySeconds") or 0)
        self.now = ctl.now()

    def available(self, pod: dict[str, Any] | None) -> bool:
        return pod is not None and available_in(pod, self.min_ready, self.now) == 0

    def unavailable(self, pod: dict[str, Any] | None) -> bool:
        """Mirrors ``isUnavailable``: missing, not healthy, or not yet available."""
        return pod is None or meta.is_deleting(pod) or not self.available(pod)

    async def run(self) -> None:
        if not await self._replicas():
            return
        if not await self._condemned():
            return
        if self.rolling:
            await self._roll()

    def _revision_for(self, ordinal: int) -> dict[str, Any]:
        if self.rolling and ordinal - self.start < self.partition:
            return self.current
        return self.update

    async def _replicas(self) -> bool:
        """Create/replace pods in range; False when an ordered wait stops the pass."""
        name = self.sts["metadata"]["name"]
        for ordinal in range(self.start, self.start + self.replicas):
            pod = self.pods.get(ordinal)
            phase = ((pod or {}).get("status") or {}).get("phase")
            if pod is not None and phase in ("Failed", "Succeeded") and not meta.is_deleting(pod):
                await self._delete_pod(pod, "recreating")
                if self.monotonic:
                    return False
                continue
            if pod is None:
                await self._claims(ordinal)
                rev = self._revision_for(ordinal)
                body = identity_pod(
                    self.sts, revision_template(rev), ordinal, rev["metadata"]["name"]
                )
                try:
                    await self.ctl.client.create(
                        self.ctl.pod_rt, self.sts["metadata"]["namespace"], body
                    )
                except errors.AlreadyExists:
                    pass
                else:
                    await self._event(
                        "Normal",
                        "SuccessfulCreate",
                        f"create Pod {name}-{ordinal} in StatefulSet {name} successful",
                    )
                if self.monotonic:
                    return False
                continue
            if self.monotonic and (meta.is_deleting(pod) or not self.available(pod)):
                return False
        return True

    async def _claims(self, ordinal: int) -> None:
        sts = self.sts
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        selector_labels = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
        for t in sts["spec"].get("volumeClaimTemplates") or []:
            cname = claim_name(t, name, ordinal)
            if self.ctl.client.try_get(self.ctl.pvc_rt, ns, cname) is not None:
                continue
            m: dict[str, Any] = {
                "name": cname,
                "namespace": ns,
                "labels": {**((t.get("metadata") or {}).get("labels") or {}), **selector_labels},
            }
            if (t.get("metadata") or {}).get("annotations"):
                m["annotations"] = dict(t["metadata"]["annotations"])
            if policy.get("whenDeleted") == "Delete":
                m["ownerReferences"] = [meta.owner_ref(sts, controller=False)]
            body = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": m,
                "spec": copy.deepcopy(t.get("spec") or {}),
            }
            try:
                await self.ctl.client.create(self.ctl.pvc_rt, ns, body)
            except errors.AlreadyExists:
                continue
            await self._event(
                "Normal",
                "SuccessfulCreate",
                f"create Claim {cname} Pod {name}-{ordinal} in StatefulSet {name} success",
            )

    async def _condemned(self) -> bool:
        end = self.start + self.replicas
        condemned = sorted((o for o in self.pods if o < self.start or o >= end), reverse=True)
        if self.monotonic and any(meta.is_deleting(self.pods[o]) for o in condemned):
            return False
        # processCondemned: in order, a condemned pod goes only once it is available,
        # unless it is the first unavailable pod (else a broken pod would block scale-down).
        first_unavailable = next(
            (o for o in range(self.start, end) if self.unavailable(self.pods.get(o))),
            next((o for o in reversed(condemned) if self.unavailable(self.pods[o])), None),
        )
        for o in condemned:
            pod = self.pods[o]
            if meta.is_deleting(pod):
                continue
            if self.monotonic and not self.available(pod) and o != first_unavailable:
                return False
            await self._delete_pod(pod, "scale down")
            await self._scaled_claims(o)
            if self.monotonic:
                return False
        return True

    async def _scaled_claims(self, ordinal: int) -> None:
        policy = self.sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        if policy.get("whenScaled") != "Delete":
            return
        name, ns = self.sts["metadata"]["name"], self.sts["metadata"]["namespace"]
        for t in self.sts["spec"].get("volumeClaimTemplates") or []:
            await history.delete_quietly(
                self.ctl.client, self.ctl.pvc_rt, ns, claim_name(t, name, ordinal)
            )

    async def _roll(self) -> None:
        """Delete one outdated pod, highest ordinal first, once all are available."""
        upd = self.update["metadata"]["name"]
        if self.max_unavailable is not None:
            await self._roll_unavailable(upd, self.max_unavailable)
            return
        for o in sorted(self.pods, reverse=True):
            if o - self.start < self.partition or o >= self.start + self.replicas:
                continue
            pod = self.pods[o]
            if pod["metadata"]["labels"].get(history.REVISION_HASH_LABEL) != upd:
                if not meta.is_deleting(pod):
                    await self._delete_pod(pod, "update")
                return
            if self.unavailable(pod):
                return

    async def _roll_unavailable(self, upd: str, budget: int) -> None:
        """Mirrors ``updateStatefulSetAfterInvariantEstablished``: up to ``budget`` pods down."""
        ordinals = range(self.start, self.start + self.replicas)
        down = sum(1 for o in ordinals if self.unavailable(self.pods.get(o)))
        room = budget - down
        for o in reversed(ordinals):
            if room <= 0 or o - self.start < self.partition:
                return
            pod = self.pods.get(o)
            if pod is None or meta.is_deleting(pod):
                continue
            if pod["metadata"]["labels"].get(history.REVISION_HASH_LABEL) != upd:
                await self._delete_pod(pod, "update")
                room -= 1

    async def _delete_pod(self, pod: dict[str, Any], why: str) -> None:
        name = self.sts["metadata"]["name"]
        pname = pod["metadata"]["name"]
        if await history.delete_quietly(
            self.ctl.client, self.ctl.pod_rt, pod["metadata"]["namespace"], pname
        ):
            await self._event(
                "Normal",
                "SuccessfulDelete",
                f"delete Pod {pname} in StatefulSet {name} successful",
            )

    async def _event(self, etype: str, reason: str, msg: str) -> None:
        await self.ctl.recorder.event(self.sts, etype, reason, msg)
