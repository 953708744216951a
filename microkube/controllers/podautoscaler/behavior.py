"""From the metrics' proposal to the replicas to set: stabilization and scaling rules.

Mirrors ``podautoscaler/horizontal.go``'s ``normalizeDesiredReplicas`` (no
``spec.behavior``) and ``normalizeDesiredReplicasWithBehaviors``:

* stabilization: every proposal is remembered with its time; scaling down
  goes only as low as the highest proposal of the last 300 s (or the scale-down
  window), scaling up (with a behavior) only as high as the lowest proposal of
  the scale-up window;
* rate: without a behavior, at most ``max(2 × current, 4)`` replicas; with
  one, each policy allows so many pods or percent per period counted from the
  scale events of that period, ``selectPolicy`` picking the largest (``Max``)
  or smallest (``Min``) change, or none (``Disabled``);
* bounds: ``minReplicas`` .. ``maxReplicas``.

Each step reports the condition upstream sets (AbleToScale ReadyForNewScale or
ScaleUp/DownStabilized; ScalingLimited with TooManyReplicas, TooFewReplicas,
ScaleUpLimit, ScaleDownLimit or DesiredWithinRange).  State is per HPA key
and lives in memory, as upstream's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

Obj = dict[str, Any]
#: (type, status, reason, message) of a condition to set
Condition = tuple[str, str, str, str]

DOWNSCALE_STABILIZATION = timedelta(minutes=5)
SCALE_UP_LIMIT_FACTOR = 2
SCALE_UP_LIMIT_MINIMUM = 4

_WITHIN = ("DesiredWithinRange", "the desired count is within the acceptable range")
_TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
_TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")
_UP_LIMIT = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
)
_DOWN_LIMIT = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
)
_READY = ("ReadyForNewScale", "recommended size matches current size")
_UP_STABILIZED = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
)
_DOWN_STABILIZED = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent "
    "recommendation",
)


@dataclass
class _State:
    recommendations: list[tuple[datetime, int]] = field(default_factory=list)
    scale_up: list[tuple[datetime, int]] = field(default_factory=list)
    scale_down: list[tuple[datetime, int]] = field(default_factory=list)


class Normalizer:
    """Recommendations and scale events of every HPA, and the normalization over them."""

    def __init__(self, *, downscale_stabilization: timedelta = DOWNSCALE_STABILIZATION) -> None:
        self.downscale_stabilization = downscale_stabilization
        self._state: dict[str, _State] = {}

    def forget(self, key: str) -> None:
        self._state.pop(key, None)

    def record_initial(self, key: str, current: int, now: datetime) -> None:
        """The current scale is the first recommendation (``recordInitialRecommendation``)."""
        st = self._state.setdefault(key, _State())
        if not st.recommendations:
            st.recommendations.append((now, current))

    def normalize(
        self,
        key: str,
        spec: Obj,
        current: int,
        desired: int,
        min_replicas: int,
        now: datetime,
    ) -> tuple[int, list[Condition]]:
        """The replicas to set for the metrics' ``desired`` and the conditions to report."""
        behavior = spec.get("behavior")
        if behavior:
            return self._with_behavior(key, behavior, spec, current, desired, min_replicas, now)
        stabilized = self._stabilize(key, desired, now)
        able = _DOWN_STABILIZED if stabilized != desired else _READY
        out, limit = _limit_default(current, stabilized, min_replicas, int(spec["maxReplicas"]))
        limited = "True" if out != stabilized else "False"
        return out, [("AbleToScale", "True", *able), ("ScalingLimited", limited, *limit)]

    def _stabilize(self, key: str, desired: int, now: datetime) -> int:
        st = self._state.setdefault(key, _State())
        cutoff = now - self.downscale_stabilization
        highest, old = desired, None
        for i, (at, rec) in enumerate(st.recommendations):
            if at < cutoff:
                old = i
            elif rec > highest:
                highest = rec
        if old is not None:
            st.recommendations[old] = (now, desired)
        else:
            st.recommendations.append((now, desired))
        return highest

    def _with_behavior(
        self,
        key: str,
        behavior: Obj,
        spec: Obj,
        current: int,
        desired: int,
        min_replicas: int,
        now: datetime,
    ) -> tuple[int, list[Condition]]:
        up, down = behavior.get("scaleUp") or {}, behavior.get("scaleDown") or {}
        st = self._state.setdefault(key, _State())
        up_cutoff = now - timedelta(seconds=int(up.get("stabilizationWindowSeconds") or 0))
        down_window = down.get("stabilizationWindowSeconds")
        down_cutoff = now - (
            self.downscale_stabilization if down_window is None else timedelta(seconds=down_window)
        )
        up_rec = down_rec = desired
        old = None
        for i, (at, rec) in enumerate(st.recommendations):
            if at > up_cutoff:
                up_rec = min(rec, up_rec)
            if at > down_cutoff:
                down_rec = max(rec, down_rec)
            if at < up_cutoff and at < down_cutoff:
                old = i
        stabilized = min(max(current, up_rec), down_rec)
        if old is not None:
            st.recommendations[old] = (now, desired)
        else:
            st.recommendations.append((now, desired))
        able = _READY
        if stabilized != desired:
            able = _UP_STABILIZED if desired >= current else _DOWN_STABILIZED
        out, limit = _limit_rate(current, stabilized, st, up, down, spec, min_replicas, now)
        limited = "True" if out != stabilized else "False"
        return out, [("AbleToScale", "True", *able), ("ScalingLimited", limited, *limit)]

    def record_scale(
        self, key: str, behavior: Obj | None, old: int, new: int, now: datetime
    ) -> None:
        """Remember a rescale for the rate policies (``storeScaleEvent``; only with a behavior)."""
        if not behavior or old == new:
            return
        st = self._state.setdefault(key, _State())
        rules = (behavior.get("scaleUp") if new > old else behavior.get("scaleDown")) or {}
        longest = max(
            (int(p.get("periodSeconds") or 0) for p in rules.get("policies") or []), default=0
        )
        events = st.scale_up if new > old else st.scale_down
        cutoff = now - timedelta(seconds=longest)
        events[:] = [e for e in events if e[0] > cutoff]
        events.append((now, abs(new - old)))


