"""core/v1 strategies: Pod, Service, Namespace, Secret, ConfigMap, PV, PVC, Node, Event.

Defaults mirror ``pkg/apis/core/v1/defaults.go``; pod admission defaults
(service account, default tolerations, priority) mirror the admission plugins
the apiserver enables by default.  ClusterIP and NodePort allocation lives in
:mod:`microkube.resources.allocators`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from microkube import errors
from microkube.objects import meta
from microkube.resources import podspec, saadmission
from microkube.resources.strategy import Strategy, register

_DEFAULT_TOLERATIONS = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]


@register("", "Pod")
class PodStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        podspec.default_pod_spec(spec)

    def prepare_for_create(self, obj: dict[str, Any], reg: Any) -> None:
        obj.pop("status", None)
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        saadmission.admit(obj, reg)
        # DefaultTolerationSeconds admission.
        tolerations = spec.setdefault("tolerations", [])
        for t in _DEFAULT_TOLERATIONS:
            if not any(
                x.get("key") == t["key"] and x.get("effect", t["effect"]) == t["effect"]
                for x in tolerations
            ):
                tolerations.append(dict(t))
        # Priority admission.
        spec.setdefault("priority", 0)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")

    @property
    def tracks_generation(self) -> bool:
        return False

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        return podspec.validate_pod_spec(obj.get("spec"), "spec")

    def validate_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Any
    ) -> list[errors.Cause]:
        causes = self.validate(new, reg)
        ns, os_ = new.get("spec") or {}, old.get("spec") or {}

        # Pod updates may only change images, activeDeadlineSeconds, tolerations (additions)
        # and schedulingGates (mirrors ValidatePodUpdate).
        def scrub(spec: dict[str, Any]) -> dict[str, Any]:
            s = dict(spec)
            for key in ("containers", "initContainers"):
                s[key] = [{k: v for k, v in c.items() if k != "image"} for c in spec.get(key) or []]
            for f in (
                "activeDeadlineSeconds",
                "tolerations",
                "schedulingGates",
                "terminationGracePeriodSeconds",
            ):
                s.pop(f, None)
            if not os_.get("nodeName"):
                s.pop("nodeName", None)
            return s

        if scrub(ns) != scrub(os_):
            causes.append(
                errors.forbidden_field(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                    "(allow it to be set to 1 if it was previously negative)",
                )
            )
        return causes


def qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed / Burstable / BestEffort, as ``qos.GetPodQOS``."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or req.get(r, lim.get(r)) != lim.get(r):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


@register("", "Namespace")
class NamespaceStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        m = meta.meta(obj)
        if m.get("name"):
            m.setdefault("labels", {})["kubernetes.io/metadata.name"] = m["name"]

    def prepare_for_create(self, obj: dict[str, Any], reg: Any) -> None:
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any], reg: Any) -> None:
        new["spec"] = old.get("spec", {})
        new["status"] = old.get("status", {})

    @property
    def tracks_generation(self) -> bool:
        return False

    def name_errors(self, name: str) -> list[str]:
        return meta.dns1123_label_errors(name)


@register("", "Service")
class ServiceStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("type", "ClusterIP")
        if spec["type"] == "ExternalName":
            return
        spec.setdefault("sessionAffinity", "None")
        if spec["sessionAffinity"] == "ClientIP":
            spec.setdefault("sessionAffinityConfig", {"clientIP": {"timeoutSeconds": 10800}})
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if "targetPort" not in p and "port" in p:
                    p["targetPort"] = p["port"]
        if spec["type"] in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        if spec["type"] == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        spec.setdefault("internalTrafficPolicy", "Cluster")

    @property
    def tracks_generation(self) -> bool:
        return False

    def name_errors(self, name: str) -> list[str]:
        return meta.dns1035_label_errors(name)

    def prepare_for_create(self, obj: dict[str, Any], reg: Any) -> None:
        obj["status"] = {"loadBalancer": {}}
        spec = obj.get("spec") or {}
        alloc = reg.services.get("service-allocator")
        if alloc is not None:
            alloc.allocate(obj)
        elif spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
            spec["clusterIP"] = (
                "None" if spec.get("clusterIP") == "None" else spec.get("clusterIP", "")
            )
        if spec.get("type") != "ExternalName" and spec.get("clusterIP"):
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            if spec["clusterIP"] != "None":
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
            else:
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any], reg: Any) -> None:
        super().prepare_for_update(new, old, reg)
        ns, os_ = new.setdefault("spec", {}), old.get("spec") or {}
        for f in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if f not in ns and f in os_ and ns.get("type") == os_.get("type"):
                ns[f] = os_[f]
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p for p in os_.get("ports") or []}
        for p in ns.get("ports") or []:
            o = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
            if (
                o
                and "nodePort" not in p
                and o.get("nodePort")
                and ns.get("type") in ("NodePort", "LoadBalancer")
            ):
                p["nodePort"] = o["nodePort"]
        alloc = reg.services.get("service-allocator")
        if alloc is not None:
            alloc.allocate(new, old)

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [errors.required("spec")]
        causes = []
        t = spec.get("type")
        if t not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
            causes.append(
                errors.unsupported_value(
                    "spec.type", t, ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
                )
            )
        if t == "ExternalName":
            if not spec.get("externalName"):
                causes.append(errors.required("spec.externalName"))
            return causes
        ports = spec.get("ports") or []
        if not ports and spec.get("clusterIP") != "None":
            causes.append(errors.required("spec.ports"))
        seen: set[str] = set()
        for i, p in enumerate(ports):
            port = p.get("port")
            if not isinstance(port, int) or not 0 < port < 65536:
                causes.append(
                    errors.invalid_value(
                        f"spec.ports[{i}].port", port, "must be between 1 and 65535, inclusive"
                    )
                )
            if len(ports) > 1 and not p.get("name"):
                causes.append(errors.required(f"spec.ports[{i}].name"))
            name = p.get("name", "")
            if name in seen:
                causes.append(errors.duplicate(f"spec.ports[{i}].name", name))
            seen.add(name)
            if p.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                causes.append(
                    errors.unsupported_value(
                        f"spec.ports[{i}].protocol", p.get("protocol"), ["SCTP", "TCP", "UDP"]
                    )
                )
            if "nodePort" in p and t == "ClusterIP" and p["nodePort"]:
                causes.append(
                    errors.forbidden_field(
                        f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"
                    )
                )
        if spec.get("sessionAffinity") not in ("None", "ClientIP"):
            causes.append(
                errors.unsupported_value(
                    "spec.sessionAffinity", spec.get("sessionAffinity"), ["ClientIP", "None"]
                )
            )
        return causes

    def validate_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Any
    ) -> list[errors.Cause]:
        causes = self.validate(new, reg)
        ns, os_ = new.get("spec") or {}, old.get("spec") or {}
        if (
            os_.get("clusterIP")
            and ns.get("clusterIP") != os_.get("clusterIP")
            and ns.get("type") != "ExternalName"
            and os_.get("type") != "ExternalName"
        ):
            causes.append(
                errors.invalid_value(
                    "spec.clusterIPs[0]", ns.get("clusterIP"), "may not change once set"
                )
            )
        return causes

    async def after_create(self, obj: dict[str, Any], reg: Any) -> None:
        alloc = reg.services.get("service-allocator")
        if alloc is not None:
            alloc.committed(obj)

    async def after_delete(self, obj: dict[str, Any], reg: Any) -> None:
        alloc = reg.services.get("service-allocator")
        if alloc is not None:
            alloc.release(obj)


@register("", "Secret")
class SecretStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.get("data") or {}
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        causes = []
        for k, v in (obj.get("data") or {}).items():
            if not isinstance(v, str):
                causes.append(errors.invalid_value(f"data[{k}]", v, "must be a base64 string"))
                continue
            try:
                base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                causes.append(
                    errors.invalid_value(
                        f"data[{k}]", "<secret contents redacted>", "illegal base64 data"
                    )
                )
        return causes + _data_keys(obj, ("data",))

    def validate_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Any
    ) -> list[errors.Cause]:
        return self.validate(new, reg) + _immutable_data(new, old, ("data", "type"))


@register("", "ConfigMap")
class ConfigMapStrategy(Strategy):
    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        causes = []
        for k, v in (obj.get("data") or {}).items():
            if not isinstance(v, str):
                causes.append(errors.invalid_value(f"data[{k}]", v, "must be a string"))
        return causes + _data_keys(obj, ("data", "binaryData"))

    def validate_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Any
    ) -> list[errors.Cause]:
        return self.validate(new, reg) + _immutable_data(new, old, ("data", "binaryData"))


def _data_keys(obj: dict[str, Any], fields: tuple[str, ...]) -> list[errors.Cause]:
    import re

    causes = []
    for f in fields:
        for k in obj.get(f) or {}:
            if not re.match(r"^[-._a-zA-Z0-9]+$", k) or len(k) > 253:
                causes.append(
                    errors.invalid_value(
                        f"{f}[{k}]",
                        k,
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                        "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
                        "'[-._a-zA-Z0-9]+')",
                    )
                )
    return causes


def _immutable_data(
    new: dict[str, Any], old: dict[str, Any], fields: tuple[str, ...]
) -> list[errors.Cause]:
    causes = []
    if old.get("immutable"):
        if not new.get("immutable"):
            causes.append(
                errors.forbidden_field("immutable", "field is immutable when `immutable` is set")
            )
        for f in fields:
            if new.get(f) != old.get(f):
                causes.append(
                    errors.forbidden_field(f, "field is immutable when `immutable` is set")
                )
    return causes


def _add_finalizer(obj: dict[str, Any], name: str) -> None:
    fins = obj.setdefault("metadata", {}).setdefault("finalizers", [])
    if isinstance(fins, list) and name not in fins:
        fins.append(name)


@register("", "PersistentVolumeClaim")
class PVCStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("volumeMode", "Filesystem")

    def prepare_for_create(self, obj: dict[str, Any], reg: Any) -> None:
        super().prepare_for_create(obj, reg)
        # The StorageObjectInUseProtection admission plugin: the storage
        # controller removes it once no pod uses the claim.
        _add_finalizer(obj, "kubernetes.io/pvc-protection")

    def initial_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"phase": "Pending"}

    @property
    def tracks_generation(self) -> bool:
        return False

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        spec = obj.get("spec") or {}
        causes = []
        if not spec.get("accessModes"):
            causes.append(errors.required("spec.accessModes"))
        if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
            causes.append(errors.required("spec.resources[storage]"))
        return causes


@register("", "PersistentVolume")
class PVStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
            spec.setdefault("volumeMode", "Filesystem")

    def prepare_for_create(self, obj: dict[str, Any], reg: Any) -> None:
        super().prepare_for_create(obj, reg)
        _add_finalizer(obj, "kubernetes.io/pv-protection")

    def initial_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"phase": "Pending"}

    @property
    def tracks_generation(self) -> bool:
        return False


@register("", "Node")
class NodeStrategy(Strategy):
    @property
    def tracks_generation(self) -> bool:
        return False

    def prepare_for_create(self, obj: dict[str, Any], reg: Any) -> None:
        # Nodes register with their status (the kubelet creates them).
        pass


@register("", "Event")
class EventStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        if obj.get("reason"):
            obj.setdefault("type", "Normal")

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        if not obj.get("involvedObject"):
            return [errors.required("involvedObject")]
        return []


@register("", "ServiceAccount")
class ServiceAccountStrategy(Strategy):
    pass
