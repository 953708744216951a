"""Desired Endpoints subsets and EndpointSlice contents of a Service (pure).

The rules of kube-controller-manager's endpoints, endpointslice and
endpointslice-mirroring controllers, as functions from a Service and the pods
of its namespace to plain dicts, so the controller (:mod:`.endpoints`) only
compares and writes.  See that module's docstring for the upstream rules kept.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from microkube.objects import meta
from microkube.objects.selectors import LabelSelector

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
MIRROR_MANAGED_BY = "endpointslicemirroring-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_ENDPOINTS_PER_SLICE = 100

Obj = dict[str, Any]


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


def labels_for(svc: Obj, managed_by: str | None) -> dict[str, str]:
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
