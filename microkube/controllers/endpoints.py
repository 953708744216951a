"""Endpoints and EndpointSlices from pod readiness (mirrors the endpoints,
endpointslice and endpointslice-mirroring controllers of kube-controller-manager).

Data flow::

    watch services ─┐                      ┌─► Endpoints  <svc>            (selector services)
    watch pods ─────┼─► dirty set ─► sync ─┼─► EndpointSlices <svc>-xxxxx (managed-by endpointslice-controller)
    watch endpoints ┘   (debounced)        └─► mirrored slices             (selectorless services)

The desired objects are computed by the pure functions of
:mod:`microkube.controllers.endpointset` from the Service and the pods of its namespace,
then written only when they differ, so a resync is cheap and idempotent
(level-triggered: any event just marks the service dirty).

Upstream rules kept here:

* a pod is an endpoint when it has a podIP and is not terminal; a deleting pod
  is left out of Endpoints (unless ``publishNotReadyAddresses``) but kept in
  slices with ``terminating: true``;
* ready = PodReady condition (and not deleting); ``publishNotReadyAddresses``
  makes every endpoint ready;
* a named targetPort is resolved per pod from its container ports, so pods
  with different port numbers land in different subsets / slices;
* ``hostname`` is published when the pod's ``spec.subdomain`` is the service;
* the ``kubernetes`` Service in ``default`` points at the API server (its
  endpoints are written by the API server's reconciler upstream);
* a LoadBalancer Service gets the node address as its ingress IP (as k3s'
  servicelb does): the service proxy answers on it;
* Endpoints of a selectorless Service belong to the user: they are mirrored
  into slices and deleted only when the Service is deleted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from microkube import errors
from microkube.controllers import endpointset
from microkube.objects import meta
from microkube.objects.selectors import LabelSelector
from microkube.resources.registry import DeleteOptions, Registry

log = logging.getLogger(__name__)

_DEBOUNCE = 0.005

Obj = dict[str, Any]


# --- sync -------------------------------------------------------------------


class EndpointsController:
    """Keeps Endpoints and EndpointSlices in step with Services and pods."""

    def __init__(self, reg: Registry, *, api_address: tuple[str, int], node_ip: str) -> None:
        self.reg = reg
        self.api_address = api_address
        self.node_ip = node_ip
        cat = reg.catalog
        self.svc_rt = _must(cat.get("", "v1", "services"))
        self.pod_rt = _must(cat.get("", "v1", "pods"))
        self.ep_rt = _must(cat.get("", "v1", "endpoints"))
        self.slice_rt = _must(cat.get("discovery.k8s.io", "v1", "endpointslices"))
        self._dirty: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._pod_labels: dict[tuple[str, str], dict[str, str]] = {}
        self._gone: set[tuple[str, str]] = set()

    async def sync(self, namespace: str, name: str) -> None:
        """Reconcile the endpoints of Service ``namespace/name`` (idempotent)."""
        svc = self.reg.try_get(self.svc_rt, namespace, name)
        if svc is None or meta.is_deleting(svc):
            # Endpoints of a selectorless Service are the user's until the Service goes.
            gone = (namespace, name) in self._gone
            self._gone.discard((namespace, name))
            await self._delete_all(namespace, name, endpoints=svc is None and gone)
            return
        spec = svc.get("spec") or {}
        if spec.get("type") == "LoadBalancer":
            await self._set_ingress(svc)
        if spec.get("type") == "ExternalName":
            await self._delete_all(namespace, name, endpoints=False)
            return
        if namespace == "default" and name == "kubernetes":
            ip, port = self.api_address
            subsets = [
                {
                    "addresses": [{"ip": ip}],
                    "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
                }
            ]
            await self._write_endpoints(svc, subsets)
            await self._write_slices(
                svc, endpointset.mirrored_slice_groups({"subsets": subsets}), endpointset.MANAGED_BY
            )
            return
        if not spec.get("selector"):
            ep = self.reg.try_get(self.ep_rt, namespace, name)
            groups = endpointset.mirrored_slice_groups(ep) if ep else []
            await self._write_slices(svc, groups, endpointset.MIRROR_MANAGED_BY)
            return
        pods = self.reg.list(self.pod_rt, namespace).items
        # Slices first: the service proxy and the DNS read those, Endpoints are for users.
        await self._write_slices(
            svc, endpointset.desired_slice_groups(svc, pods), endpointset.MANAGED_BY
        )
        await self._write_endpoints(svc, endpointset.desired_subsets(svc, pods))

    async def _write_endpoints(self, svc: Obj, subsets: list[Obj]) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        labels = endpointset.labels_for(svc, None)
        labels.pop(endpointset.SERVICE_NAME_LABEL)
        cur = self.reg.try_get(self.ep_rt, ns, name)
        if cur is None:
            body: Obj = {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "labels": labels},
            }
            if subsets:
                body["subsets"] = subsets
            try:
                await self.reg.create(self.ep_rt, ns, body)
            except errors.AlreadyExists:
                self.mark(ns, name)
            return
        if (cur.get("subsets") or []) == subsets and (
            cur["metadata"].get("labels") or {}
        ) == labels:
            return

        def mutate(obj: Obj) -> Obj:
            obj["metadata"]["labels"] = labels
            if subsets:
                obj["subsets"] = subsets
            else:
                obj.pop("subsets", None)
            return obj

        await self.reg.guaranteed_update(self.ep_rt, ns, name, mutate)

    async def _write_slices(
        self, svc: Obj, groups: list[tuple[list[Obj], list[Obj]]], managed_by: str
    ) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        labels = endpointset.labels_for(svc, managed_by)
        existing = [
            s
            for s in self.reg.list(self.slice_rt, ns).items
            if (s["metadata"].get("labels") or {}).get(endpointset.SERVICE_NAME_LABEL) == name
            and (s["metadata"].get("labels") or {}).get(endpointset.MANAGED_BY_LABEL)
            in (endpointset.MANAGED_BY, endpointset.MIRROR_MANAGED_BY)
        ]
        existing.sort(key=lambda s: s["metadata"]["name"])
        owner = (
            meta.owner_ref(svc, controller=True) if managed_by == endpointset.MANAGED_BY else None
        )
        todo = list(groups)
        # Reuse slices already holding the same ports, then any other slice.
        plans: list[tuple[Obj | None, list[Obj], list[Obj]]] = []
        for ports, eps in list(todo):
            match = next((s for s in existing if (s.get("ports") or []) == ports), None)
            if match is not None:
                existing.remove(match)
                todo.remove((ports, eps))
                plans.append((match, ports, eps))
        for ports, eps in todo:
            plans.append((existing.pop(0) if existing else None, ports, eps))
        for cur, ports, eps in plans:
            body: Obj = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"labels": labels},
                "addressType": "IPv4",
                "endpoints": eps,
                "ports": ports,
            }
            if owner is not None:
                body["metadata"]["ownerReferences"] = [owner]
            if cur is None:
                if ns == "default" and name == "kubernetes":
                    body["metadata"]["name"] = "kubernetes"
                else:
                    body["metadata"]["generateName"] = f"{name}-"
                try:
                    await self.reg.create(self.slice_rt, ns, body)
                except errors.AlreadyExists:
                    self.mark(ns, name)
                continue
            if (
                cur.get("endpoints") == eps
                and (cur.get("ports") or []) == ports
                and cur["metadata"].get("labels") == labels
                and cur["metadata"].get("ownerReferences")
                == body["metadata"].get("ownerReferences")
            ):
                continue

            def mutate(obj: Obj, body: Obj = body) -> Obj:
                obj["metadata"]["labels"] = body["metadata"]["labels"]
                if "ownerReferences" in body["metadata"]:
                    obj["metadata"]["ownerReferences"] = body["metadata"]["ownerReferences"]
                else:
                    obj["metadata"].pop("ownerReferences", None)
                obj["endpoints"], obj["ports"] = body["endpoints"], body["ports"]
                return obj

            try:
                await self.reg.guaranteed_update(self.slice_rt, ns, cur["metadata"]["name"], mutate)
            except errors.NotFound:
                self.mark(ns, name)
        for s in existing:
            await self._delete(self.slice_rt, ns, s["metadata"]["name"])

    async def _delete_all(self, namespace: str, name: str, *, endpoints: bool) -> None:
        if endpoints:
            await self._delete(self.ep_rt, namespace, name)
        for s in self.reg.list(self.slice_rt, namespace).items:
            labels = s["metadata"].get("labels") or {}
            if labels.get(endpointset.SERVICE_NAME_LABEL) == name and labels.get(
                endpointset.MANAGED_BY_LABEL
            ) in (
                endpointset.MANAGED_BY,
                endpointset.MIRROR_MANAGED_BY,
            ):
                await self._delete(self.slice_rt, namespace, s["metadata"]["name"])

    async def _delete(self, rt: Any, namespace: str, name: str) -> None:
        try:
            await self.reg.delete(rt, namespace, name, DeleteOptions())
        except errors.NotFound:
            pass

    async def _set_ingress(self, svc: Obj) -> None:
        want = [{"ip": self.node_ip, "ipMode": "VIP"}]
        if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") == want:
            return

        def mutate(obj: Obj) -> Obj:
            obj.setdefault("status", {})["loadBalancer"] = {"ingress": want}
            return obj

        m = svc["metadata"]
        await self.reg.guaranteed_update(
            self.svc_rt, m["namespace"], m["name"], mutate, subresource="status"
        )

    # --- event plumbing -----------------------------------------------------

    def mark(self, namespace: str, name: str) -> None:
        self._dirty.add((namespace, name))
        self._wake.set()

    def _on_pod(self, etype: str, pod: Obj) -> None:
        m = pod["metadata"]
        key = (m.get("namespace", ""), m["name"])
        old = self._pod_labels.get(key)
        new = m.get("labels") or {}
        if etype == "DELETED":
            self._pod_labels.pop(key, None)
        else:
            self._pod_labels[key] = new
        for svc in self.reg.list(self.svc_rt, key[0]).items:
            sel = (svc.get("spec") or {}).get("selector")
            if not sel:
                continue
            ls = LabelSelector.from_structured({"matchLabels": sel})
            if ls.matches(new) or (old is not None and ls.matches(old)):
                self.mark(key[0], svc["metadata"]["name"])

    async def _watch(self, rt: Any, handle: Any) -> None:
        while True:
            try:
                async for etype, obj in self.reg.watch(rt, None, resource_version=""):
                    if etype in ("ADDED", "MODIFIED", "DELETED"):
                        handle(etype, obj)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - restart the watch
                log.exception("endpoints controller: %s watch failed; restarting", rt.plural)
                await asyncio.sleep(1)

    def _on_service(self, etype: str, obj: Obj) -> None:
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if etype == "DELETED":
            self._gone.add(key)
        else:
            self._gone.discard(key)
        self.mark(*key)

    def _on_named(self, etype: str, obj: Obj) -> None:
        self.mark(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])

    def _on_slice(self, etype: str, obj: Obj) -> None:
        labels = obj["metadata"].get("labels") or {}
        if labels.get(endpointset.MANAGED_BY_LABEL) in (
            endpointset.MANAGED_BY,
            endpointset.MIRROR_MANAGED_BY,
        ) and labels.get(endpointset.SERVICE_NAME_LABEL):
            if etype == "DELETED":
                self.mark(
                    obj["metadata"].get("namespace", ""), labels[endpointset.SERVICE_NAME_LABEL]
                )

    async def run(self) -> None:
        """Watch services, pods, endpoints and slices; sync dirty services."""
        watches = [
            asyncio.create_task(self._watch(self.svc_rt, self._on_service)),
            asyncio.create_task(self._watch(self.pod_rt, self._on_pod)),
            asyncio.create_task(self._watch(self.ep_rt, self._on_named)),
            asyncio.create_task(self._watch(self.slice_rt, self._on_slice)),
        ]
        try:
            while True:
                await self._wake.wait()
                await asyncio.sleep(_DEBOUNCE)
                self._wake.clear()
                dirty, self._dirty = self._dirty, set()
                for ns, name in sorted(dirty):
                    try:
                        await self.sync(ns, name)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - retry later
                        log.warning("endpoints %s/%s: %s; retrying", ns, name, exc)
                        asyncio.get_running_loop().call_later(1.0, self.mark, ns, name)
        finally:
            for t in watches:
                t.cancel()
            await asyncio.gather(*watches, return_exceptions=True)


def _must(rt: Any) -> Any:
    assert rt is not None
    return rt


async def run(reg: Registry, settings: Any) -> None:
    """Entry point for the controller manager."""
    node_ip = endpointset.node_address()
    ctl = EndpointsController(
        reg,
        api_address=endpointset.api_endpoint(settings.api.bind_address, settings.api.port),
        node_ip=node_ip,
    )
    await ctl.run()
