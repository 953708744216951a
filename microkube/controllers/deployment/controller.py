"""The Deployment controller's loop: claim ReplicaSets, then pick a path (``deployment_controller.go``).

::

    deployment/rs/pod events ─► queue(deployment key) ─► reconcile
        claim ReplicaSets (adopt/release by selector, controller ownerRef)
        deleting?            ─► status only
        paused condition     ─► Progressing Unknown DeploymentPaused/Resumed
        paused or scaling?   ─► sync.sync (proportional scaling, no rollout)
        Recreate             ─► recreate.rollout
        RollingUpdate        ─► rolling.rollout
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from microkube import errors
from microkube.client.informer import InformerFactory, split_key
from microkube.client.local import LocalClient
from microkube.controllers import events
from microkube.controllers.base import Clock, Controller, fmt_time
from microkube.controllers.deployment import progress, recreate, rolling, sync, util
from microkube.objects import meta
from microkube.objects.selectors import LabelSelector

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class DeploymentController(Controller):
    name = "deployment-controller"
    workers = 2

    def __init__(
        self, client: LocalClient, informers: InformerFactory, *, clock: Clock | None = None
    ) -> None:
        super().__init__(client, informers, clock=clock)
        self.d_rt = client.resource("apps", "deployments")
        self.rs_rt = client.resource("apps", "replicasets")
        self.pod_rt = client.resource("", "pods")
        self.d_informer = informers.informer(self.d_rt)
        self.rs_informer = informers.informer(self.rs_rt)
        self.pod_informer = informers.informer(self.pod_rt)
        self.recorder = events.EventRecorder(client, self.name, clock=clock)
        self.d_informer.add_handler(
            on_add=self.enqueue,
            on_update=lambda old, new: self.enqueue(new),
            on_delete=self.enqueue,
        )
        self.rs_informer.add_handler(
            on_add=self._rs_changed,
            on_update=self._rs_updated,
            on_delete=self._rs_changed,
        )
        self.pod_informer.add_handler(on_delete=self._pod_deleted)

    # --- handlers ----------------------------------------------------------------------

    def _rs_changed(self, rs: Obj) -> None:
        owner = self.owner_key(rs, "Deployment")
        if owner is not None:
            self.queue.add(owner)
            return
        labels = rs["metadata"].get("labels") or {}
        for d in self.d_informer.list(rs["metadata"].get("namespace", "")):
            sel = d.get("spec", {}).get("selector")
            if sel and LabelSelector.from_structured(sel).matches(labels):
                self.enqueue(d)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        old_owner = self.owner_key(old, "Deployment")
        if old_owner and old_owner != self.owner_key(new, "Deployment"):
            self.queue.add(old_owner)
        self._rs_changed(new)

    def _pod_deleted(self, pod: Obj) -> None:
        rs_key = self.owner_key(pod, "ReplicaSet")
        if rs_key is None:
            return
        rs = self.rs_informer.get_key(rs_key)
        if rs is not None:
            owner = self.owner_key(rs, "Deployment")
            if owner is not None:
                self.queue.add(owner)

    # --- helpers used by the strategy modules -----------------------------------------------

    def stamp(self) -> str:
        return fmt_time(self.now())

    def owner_ref(self, d: Obj) -> Obj:
        return meta.owner_ref({**d, "apiVersion": "apps/v1", "kind": "Deployment"})

    def pods_for(self, rs_uids: set[str]) -> list[Obj]:
        out = []
        for pod in self.pod_informer.list():
            ref = meta.controller_ref(pod)
            if ref is not None and ref.get("uid") in rs_uids:
                out.append(pod)
        return out

    async def write_status(self, d: Obj) -> None:
        """Write status (and the revision annotation) via deployments/status; refresh ``d``."""
        updated = await self.client.update_status(self.d_rt, d)
        d.clear()
        d.update(updated)

    # --- reconcile -----------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        cached = self.d_informer.get(ns, name)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        d.setdefault("apiVersion", "apps/v1")
        d.setdefault("kind", "Deployment")
        d["metadata"].setdefault("annotations", {})
        selector = LabelSelector.from_structured(d["spec"].get("selector") or {})
        if selector.empty:
            await self.recorder.event(
                d,
                events.WARNING,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            status = d.setdefault("status", {})
            if int(status.get("observedGeneration") or 0) < int(d["metadata"].get("generation", 1)):
                status["observedGeneration"] = d["metadata"].get("generation", 1)
                await self.write_status(d)
            return
        rs_list = await self.claim_replicasets(d, selector)
        if meta.is_deleting(d):
            new, old = await sync.get_all_rs_and_sync_revision(self, d, rs_list, False)
            status = sync.calculate_status(self, [*old, new] if new else old, new, d)
            if status != d.get("status"):
                d["status"] = status
                await self.write_status(d)
            return
        if progress.check_paused(self, d):
            await self.write_status(d)
        if d["spec"].get("paused"):
            await sync.sync(self, d, rs_list)
            return
        if self._is_scaling_event(d, rs_list):
            await sync.sync(self, d, rs_list)
            return
        strategy = (d["spec"].get("strategy") or {}).get("type", "RollingUpdate")
        if strategy == "Recreate":
            await recreate.rollout(self, d, rs_list)
        else:
            await rolling.rollout(self, d, rs_list)

    def _is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        for rs in util.active(rs_list):
            desired = (rs["metadata"].get("annotations") or {}).get(util.DESIRED_REPLICAS)
            if desired is not None and desired != str(util.replicas(d)):
                return True
        return False

    async def claim_replicasets(self, d: Obj, selector: LabelSelector) -> list[Obj]:
        uid = d["metadata"]["uid"]
        out = []
        for rs in self.rs_informer.list(d["metadata"]["namespace"]):
            ref = meta.controller_ref(rs)
            matches = selector.matches(rs["metadata"].get("labels") or {})
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if matches:
                    out.append(copy.deepcopy(rs))
                elif not meta.is_deleting(d):
                    await self._set_owner(rs, None, uid)
                continue
            if matches and not meta.is_deleting(d) and not meta.is_deleting(rs):
                adopted = await self._set_owner(rs, self.owner_ref(d), uid)
                if adopted is not None:
                    out.append(adopted)
        return out

    async def _set_owner(self, rs: Obj, ref: Obj | None, uid: str) -> Obj | None:
        def fn(o: Obj) -> Obj | None:
            refs = [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if ref is not None:
                if meta.controller_ref(o) is not None:
                    return None
                refs.append(ref)
            o["metadata"]["ownerReferences"] = refs
            if not refs:
                o["metadata"].pop("ownerReferences")
            return o

        try:
            return await self.client.mutate(
                self.rs_rt, rs["metadata"]["namespace"], rs["metadata"]["name"], fn
            )
        except errors.NotFound:
            return None
