"""The replica count a Resource metric asks for (``podautoscaler/replica_calculator.go``).

Pure functions over pods and PodMetrics; values are milli-units (millicores,
milli-bytes) as upstream's metrics client reads them (``MilliValue()``).

The calculation, per metric::

    usage of each pod (sum of its containers) ─► group pods:
        deleting or Failed ─► ignored      Pending ─► unready
        no metric ─► missing               CPU: not Ready / too fresh ─► unready
    ratio = utilization (Σ usage / Σ requests) / target, or average usage / target
    |1 - ratio| <= 0.1 ─► keep the current count, else ceil(ratio × ready pods)

With missing or unready pods the ratio is recomputed pessimistically (missing
pods count as 100 % of their request when scaling down, 0 when scaling up;
unready ones as 0 when scaling up), and the scale is kept if that flips the
direction or lands within tolerance, exactly as upstream avoids flapping.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from microkube.controllers.base import parse_time
from microkube.objects import quantity

Obj = dict[str, Any]

TOLERANCE = 0.1
CPU_INITIALIZATION_PERIOD = timedelta(minutes=5)
INITIAL_READINESS_DELAY = timedelta(seconds=30)


class CalcError(Exception):
    """No replica count can be computed (the message is upstream's)."""


@dataclass(frozen=True)
class PodMetric:
    value: int
    """Usage in milli-units (millicores, milli-bytes)."""
    timestamp: datetime
    window: timedelta


PodMetrics = dict[str, PodMetric]


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DURATION = re.compile(r"([0-9.]+)(h|ms|us|µs|ns|m|s)")
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def _window(value: str) -> timedelta:
    """A Go duration as metrics-server writes it (``10.04s``, ``1m0.5s``, ``500ms``)."""
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(value or ""))
    return timedelta(seconds=seconds)


def pod_metrics(
    items: list[Obj], resource: str, container: str = ""
) -> tuple[PodMetrics, datetime]:
    """PodMetrics objects → usage per pod name (``rest_metrics_client.GetResourceMetric``).

    A pod missing the resource in one of its (counted) containers is left out.
    """
    out: PodMetrics = {}
    for m in items:
        total, found, missing = 0, False, False
        for c in m.get("containers") or []:
            if container and c.get("name") != container:
                continue
            value = (c.get("usage") or {}).get(resource)
            if value is None:
                missing = True
                break
            total += quantity.milli(value)
            found = True
        if found and not missing:
            out[m["metadata"]["name"]] = PodMetric(
                total, parse_time(m.get("timestamp")) or _NEVER, _window(m.get("window", "0s"))
            )
    if not items:
        raise CalcError("no metrics returned from resource metrics API")
    stamp = parse_time(items[0].get("timestamp")) or _NEVER
    return out, stamp


