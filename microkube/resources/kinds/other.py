"""Strategies of the remaining built-in kinds that need more than the default."""

from __future__ import annotations

from typing import Any

from microkube import errors
from microkube.resources.strategy import Strategy, register


@register("storage.k8s.io", "StorageClass")
class StorageClassStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        if not obj.get("provisioner"):
            return [errors.required("provisioner")]
        return []

    def validate_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Any
    ) -> list[errors.Cause]:
        causes = self.validate(new, reg)
        for f in ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"):
            if new.get(f) != old.get(f):
                causes.append(errors.forbidden_field(f, "updates to " + f + " are forbidden."))
        return causes


@register("discovery.k8s.io", "EndpointSlice")
class EndpointSliceStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        for p in obj.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        if obj.get("addressType") not in ("IPv4", "IPv6", "FQDN"):
            return [
                errors.unsupported_value(
                    "addressType", obj.get("addressType"), ["FQDN", "IPv4", "IPv6"]
                )
            ]
        return []


@register("coordination.k8s.io", "Lease")
class LeaseStrategy(Strategy):
    pass


@register("scheduling.k8s.io", "PriorityClass")
class PriorityClassStrategy(Strategy):
    def default(self, obj: dict[str, Any]) -> None:
        obj.setdefault("preemptionPolicy", "PreemptLowerPriority")

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        if not isinstance(obj.get("value"), int):
            return [errors.required("value")]
        return []


def path_segment_name_errors(name: str) -> list[str]:
    """Mirrors apimachinery ``path.ValidatePathSegmentName`` (RBAC names may contain ':')."""
    if name in (".", ".."):
        return [f'may not be "{name}"']
    for bad in ("/", "%"):
        if bad in name:
            return [f"may not contain '{bad}'"]
    return []


class _RbacStrategy(Strategy):
    def name_errors(self, name: str) -> list[str]:
        return path_segment_name_errors(name)


for _kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"):
    register("rbac.authorization.k8s.io", _kind)(type(f"{_kind}Strategy", (_RbacStrategy,), {}))