def _limit_default(
    current: int, desired: int, min_replicas: int, max_replicas: int
) -> tuple[int, tuple[str, str]]:
    """``convertDesiredReplicasWithRules``: bounds and the 2×/4 scale-up limit."""
    up_limit = max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM)
    if max_replicas > up_limit:
        maximum, limit = up_limit, _UP_LIMIT
    else:
        maximum, limit = max_replicas, _TOO_MANY
    if desired < min_replicas:
        return min_replicas, _TOO_FEW
    if desired > maximum:
        return maximum, limit
    return desired, _WITHIN


def _limit_rate(
    current: int,
    desired: int,
    st: _State,
    up: Obj,
    down: Obj,
    spec: Obj,
    min_replicas: int,
    now: datetime,
) -> tuple[int, tuple[str, str]]:
    """``convertDesiredReplicasWithBehaviorRate``: bounds and the policies' rate."""
    if desired > current:
        cap = max(_scale_up_limit(current, st, up, now), current)
        maximum, limit = int(spec["maxReplicas"]), _TOO_MANY
        if maximum > cap:
            maximum, limit = cap, _UP_LIMIT
        if desired > maximum:
            return maximum, limit
    elif desired < current:
        floor = min(_scale_down_limit(current, st, down, now), current)
        minimum, limit = min_replicas, _TOO_FEW
        if minimum < floor:
            minimum, limit = floor, _DOWN_LIMIT
        if desired < minimum:
            return minimum, limit
    return desired, _WITHIN


def _changed(events: list[tuple[datetime, int]], period: int, now: datetime) -> int:
    cutoff = now - timedelta(seconds=period)
    return sum(n for at, n in events if at > cutoff)


def _scale_up_limit(current: int, st: _State, rules: Obj, now: datetime) -> int:
    """``calculateScaleUpLimitWithScalingRules``."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for p in rules.get("policies") or []:
        period = int(p.get("periodSeconds") or 0)
        start = current - _changed(st.scale_up, period, now) + _changed(st.scale_down, period, now)
        if p.get("type") == "Pods":
            proposals.append(start + int(p.get("value") or 0))
        else:
            proposals.append(math.ceil(start * (1 + int(p.get("value") or 0) / 100)))
    if not proposals:
        return current
    return min(proposals) if select == "Min" else max(proposals)


def _scale_down_limit(current: int, st: _State, rules: Obj, now: datetime) -> int:
    """``calculateScaleDownLimitWithBehaviors`` (the smallest change is the largest count)."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for p in rules.get("policies") or []:
        period = int(p.get("periodSeconds") or 0)
        start = current - _changed(st.scale_up, period, now) + _changed(st.scale_down, period, now)
        if p.get("type") == "Pods":
            proposals.append(start - int(p.get("value") or 0))
        else:
            proposals.append(int(start * (1 - int(p.get("value") or 0) / 100)))
    if not proposals:
        return current
    return max(proposals) if select == "Min" else min(proposals)