def _ready_condition(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None


def group_pods(
    pods: list[Obj], metrics: PodMetrics, resource: str, now: datetime
) -> tuple[int, set[str], set[str], set[str]]:
    """(ready count, unready, missing, ignored) pod names (upstream's ``groupPods``)."""
    ready, unready, missing, ignored = 0, set(), set(), set()
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or status.get("phase") == "Failed":
            ignored.add(name)
            continue
        if status.get("phase") == "Pending":
            unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            missing.add(name)
            continue
        if resource == "cpu":
            cond = _ready_condition(pod)
            start = parse_time(status.get("startTime"))
            changed = parse_time((cond or {}).get("lastTransitionTime"))
            if cond is None or start is None or changed is None:
                not_ready = True
            elif start + CPU_INITIALIZATION_PERIOD > now:
                # Still initialising: ignore the sample if unready, or if one metric
                # window has not passed since the last readiness change.
                not_ready = (
                    cond.get("status") == "False" or metric.timestamp < changed + metric.window
                )
            else:
                # Ignore it if unready and never ready since start.
                not_ready = (
                    cond.get("status") == "False" and start + INITIAL_READINESS_DELAY > changed
                )
            if not_ready:
                unready.add(name)
                continue
        ready += 1
    return ready, unready, missing, ignored


def pod_requests(pods: list[Obj], resource: str, container: str = "") -> dict[str, int]:
    """Requests per pod in milli-units; every counted container must have one."""
    out = {}
    for pod in pods:
        total = 0
        for c in (pod.get("spec") or {}).get("containers") or []:
            if container and c.get("name") != container:
                continue
            value = ((c.get("resources") or {}).get("requests") or {}).get(resource)
            if value is None:
                raise CalcError(
                    f"missing request for {resource} in container {c.get('name')} "
                    f"of Pod {pod['metadata']['name']}"
                )
            total += quantity.milli(value)
        out[pod["metadata"]["name"]] = total
    return out


def utilization_ratio(
    metrics: PodMetrics, requests: dict[str, int], target: int
) -> tuple[float, int, int]:
    """(usage ratio, utilization %, average usage) (``GetResourceUtilizationRatio``)."""
    used = requested = entries = 0
    for name, m in metrics.items():
        if name not in requests:
            continue  # missing requests are checked elsewhere: extraneous metrics
        used += m.value
        requested += requests[name]
        entries += 1
    if requested == 0:
        raise CalcError("no metrics returned matched known pods")
    utilization = used * 100 // requested
    return utilization / target, utilization, used // entries


def usage_ratio(metrics: PodMetrics, target: int) -> tuple[float, int]:
    """(usage ratio, average usage) (``GetMetricUsageRatio``)."""
    average = sum(m.value for m in metrics.values()) // len(metrics)
    return average / target, average


def resource_replicas(
    current: int,
    target_utilization: int,
    resource: str,
    pods: list[Obj],
    metrics: PodMetrics,
    now: datetime,
    container: str = "",
) -> tuple[int, int, int]:
    """(replicas, utilization %, average usage) for a Utilization target (``GetResourceReplicas``)."""
    if not pods:
        raise CalcError("no pods returned by selector while calculating replica count")
    metrics = dict(metrics)
    ready, unready, missing, ignored = group_pods(pods, metrics, resource, now)
    for name in ignored | unready:
        metrics.pop(name, None)
    if not metrics:
        raise CalcError("did not receive metrics for targeted pods (pods might be unready)")
    requests = pod_requests(pods, resource, container)
    ratio, utilization, raw = utilization_ratio(metrics, requests, target_utilization)
    up_with_unready = bool(unready) and ratio > 1.0
    if not up_with_unready and not missing:
        if abs(1.0 - ratio) <= TOLERANCE:
            return current, utilization, raw
        return math.ceil(ratio * ready), utilization, raw
    if missing:
        if ratio < 1.0:
            fallback = max(100, target_utilization)
            for name in missing:
                metrics[name] = PodMetric(requests[name] * fallback // 100, now, timedelta())
        elif ratio > 1.0:
            for name in missing:
                metrics[name] = PodMetric(0, now, timedelta())
    if up_with_unready:
        for name in unready:
            metrics[name] = PodMetric(0, now, timedelta())
    new_ratio, _, _ = utilization_ratio(metrics, requests, target_utilization)
    return _settle(current, ratio, new_ratio, len(metrics)), utilization, raw


def raw_resource_replicas(
    current: int,
    target_value: int,
    resource: str,
    pods: list[Obj],
    metrics: PodMetrics,
    now: datetime,
) -> tuple[int, int]:
    """(replicas, average usage) for an AverageValue target (``calcPlainMetricReplicas``)."""
    if not pods:
        raise CalcError("no pods returned by selector while calculating replica count")
    metrics = dict(metrics)
    ready, unready, missing, ignored = group_pods(pods, metrics, resource, now)
    for name in ignored | unready:
        metrics.pop(name, None)
    if not metrics:
        raise CalcError("did not receive metrics for targeted pods (pods might be unready)")
    ratio, usage = usage_ratio(metrics, target_value)
    up_with_unready = bool(unready) and ratio > 1.0
    if not up_with_unready and not missing:
        if abs(1.0 - ratio) <= TOLERANCE:
            return current, usage
        return math.ceil(ratio * ready), usage
    if missing:
        fill = target_value if ratio < 1.0 else 0
        for name in missing:
            metrics[name] = PodMetric(fill, now, timedelta())
    if up_with_unready:
        for name in unready:
            metrics[name] = PodMetric(0, now, timedelta())
    new_ratio, _ = usage_ratio(metrics, target_value)
    return _settle(current, ratio, new_ratio, len(metrics)), usage


def _settle(current: int, ratio: float, new_ratio: float, count: int) -> int:
    """The pessimistic recount: keep ``current`` if it flips direction or is within tolerance."""
    if abs(1.0 - new_ratio) <= TOLERANCE or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    replicas = math.ceil(new_ratio * count)
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas
