"""Endpoints and EndpointSlices from pod readiness (mirrors the endpoints,
endpointslice and endpointslice-mirroring controllers of kube-controller-manager).

Data flow::

    watch services ─┐                      ┌─► Endpoints  <svc>            (selector services)
    watch pods ─────┼─► dirty set ─► sync ─┼─► EndpointSlices <svc>-xxxxx (managed-by endpointslice-controller)
    watch endpoints ┘   (debounced)        └─► mirrored slices             (selectorless services)

The desired objects are computed by pure functions (:func:`desired_subsets`,
:func:`desired_slice_groups`) from the Service and the pods of its namespace,
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
  servicelb does): the service proxy answers on it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

from microkube import errors
from microkube.objects import meta
from microkube.objects.selectors import LabelSelector
from microkube.resources.registry import DeleteOptions, Registry

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
MIRROR_MANAGED_BY = "endpointslicemirroring-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_ENDPOINTS_PER_SLICE = 100
_DEBOUNCE = 0.02

Obj = dict[str, Any]


# --- pure: pods → endpoints -------------------------------------------------


def pod_is_ready(pod: Obj) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def _pod_is_endpoint(pod: Obj, *, include_terminating: bool) -> bool:
    """Mirrors ``endpointutil.ShouldPodBeInEndpoints``."""
    status = pod.get("status") or {}
    if not status.get("podIP"):
        return False
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    return include_terminating or not meta.is_deleting(pod)


def find_port(pod: Obj, svc_port: Obj) -> int | None:
    """The container port a service port targets on ``pod`` (``podutil.FindPort``)."""
    target = svc_port.get("targetPort", svc_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    proto = svc_port.get("protocol", "TCP")
    spec = pod.get("spec") or {}
    for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        for p in c.get("ports") or []:
            if p.get("name") == target and p.get("protocol", "TCP") == proto:
                return int(p["containerPort"])
    return None


def _pod_ports(svc: Obj, pod: Obj) -> tuple[tuple[str, int, str, str], ...]:
    out = []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        port = find_port(pod, sp)
        if port is None:
            continue
        out.append((sp.get("name", ""), port, sp.get("protocol", "TCP"), sp.get("appProtocol", "")))
    return tuple(out)


def _port_dicts(ports: tuple[tuple[str, int, str, str], ...]) -> list[Obj]:
    res = []
    for name, port, proto, app in ports:
        d: Obj = {"name": name, "port": port, "protocol": proto}
        if app:
            d["appProtocol"] = app
        res.append(d)
    return res


def _hostname(svc: Obj, pod: Obj) -> str:
    spec = pod.get("spec") or {}
    if (
        spec.get("hostname")
        and spec.get("subdomain") == svc["metadata"]["name"]
        and pod["metadata"].get("namespace") == svc["metadata"].get("namespace")
    ):
        return str(spec["hostname"])
    return ""


def _target_ref(pod: Obj) -> Obj:
    m = pod["metadata"]
    return {"kind": "Pod", "namespace": m.get("namespace", ""), "name": m["name"], "uid": m["uid"]}


def selected_pods(svc: Obj, pods: list[Obj]) -> list[Obj]:
    sel = (svc.get("spec") or {}).get("selector")
    if not sel:
        return []
    ls = LabelSelector.from_structured({"matchLabels": sel})
    return [p for p in pods if ls.matches(p["metadata"].get("labels") or {})]


def desired_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    """Endpoints subsets for a selector Service (mirrors the endpoints controller)."""
    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[tuple[Any, ...], dict[str, list[Obj]]] = {}
    for pod in selected_pods(svc, pods):
        if not _pod_is_endpoint(pod, include_terminating=publish):
            continue
        ports = _pod_ports(svc, pod)
        if (svc.get("spec") or {}).get("ports") and not ports:
            continue
        addr: Obj = {"ip": pod["status"]["podIP"], "targetRef": _target_ref(pod)}
        if pod.get("spec", {}).get("nodeName"):
            addr["nodeName"] = pod["spec"]["nodeName"]
        if h := _hostname(svc, pod):
            addr["hostname"] = h
        g = groups.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
        ready = publish or (pod_is_ready(pod) and not meta.is_deleting(pod))
        g["addresses" if ready else "notReadyAddresses"].append(addr)
    subsets = []
    for ports, g in sorted(groups.items(), key=lambda kv: kv[0]):
        subset: Obj = {}
        for k in ("addresses", "notReadyAddresses"):
            if g[k]:
                subset[k] = sorted(g[k], key=lambda a: _ip_key(a["ip"]))
        if ports:
            subset["ports"] = _port_dicts(ports)
        subsets.append(subset)
    return subsets


def desired_slice_groups(svc: Obj, pods: list[Obj]) -> list[tuple[list[Obj], list[Obj]]]:
    """(ports, endpoints) of each slice a selector Service needs (mirrors endpointslice)."""
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple[Any, ...], list[Obj]] = {}
    for pod in selected_pods(svc, pods):
        if not _pod_is_endpoint(pod, include_terminating=True):
            continue
        ports = _pod_ports(svc, pod)
        if spec.get("ports") and not ports:
            continue
        deleting = meta.is_deleting(pod)
        serving = pod_is_ready(pod)
        ep: Obj = {
            "addresses": [pod["status"]["podIP"]],
            "conditions": {
                "ready": publish or (serving and not deleting),
                "serving": serving,
                "terminating": deleting,
            },
            "targetRef": _target_ref(pod),
        }
        if pod.get("spec", {}).get("nodeName"):
            ep["nodeName"] = pod["spec"]["nodeName"]
        if h := _hostname(svc, pod):
            ep["hostname"] = h
        groups.setdefault(ports, []).append(ep)
    out: list[tuple[list[Obj], list[Obj]]] = []
    for ports, eps in sorted(groups.items(), key=lambda kv: kv[0]):
        eps.sort(key=lambda e: _ip_key(e["addresses"][0]))
        for i in range(0, len(eps), MAX_ENDPOINTS_PER_SLICE):
            out.append((_port_dicts(ports), eps[i : i + MAX_ENDPOINTS_PER_SLICE]))
    if not out:
        # Upstream keeps one empty placeholder slice per service.
        out.append(([], []))
    return out


def mirrored_slice_groups(ep: Obj) -> list[tuple[list[Obj], list[Obj]]]:
    """Slices mirroring a user-managed Endpoints (endpointslice-mirroring controller)."""
    out = []
    for subset in ep.get("subsets") or []:
        ports = [
            {"name": p.get("name", ""), "port": p["port"], "protocol": p.get("protocol", "TCP")}
            for p in subset.get("ports") or []
        ]
        eps = []
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for a in subset.get(key) or []:
                e: Obj = {
                    "addresses": [a["ip"]],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                }
                for f in ("hostname", "nodeName", "targetRef"):
                    if a.get(f):
                        e[f] = a[f]
                eps.append(e)
        out.append((ports, eps))
    return out


def _ip_key(ip: str) -> tuple[int, Any]:
    try:
        return (0, ipaddress.ip_address(ip))
    except ValueError:
        return (1, ip)


def _labels(svc: Obj, managed_by: str | None) -> dict[str, str]:
    labels = {
        k: v
        for k, v in (svc["metadata"].get("labels") or {}).items()
        if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)
    }
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = svc["metadata"]["name"]
    if managed_by:
        labels[MANAGED_BY_LABEL] = managed_by
    return labels


# --- node addresses ---------------------------------------------------------


def node_address() -> str:
    """The host's primary IPv4 address (source of the default route), or 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def api_endpoint(bind_address: str, port: int) -> tuple[str, int]:
    """Address published in the ``kubernetes`` Endpoints (apiserver's advertise address)."""
    if bind_address in ("", "0.0.0.0", "::") or ipaddress.ip_address(bind_address).is_loopback:
        return node_address(), port
    return bind_address, port


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
            await self._write_slices(svc, mirrored_slice_groups({"subsets": subsets}), MANAGED_BY)
            return
        if not spec.get("selector"):
            ep = self.reg.try_get(self.ep_rt, namespace, name)
            groups = mirrored_slice_groups(ep) if ep else []
            await self._write_slices(svc, groups, MIRROR_MANAGED_BY)
            return
        pods = self.reg.list(self.pod_rt, namespace).items
        await self._write_endpoints(svc, desired_subsets(svc, pods))
        await self._write_slices(svc, desired_slice_groups(svc, pods), MANAGED_BY)

    async def _write_endpoints(self, svc: Obj, subsets: list[Obj]) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        labels = _labels(svc, None)
        labels.pop(SERVICE_NAME_LABEL)
        cur = self.reg.try_get(self.ep_rt, ns, name)
        if cur is None:
            body = {
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
        labels = _labels(svc, managed_by)
        existing = [
            s
            for s in self.reg.list(self.slice_rt, ns).items
            if (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == name
            and (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL)
            in (MANAGED_BY, MIRROR_MANAGED_BY)
        ]
        existing.sort(key=lambda s: s["metadata"]["name"])
        owner = meta.owner_ref(svc, controller=True) if managed_by == MANAGED_BY else None
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
            if labels.get(SERVICE_NAME_LABEL) == name and labels.get(MANAGED_BY_LABEL) in (
                MANAGED_BY,
                MIRROR_MANAGED_BY,
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
        if labels.get(MANAGED_BY_LABEL) in (MANAGED_BY, MIRROR_MANAGED_BY) and labels.get(
            SERVICE_NAME_LABEL
        ):
            if etype == "DELETED":
                self.mark(obj["metadata"].get("namespace", ""), labels[SERVICE_NAME_LABEL])

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
    node_ip = node_address()
    ctl = EndpointsController(
        reg, api_address=api_endpoint(settings.api.bind_address, settings.api.port), node_ip=node_ip
    )
    await ctl.run()
