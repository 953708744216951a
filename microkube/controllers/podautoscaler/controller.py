"""The HorizontalPodAutoscaler loop (``podautoscaler/horizontal.go`` ``reconcileAutoscaler``).

::

    HPA added or its spec changed ─► queue ◄─ every 15 s (the sync period) after each pass
        reconcile(key):
            scale of spec.scaleTargetRef (replicas, selector) ── error ─► AbleToScale False
            replicas outside min..max ─► clamp           target at 0 ─► ScalingActive False
            otherwise, per metric: PodMetrics (metrics.k8s.io) + pods ─► replicas.py
                ─► the highest proposal ─► behavior.Normalizer (stabilization, rate, bounds)
            changed ─► write the target's spec.replicas, SuccessfulRescale event
            status: currentReplicas, desiredReplicas, currentMetrics, lastScaleTime,
                    conditions AbleToScale / ScalingActive / ScalingLimited

Supported metrics are ``Resource`` and ``ContainerResource`` (cpu, memory;
Utilization and AverageValue), read through the in-process client from
metrics.k8s.io like upstream's REST metrics client.  ``Pods``, ``Object`` and
``External`` metrics need the custom/external metrics APIs, which are not
served: they are reported as invalid metrics.  The target is any kind with a
``scale`` subresource (Deployments, ReplicaSets, StatefulSets,
ReplicationControllers, custom resources), read and written the way the scale
subresource does (``spec.replicas``; ``spec.selector``, or ``status.selector``
for custom resources).
"""

from __future__ import annotations

import copy
import logging
from datetime import datetime
from typing import Any

from microkube import errors
from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers import events
from microkube.controllers.base import Clock, Controller, fmt_time
from microkube.controllers.podautoscaler import behavior, replicas
from microkube.objects import quantity
from microkube.objects.selectors import LabelSelector
from microkube.resources.types import ResourceType

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SYNC_PERIOD = 15.0  # --horizontal-pod-autoscaler-sync-period


class _Failed(Exception):
    """A metric gave no proposal: the condition to report and the error."""

    def __init__(self, condition: behavior.Condition, message: str) -> None:
        super().__init__(message)
        self.condition = condition


