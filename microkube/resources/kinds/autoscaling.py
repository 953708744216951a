"""autoscaling: HorizontalPodAutoscaler, stored as autoscaling/v2 and also served as v1.

Defaults mirror ``pkg/apis/autoscaling/v2/defaults.go`` (``minReplicas`` 1,
a CPU target of 80 % when no metric is given, and the default scaling rules
filled into a ``behavior`` that is present); validation is the subset of
``pkg/apis/autoscaling/validation`` a user runs into.

v1 ↔ v2 follows ``pkg/apis/autoscaling/v1/conversion.go``: v1 carries only
``targetCPUUtilizationPercentage`` / ``currentCPUUtilizationPercentage``;
whatever else v2 holds (other metrics, behavior, conditions, current metrics)
travels through v1 in the ``autoscaling.alpha.kubernetes.io/*`` annotations,
so a v1 client's read-modify-write keeps it.  One difference: the metrics
annotations hold the v2 JSON shape (upstream writes the older v1 MetricSpec
shape); only this server reads them back.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from microkube import errors
from microkube.objects import meta, quantity
from microkube.resources import conversion
from microkube.resources.strategy import Strategy, register

Obj = dict[str, Any]

V1 = "autoscaling/v1"
V2 = "autoscaling/v2"
DEFAULT_CPU_UTILIZATION = 80
MAX_PERIOD_SECONDS = 1800
MAX_STABILIZATION_SECONDS = 3600

METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
_ANNOTATIONS = (
    METRICS_ANNOTATION,
    CURRENT_METRICS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
    CONDITIONS_ANNOTATION,
)


def scale_up_rules() -> Obj:
    """``HPAScaleUpRules()``: double or add 4 pods per 15 s, whichever is more; no window."""
    return {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    }


def scale_down_rules() -> Obj:
    """``HPAScaleDownRules()``: down to any size per 15 s after a 300 s stabilization window."""
    return {
        "stabilizationWindowSeconds": 300,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    }


def _fill_rules(rules: Any, defaults: Obj) -> Obj:
    if not isinstance(rules, dict):
        return defaults
    for k in ("stabilizationWindowSeconds", "selectPolicy", "policies"):
        if rules.get(k) is None:
            rules[k] = defaults[k]
    return rules


def cpu_utilization_metric(percent: int) -> Obj:
    return {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": percent},
        },
    }


@register("autoscaling", "HorizontalPodAutoscaler")
class HorizontalPodAutoscalerStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        if spec.get("minReplicas") is None:
            spec["minReplicas"] = 1
        if not spec.get("metrics"):
            spec["metrics"] = [cpu_utilization_metric(DEFAULT_CPU_UTILIZATION)]
        behavior = spec.get("behavior")
        if isinstance(behavior, dict):
            behavior["scaleUp"] = _fill_rules(behavior.get("scaleUp"), scale_up_rules())
            behavior["scaleDown"] = _fill_rules(behavior.get("scaleDown"), scale_down_rules())

    def validate(self, obj: Obj, reg: Any) -> list[errors.Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [errors.required("spec")]
        causes: list[errors.Cause] = []
        ref = spec.get("scaleTargetRef")
        if not isinstance(ref, dict):
            causes.append(errors.required("spec.scaleTargetRef"))
        else:
            for f in ("kind", "name"):
                if not ref.get(f):
                    causes.append(errors.required(f"spec.scaleTargetRef.{f}"))
        lo, hi = spec.get("minReplicas"), spec.get("maxReplicas")
        if lo is not None and (not isinstance(lo, int) or lo < 1):
            causes.append(
                errors.invalid_value("spec.minReplicas", lo, "must be greater than or equal to 1")
            )
        if not isinstance(hi, int) or hi < 1:
            causes.append(errors.invalid_value("spec.maxReplicas", hi, "must be greater than 0"))
        elif isinstance(lo, int) and lo > hi:
            causes.append(
                errors.invalid_value(
                    "spec.maxReplicas", hi, "must be greater than or equal to `minReplicas`"
                )
            )
        for i, m in enumerate(spec.get("metrics") or []):
            causes += _metric_errors(m, f"spec.metrics[{i}]")
        behavior = spec.get("behavior")
        if isinstance(behavior, dict):
            for direction in ("scaleUp", "scaleDown"):
                causes += _rules_errors(behavior.get(direction), f"spec.behavior.{direction}")
        return causes


_METRIC_TYPES = ["ContainerResource", "External", "Object", "Pods", "Resource"]
_TARGET_TYPES = ["AverageValue", "Utilization", "Value"]


def _metric_errors(m: Any, path: str) -> list[errors.Cause]:
    if not isinstance(m, dict):
        return [errors.invalid_value(path, m, "must be an object")]
    kind = m.get("type")
    if kind not in _METRIC_TYPES:
        return [errors.unsupported_value(f"{path}.type", kind, _METRIC_TYPES)]
    key = kind[0].lower() + kind[1:]
    source = m.get(key)
    if not isinstance(source, dict):
        return [errors.required(f"{path}.{key}")]
    causes: list[errors.Cause] = []
    if kind in ("Resource", "ContainerResource") and not source.get("name"):
        causes.append(errors.required(f"{path}.{key}.name"))
    if kind == "ContainerResource" and not source.get("container"):
        causes.append(errors.required(f"{path}.{key}.container"))
    target = source.get("target")
    tpath = f"{path}.{key}.target"
    if not isinstance(target, dict):
        return [*causes, errors.required(tpath)]
    ttype = target.get("type")
    if ttype not in _TARGET_TYPES:
        return [*causes, errors.unsupported_value(f"{tpath}.type", ttype, _TARGET_TYPES)]
    if kind in ("Resource", "ContainerResource") and ttype == "Value":
        causes.append(
            errors.invalid_value(
                f"{tpath}.type", ttype, "must be either Utilization or AverageValue"
            )
        )
    if ttype == "Utilization":
        u = target.get("averageUtilization")
        if not isinstance(u, int) or u < 1:
            causes.append(
                errors.invalid_value(f"{tpath}.averageUtilization", u, "must be greater than 0")
            )
    else:
        field = "averageValue" if ttype == "AverageValue" else "value"
        raw = target.get(field)
        try:
            ok = raw is not None and quantity.parse(raw) > 0
        except ValueError:
            ok = False
        if not ok:
            causes.append(errors.invalid_value(f"{tpath}.{field}", raw, "must be positive"))
    return causes


def _rules_errors(rules: Any, path: str) -> list[errors.Cause]:
    if not isinstance(rules, dict):
        return []
    causes: list[errors.Cause] = []
    window = rules.get("stabilizationWindowSeconds")
    if not isinstance(window, int) or not 0 <= window <= MAX_STABILIZATION_SECONDS:
        causes.append(
            errors.invalid_value(
                f"{path}.stabilizationWindowSeconds",
                window,
                f"must be less than or equal to {MAX_STABILIZATION_SECONDS} and not negative",
            )
        )
    select = rules.get("selectPolicy")
    if select not in ("Max", "Min", "Disabled"):
        causes.append(
            errors.unsupported_value(f"{path}.selectPolicy", select, ["Disabled", "Max", "Min"])
        )
    policies = rules.get("policies")
    if not isinstance(policies, list) or (not policies and select != "Disabled"):
        causes.append(errors.required(f"{path}.policies"))
        return causes
    for i, p in enumerate(policies):
        pp = f"{path}.policies[{i}]"
        if not isinstance(p, dict):
            causes.append(errors.invalid_value(pp, p, "must be an object"))
            continue
        if p.get("type") not in ("Pods", "Percent"):
            causes.append(
                errors.unsupported_value(f"{pp}.type", p.get("type"), ["Percent", "Pods"])
            )
        period, value = p.get("periodSeconds"), p.get("value")
        if not isinstance(period, int) or not 0 < period <= MAX_PERIOD_SECONDS:
            causes.append(
                errors.invalid_value(
                    f"{pp}.periodSeconds",
                    period,
                    f"must be greater than zero and less than or equal to {MAX_PERIOD_SECONDS}",
                )
            )
        if not isinstance(value, int) or value <= 0:
            causes.append(errors.invalid_value(f"{pp}.value", value, "must be greater than zero"))
    return causes


# --- v1 <-> v2 ----------------------------------------------------------------------


def _is_cpu_utilization(m: Any) -> bool:
    if not isinstance(m, dict) or m.get("type") != "Resource":
        return False
    res = m.get("resource") or {}
    return (
        res.get("name") == "cpu" and (res.get("target") or {}).get("averageUtilization") is not None
    )


def _to_v1(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out["apiVersion"] = V1
    spec: Obj = out["spec"] if isinstance(out.get("spec"), dict) else {}
    status: Obj | None = out["status"] if isinstance(out.get("status"), dict) else None
    anns = dict(meta.meta(out).get("annotations") or {})
    metrics = spec.pop("metrics", None) or []
    cpu = next((m for m in metrics if _is_cpu_utilization(m)), None)
    others = [m for m in metrics if m is not cpu]
    if cpu is not None:
        spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    if others:
        anns[METRICS_ANNOTATION] = json.dumps(others, separators=(",", ":"))
    behavior = spec.pop("behavior", None)
    if behavior is not None:
        anns[BEHAVIOR_ANNOTATION] = json.dumps(behavior, separators=(",", ":"))
    if status is not None:
        current = status.pop("currentMetrics", None) or []
        for m in current:
            if not isinstance(m, dict) or m.get("type") != "Resource":
                continue
            res = m.get("resource") or {}
            if res.get("name") == "cpu":
                got = (res.get("current") or {}).get("averageUtilization")
                if got is not None:
                    status["currentCPUUtilizationPercentage"] = got
                    break
        if current:
            anns[CURRENT_METRICS_ANNOTATION] = json.dumps(current, separators=(",", ":"))
        conditions = status.pop("conditions", None)
        if conditions:
            anns[CONDITIONS_ANNOTATION] = json.dumps(conditions, separators=(",", ":"))
    if anns:
        meta.meta(out)["annotations"] = anns
    return out


def _annotation(anns: dict[str, Any], key: str, kind: type) -> Any:
    raw = anns.pop(key, None)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise errors.BadRequest(f"invalid {key} annotation: {exc}") from exc
    if not isinstance(value, kind):
        raise errors.BadRequest(f"invalid {key} annotation: not a JSON {kind.__name__}")
    return value


def _to_v2(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out["apiVersion"] = V2
    m = meta.meta(out)
    anns = dict(m.get("annotations") or {})
    spec = out.get("spec") if isinstance(out.get("spec"), dict) else None
    status = out.get("status") if isinstance(out.get("status"), dict) else None
    others = _annotation(anns, METRICS_ANNOTATION, list)
    behavior = _annotation(anns, BEHAVIOR_ANNOTATION, dict)
    current = _annotation(anns, CURRENT_METRICS_ANNOTATION, list)
    conditions = _annotation(anns, CONDITIONS_ANNOTATION, list)
    if spec is not None:
        cpu = spec.pop("targetCPUUtilizationPercentage", None)
        metrics = list(others or []) + ([cpu_utilization_metric(cpu)] if cpu is not None else [])
        if metrics:
            spec["metrics"] = metrics
        if behavior is not None:
            spec["behavior"] = behavior
    if status is not None:
        cpu_now = status.pop("currentCPUUtilizationPercentage", None)
        if current:
            status["currentMetrics"] = current
        elif cpu_now is not None:
            status["currentMetrics"] = [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "current": {"averageUtilization": cpu_now}},
                }
            ]
        if conditions:
            status["conditions"] = conditions
    if anns:
        m["annotations"] = anns
    else:
        m.pop("annotations", None)
    return out


def convert(obj: Obj, to: str) -> Obj:
    return _to_v1(obj) if to == V1 else _to_v2(obj)


conversion.register("autoscaling", "HorizontalPodAutoscaler", V2, convert)
