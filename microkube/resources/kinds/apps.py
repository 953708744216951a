"""apps/v1 strategies: Deployment, ReplicaSet, StatefulSet, DaemonSet.

Mirrors ``pkg/apis/apps/v1/defaults.go`` and the immutable-selector rule of
``pkg/apis/apps/validation``.
"""

from __future__ import annotations

import re
from typing import Any

from microkube import errors
from microkube.objects.selectors import LabelSelector
from microkube.resources import podspec
from microkube.resources.strategy import Strategy, register


def validate_selector_and_template(
    obj: dict[str, Any], *, require_selector: bool = True
) -> list[errors.Cause]:
    causes: list[errors.Cause] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [errors.required("spec")]
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector is None:
        if require_selector:
            causes.append(errors.required("spec.selector"))
    else:
        try:
            sel = LabelSelector.from_structured(selector)
        except errors.ApiError as exc:
            causes.append(errors.invalid_value("spec.selector", selector, exc.message))
            sel = None
        if sel is not None:
            if sel.empty:
                causes.append(
                    errors.invalid_value(
                        "spec.selector", selector, "empty selector is invalid for deployment"
                    )
                )
            elif not sel.matches(labels):
                causes.append(
                    errors.invalid_value(
                        "spec.template.metadata.labels",
                        labels,
                        "`selector` does not match template `labels`",
                    )
                )
    causes += podspec.validate_pod_spec(template.get("spec"), "spec.template.spec", template=True)
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        causes.append(
            errors.invalid_value("spec.replicas", replicas, "must be greater than or equal to 0")
        )
    return causes


def selector_immutable(new: dict[str, Any], old: dict[str, Any]) -> list[errors.Cause]:
    if (new.get("spec") or {}).get("selector") != (old.get("spec") or {}).get("selector"):
        return [
            errors.invalid_value(
                "spec.selector", (new.get("spec") or {}).get("selector"), "field is immutable"
            )
        ]
    return []


class _Workload(Strategy):
    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        return validate_selector_and_template(obj)

    def validate_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Any
    ) -> list[errors.Cause]:
        return self.validate(new, reg) + selector_immutable(new, old)


@register("apps", "Deployment")
class DeploymentStrategy(_Workload):
    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        podspec.default_template(spec.get("template"))
        # `kubectl rollout undo` JSON-patches /metadata/annotations: keep it present.
        obj["metadata"].setdefault("annotations", {})

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        causes = super().validate(obj, reg)
        strategy = (obj.get("spec") or {}).get("strategy") or {}
        if strategy.get("type") not in ("RollingUpdate", "Recreate"):
            causes.append(
                errors.unsupported_value(
                    "spec.strategy.type", strategy.get("type"), ["Recreate", "RollingUpdate"]
                )
            )
        if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate"):
            causes.append(
                errors.forbidden_field(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                )
            )
        return causes


@register("apps", "ReplicaSet")
class ReplicaSetStrategy(_Workload):
    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("replicas", 1)
            podspec.default_template(spec.get("template"))


@register("apps", "StatefulSet")
class StatefulSetStrategy(_Workload):
    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        us = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if us.get("type", "RollingUpdate") == "RollingUpdate":
            us.setdefault("type", "RollingUpdate")
            us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault(
            "persistentVolumeClaimRetentionPolicy",
            {"whenDeleted": "Retain", "whenScaled": "Retain"},
        )
        for t in spec.get("volumeClaimTemplates") or []:
            if isinstance(t, dict):
                t.setdefault("apiVersion", "v1")
                t.setdefault("kind", "PersistentVolumeClaim")
                tspec = t.setdefault("spec", {})
                tspec.setdefault("volumeMode", "Filesystem")
                t.setdefault("status", {"phase": "Pending"})
        podspec.default_template(spec.get("template"))

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("template"), dict):
            return super().validate(obj, reg)
        return self._validate_template(obj, spec, reg) + _sts_rolling_errors(spec)

    def _validate_template(
        self, obj: dict[str, Any], spec: dict[str, Any], reg: Any
    ) -> list[errors.Cause]:
        """Containers may mount the volumeClaimTemplates: validate against that union.

        Upstream skips the template's volume checks for StatefulSets for this
        reason (``ValidatePodTemplateSpecForStatefulSet``); we check the union.
        """
        claims = spec.get("volumeClaimTemplates")
        tspec = spec["template"].get("spec")
        if not claims or not isinstance(tspec, dict) or not isinstance(claims, list):
            return super().validate(obj, reg)
        names = {v.get("name") for v in tspec.get("volumes") or [] if isinstance(v, dict)}
        extra = [
            {"name": n, "persistentVolumeClaim": {"claimName": n}}
            for t in claims
            if isinstance(t, dict)
            and (n := (t.get("metadata") or {}).get("name"))
            and n not in names
        ]
        view = {
            **obj,
            "spec": {
                **spec,
                "template": {
                    **spec["template"],
                    "spec": {**tspec, "volumes": [*(tspec.get("volumes") or []), *extra]},
                },
            },
        }
        return super().validate(view, reg)

    def validate_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Any
    ) -> list[errors.Cause]:
        causes = self.validate(new, reg) + selector_immutable(new, old)
        mutable = {
            "replicas",
            "template",
            "updateStrategy",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
            "ordinals",
            "revisionHistoryLimit",
        }
        ns, os_ = new.get("spec") or {}, old.get("spec") or {}
        for k in set(ns) | set(os_):
            if k not in mutable and k != "selector" and ns.get(k) != os_.get(k):
                causes.append(
                    errors.forbidden_field(
                        "spec",
                        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                    )
                )
                break
        return causes


def _sts_rolling_errors(spec: dict[str, Any]) -> list[errors.Cause]:
    """minReadySeconds and rollingUpdate.maxUnavailable rules of ``ValidateStatefulSetSpec``."""
    causes: list[errors.Cause] = []
    mrs = spec.get("minReadySeconds")
    if mrs is not None and (not isinstance(mrs, int) or mrs < 0):
        causes.append(
            errors.invalid_value("spec.minReadySeconds", mrs, "must be greater than or equal to 0")
        )
    ru = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
    value, path = ru.get("maxUnavailable"), "spec.updateStrategy.rollingUpdate.maxUnavailable"
    if value is None:
        return causes
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]+%", value):
            causes.append(
                errors.invalid_value(
                    path,
                    value,
                    "a valid percent string must be a numeric string followed by an ending '%' "
                    "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )
            )
            return causes
        number = int(value[:-1])
        if number > 100:
            causes.append(errors.invalid_value(path, value, "must not be greater than 100%"))
    elif isinstance(value, int):
        number = value
        if number < 0:
            causes.append(errors.invalid_value(path, value, "must be greater than or equal to 0"))
    else:
        return [*causes, errors.invalid_value(path, value, "must be an integer or a percentage")]
    if number == 0:
        causes.append(errors.invalid_value(path, value, "cannot be 0"))
    return causes


@register("apps", "DaemonSet")
class DaemonSetStrategy(_Workload):
    def default(self, obj: dict[str, Any]) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        us = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
        if us.get("type", "RollingUpdate") == "RollingUpdate":
            us.setdefault("type", "RollingUpdate")
            ru = us.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", 1)
            ru.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        podspec.default_template(spec.get("template"))