class HorizontalPodAutoscalerController(Controller):
    name = "horizontal-pod-autoscaler"

    def __init__(
        self,
        client: LocalClient,
        informers: InformerFactory,
        *,
        clock: Clock | None = None,
        sync_period: float = SYNC_PERIOD,
    ) -> None:
        super().__init__(client, informers, clock=clock)
        self.sync_period = sync_period
        self.hpa_rt = client.resource("autoscaling", "horizontalpodautoscalers", "v2")
        self.pod_rt = client.resource("", "pods")
        self.metrics_rt = client.resource("metrics.k8s.io", "pods")
        self.hpa_informer = informers.informer(self.hpa_rt)
        self.pod_informer = informers.informer(self.pod_rt)
        self.recorder = events.EventRecorder(client, self.name, clock=clock)
        self.normalizer = behavior.Normalizer()
        self.hpa_informer.add_handler(
            on_add=self.enqueue, on_update=self._updated, on_delete=self.enqueue
        )

    def _updated(self, old: Obj, new: Obj) -> None:
        # Our own status writes come back as updates: only a spec change is news.
        if old["metadata"].get("generation") != new["metadata"].get("generation"):
            self.enqueue(new)

    # --- the loop ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        cached = self.hpa_informer.get_key(key)
        if cached is None:
            self.normalizer.forget(key)
            return
        try:
            await self._reconcile(key, copy.deepcopy(cached))
        finally:
            self.queue.add_after(key, self.sync_period)

    async def _reconcile(self, key: str, hpa: Obj) -> None:
        now = self.now()
        original = copy.deepcopy(hpa.get("status") or {})
        spec = hpa["spec"]
        ns = hpa["metadata"]["namespace"]
        ref = spec.get("scaleTargetRef") or {}
        try:
            target_rt, current, selector = self._scale(ref, ns)
        except errors.ApiError as exc:
            await self.recorder.event(hpa, events.WARNING, "FailedGetScale", exc.message)
            self._condition(
                hpa,
                (
                    "AbleToScale",
                    "False",
                    "FailedGetScale",
                    "the HPA controller was unable to get "
                    f"the target's current scale: {exc.message}",
                ),
                now,
            )
            await self._write_status(hpa, original)
            return
        self._condition(
            hpa,
            (
                "AbleToScale",
                "True",
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
            ),
            now,
        )
        self.normalizer.record_initial(key, current, now)
        lo, hi = int(spec.get("minReplicas") or 1), int(spec["maxReplicas"])
        statuses: list[Obj] = []
        rescale, desired, reason = True, 0, ""
        if current == 0 and lo != 0:
            rescale = False
            self._condition(
                hpa,
                (
                    "ScalingActive",
                    "False",
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                ),
                now,
            )
        elif current > hi:
            desired, reason = hi, "Current number of replicas above Spec.MaxReplicas"
        elif current < lo:
            desired, reason = lo, "Current number of replicas below Spec.MinReplicas"
        else:
            proposal, metric, statuses, error = await self._compute(hpa, current, selector, now)
            if proposal < 0:
                self._status(hpa, current, int(original.get("desiredReplicas") or 0), statuses)
                await self._write_status(hpa, original)
                await self.recorder.event(
                    hpa, events.WARNING, "FailedComputeMetricsReplicas", error
                )
                return
            desired = max(proposal, 0)
            if desired > current:
                reason = f"{metric} above target"
            elif desired < current:
                reason = "All metrics below target"
            desired, conditions = self.normalizer.normalize(key, spec, current, desired, lo, now)
            for c in conditions:
                self._condition(hpa, c, now)
            rescale = desired != current
        if rescale:
            try:
                await self._set_replicas(target_rt, ns, ref["name"], desired)
            except errors.ApiError as exc:
                await self.recorder.event(
                    hpa,
                    events.WARNING,
                    "FailedRescale",
                    f"New size: {desired}; reason: {reason}; error: {exc.message}",
                )
                self._condition(
                    hpa,
                    (
                        "AbleToScale",
                        "False",
                        "FailedUpdateScale",
                        f"the HPA controller was unable to update the target scale: {exc.message}",
                    ),
                    now,
                )
                self._status(hpa, current, int(original.get("desiredReplicas") or 0), statuses)
                await self._write_status(hpa, original)
                return
            self._condition(
                hpa,
                (
                    "AbleToScale",
                    "True",
                    "SucceededRescale",
                    f"the HPA controller was able to update the target scale to {desired}",
                ),
                now,
            )
            await self.recorder.event(
                hpa, events.NORMAL, "SuccessfulRescale", f"New size: {desired}; reason: {reason}"
            )
            self.normalizer.record_scale(key, spec.get("behavior"), current, desired, now)
            log.info(
                "%s: %s/%s scaled to %d: %s", key, ref.get("kind"), ref["name"], desired, reason
            )
        else:
            desired = current
        self._status(hpa, current, desired, statuses, scaled_at=now if rescale else None)
        await self._write_status(hpa, original)

    # --- the target's scale --------------------------------------------------------------

    def _scale(self, ref: Obj, ns: str) -> tuple[ResourceType, int, str]:
        """(kind, spec.replicas, selector) of the target, as its scale subresource shows them."""
        kind, name = ref.get("kind") or "", ref.get("name") or ""
        rt = self.client.resource_for(ref.get("apiVersion") or "v1", kind)
        if rt is None or "scale" not in rt.subresources:
            group = (ref.get("apiVersion") or "").rpartition("/")[0]
            raise errors.NotFound(f'no matches for kind "{kind}" in group "{group}"')
        obj = self.client.get(rt, ns, name)
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        selector = ""
        if isinstance(spec.get("selector"), dict):
            selector = str(LabelSelector.from_structured(spec["selector"]))
        elif isinstance(status.get("selector"), str):
            selector = status["selector"]
        return rt, int(spec.get("replicas") or 0), selector

    async def _set_replicas(self, rt: ResourceType, ns: str, name: str, count: int) -> None:
        def scale(obj: Obj) -> Obj:
            obj.setdefault("spec", {})["replicas"] = count
            return obj

        await self.client.mutate(rt, ns, name, scale)

    # --- metrics -------------------------------------------------------------------------

    async def _compute(
        self, hpa: Obj, current: int, selector: str, now: datetime
    ) -> tuple[int, str, list[Obj], str]:
        """(replicas or -1, metric name, metric statuses, error) (``computeReplicasForMetrics``)."""
        specs = hpa["spec"].get("metrics") or []
        if not selector:
            await self.recorder.event(
                hpa, events.WARNING, "SelectorRequired", "selector is required"
            )
            self._condition(
                hpa,
                (
                    "ScalingActive",
                    "False",
                    "InvalidSelector",
                    "the HPA target's scale is missing a selector",
                ),
                now,
            )
            return -1, "", [], "selector is required"
        try:
            sel = LabelSelector.parse(selector)
        except errors.ApiError as exc:
            await self.recorder.event(hpa, events.WARNING, "InvalidSelector", exc.message)
            self._condition(
                hpa,
                (
                    "ScalingActive",
                    "False",
                    "InvalidSelector",
                    f"the HPA target's scale has an invalid selector: {exc.message}",
                ),
                now,
            )
            return -1, "", [], exc.message
        statuses: list[Obj] = [{"type": ""} for _ in specs]  # upstream's zero MetricStatus
        proposal, metric = 0, ""
        invalid, first = 0, None
        for i, spec in enumerate(specs):
            try:
                count, name, statuses[i] = await self._metric(hpa, spec, current, sel, now)
            except _Failed as failed:
                if first is None:
                    first = failed
                invalid += 1
                continue
            if proposal == 0 or count > proposal:
                proposal, metric = count, name
        error = ""
        if first is not None:
            error = (
                f"invalid metrics ({invalid} invalid out of {len(specs)}), first error is: {first}"
            )
        if first is not None and (invalid >= len(specs) or proposal < current):
            self._condition(hpa, first.condition, now)
            return -1, "", statuses, error
        self._condition(
            hpa,
            (
                "ScalingActive",
                "True",
                "ValidMetricFound",
                f"the HPA was able to successfully calculate a replica count from {metric}",
            ),
            now,
        )
        return proposal, metric, statuses, error

    async def _metric(
        self, hpa: Obj, spec: Obj, current: int, selector: LabelSelector, now: datetime
    ) -> tuple[int, str, Obj]:
        kind = spec.get("type", "")
        if kind not in ("Resource", "ContainerResource"):
            reason = f"FailedGet{kind}Metric"
            error = (
                f"unable to get {kind} metric: the custom and external metrics APIs are not served"
            )
            await self.recorder.event(hpa, events.WARNING, reason, error)
            raise _Failed(
                (
                    "ScalingActive",
                    "False",
                    reason,
                    f"the HPA was unable to compute the replica count: {error}",
                ),
                f"failed to get {kind} metric value: {error}",
            )
        key = "resource" if kind == "Resource" else "containerResource"
        source = spec[key]
        resource, container = source["name"], source.get("container", "")
        what = "container resource" if container else "resource"
        ns = hpa["metadata"]["namespace"]
        try:
            count, value = self._resource(
                source.get("target") or {}, resource, container, ns, current, selector, now
            )
        except replicas.CalcError as exc:
            reason = "FailedGetContainerResourceMetric" if container else "FailedGetResourceMetric"
            await self.recorder.event(hpa, events.WARNING, reason, str(exc))
            raise _Failed(
                (
                    "ScalingActive",
                    "False",
                    reason,
                    f"the HPA was unable to compute the replica count: {exc}",
                ),
                f"failed to get {resource} {'container' if container else 'resource'} "
                f"metric value: {exc}",
            ) from exc
        name = f"{resource} {what}" + (
            " utilization (percentage of request)" if "averageUtilization" in value else ""
        )
        status = {"name": resource, "current": value}
        if container:
            status["container"] = container
        return count, name, {"type": kind, key: status}

    def _resource(
        self,
        target: Obj,
        resource: str,
        container: str,
        ns: str,
        current: int,
        selector: LabelSelector,
        now: datetime,
    ) -> tuple[int, Obj]:
        """(replicas, current value) of one Resource metric; CalcError says why not.

        The messages nest as upstream's: "failed to get cpu utilization: unable to get
        metrics for resource cpu: no metrics returned from resource metrics API".
        """
        if target.get("averageValue") is not None:
            prefix = f"failed to get {resource} usage"
        elif target.get("averageUtilization") is not None:
            prefix = f"failed to get {resource} utilization"
        else:
            raise replicas.CalcError(
                "invalid resource metric source: neither an average utilization target "
                "nor an average value (usage) target was set"
            )
        try:
            try:
                items = self.client.list(self.metrics_rt, ns, label_selector=selector).items
                metrics, _ = replicas.pod_metrics(items, resource, container)
            except replicas.CalcError as exc:
                raise replicas.CalcError(
                    f"unable to get metrics for resource {resource}: {exc}"
                ) from exc
            pods = self.pod_informer.list(ns, selector)
            if target.get("averageValue") is not None:
                wanted = quantity.milli(target["averageValue"])
                count, usage = replicas.raw_resource_replicas(
                    current, wanted, resource, pods, metrics, now
                )
                return count, {"averageValue": quantity.format_decimal(usage, -3)}
            count, percent, raw = replicas.resource_replicas(
                current, int(target["averageUtilization"]), resource, pods, metrics, now, container
            )
        except replicas.CalcError as exc:
            raise replicas.CalcError(f"{prefix}: {exc}") from exc
        value = {"averageUtilization": percent, "averageValue": quantity.format_decimal(raw, -3)}
        return count, value

    # --- status --------------------------------------------------------------------------

    def _condition(self, hpa: Obj, cond: behavior.Condition, now: datetime) -> None:
        """``setCondition``: the transition time moves only when the status does."""
        type_, status, reason, message = cond
        conds = hpa.setdefault("status", {}).setdefault("conditions", [])
        existing = next((c for c in conds if c.get("type") == type_), None)
        if existing is None:
            existing = {"type": type_}
            conds.append(existing)
        if existing.get("status") != status:
            existing["lastTransitionTime"] = fmt_time(now)
        existing.update(status=status, reason=reason, message=message)

    def _status(
        self,
        hpa: Obj,
        current: int,
        desired: int,
        metrics: list[Obj],
        *,
        scaled_at: datetime | None = None,
    ) -> None:
        old = hpa.get("status") or {}
        status: Obj = {"observedGeneration": hpa["metadata"].get("generation", 1)}
        if scaled_at is not None:
            status["lastScaleTime"] = fmt_time(scaled_at)
        elif old.get("lastScaleTime"):
            status["lastScaleTime"] = old["lastScaleTime"]
        if current:
            status["currentReplicas"] = current
        status["desiredReplicas"] = desired
        if metrics:
            status["currentMetrics"] = metrics
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        hpa["status"] = status

    async def _write_status(self, hpa: Obj, original: Obj) -> None:
        if hpa.get("status") == original:
            return
        await self.client.update_status(self.hpa_rt, hpa)
