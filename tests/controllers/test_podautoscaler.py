"""HorizontalPodAutoscaler controller: preload a target, pods and their metrics, reconcile, assert."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers.base import fmt_time
from microkube.controllers.podautoscaler import HorizontalPodAutoscalerController, replicas
from microkube.resources import metrics
from microkube.resources.types import ResourceType
from tests.support.pods import ready_status

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
LONG_AGO = fmt_time(T0 - timedelta(hours=1))
CPU_NAME = "cpu resource utilization (percentage of request)"


@dataclass
class U:
    name: str
    cpu_nanocores: int
    memory_bytes: int
    timestamp: datetime
    window: float = 15.0


class Provider:
    """Usage per pod UID, as the kubelet's stats collector would report it."""

    def __init__(self) -> None:
        self.usage: dict[str, tuple[str, str]] = {}  # uid -> (cpu, memory) per container
        self.at = T0

    def node_usage(self, name: str) -> None:
        return None

    def pod_usage(self, uid: str) -> list[U] | None:
        if uid not in self.usage:
            return None
        cpu, memory = self.usage[uid]
        return [
            U(
                "c",
                replicas.quantity.milli(cpu) * 10**6,
                replicas.quantity.value(memory),
                self.at,
            )
        ]


class Env:
    def __init__(self, client: LocalClient, informers: InformerFactory) -> None:
        self.client = client
        self.informers = informers
        self.now = T0
        self.provider = Provider()
        metrics.install(client.registry, self.provider)
        self.ctrl = HorizontalPodAutoscalerController(client, informers, clock=lambda: self.now)
        self.deploy_rt = client.resource("apps", "deployments")
        self.pod_rt = client.resource("", "pods")
        self.hpa_rt = self.ctrl.hpa_rt

    async def deployment(self, name: str = "web", replicas: int = 2) -> None:
        await self.client.create(
            self.deploy_rt,
            "default",
            {
                "metadata": {"name": name},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                    },
                },
            },
        )

    async def pod(
        self,
        name: str,
        *,
        app: str = "web",
        cpu: str | None = None,
        memory: str | None = None,
        request: dict[str, str] | None = None,
        phase: str = "Running",
    ) -> dict[str, Any]:
        requests = {"cpu": "100m", "memory": "100Mi"} if request is None else request
        pod = await self.client.create(
            self.pod_rt,
            "default",
            {
                "metadata": {"name": name, "labels": {"app": app}},
                "spec": {
                    "containers": [
                        {"name": "c", "image": "nginx", "resources": {"requests": requests}}
                    ]
                },
            },
        )

        def status(o: dict[str, Any]) -> dict[str, Any]:
            o["status"] = ready_status(o, since=LONG_AGO)
            o["status"]["phase"] = phase
            return o

        await self.client.mutate(self.pod_rt, "default", name, status, subresource="status")
        if cpu is not None or memory is not None:
            self.provider.usage[pod["metadata"]["uid"]] = (cpu or "0", memory or "0")
        return pod

    async def hpa(self, name: str = "web", **spec: Any) -> None:
        body = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 10,
                "metrics": [cpu_target(50)],
                **spec,
            },
        }
        await self.client.create(self.hpa_rt, "default", body)

    async def sync(self, key: str = "default/web") -> dict[str, Any]:
        self.provider.at = self.now
        self.informers.prime()
        await self.ctrl.reconcile(key)
        self.informers.prime()
        return self.client.get(self.hpa_rt, "default", key.split("/")[1])

    def replicas(self, name: str = "web") -> int:
        return int(self.client.get(self.deploy_rt, "default", name)["spec"]["replicas"])

    def events(self) -> list[tuple[str, str, str]]:
        evs = self.client.list(self.client.resource("", "events"), "default").items
        return [(e["type"], e["reason"], e["message"]) for e in evs]


def cpu_target(percent: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": percent},
        },
    }


def conditions(hpa: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in hpa["status"]["conditions"]}


@pytest.fixture
def env(client: LocalClient, informers: InformerFactory) -> Env:
    return Env(client, informers)


async def test_scale_up_on_cpu_utilization(env: Env) -> None:
    await env.deployment(replicas=2)
    await env.pod("a", cpu="100m")
    await env.pod("b", cpu="100m")
    await env.pod("other", app="db", cpu="1")  # not selected
    await env.hpa()
    hpa = await env.sync()
    assert env.replicas() == 4  # 100 % / 50 % = 2 × 2 pods
    st = hpa["status"]
    assert st["currentReplicas"] == 2 and st["desiredReplicas"] == 4
    assert st["lastScaleTime"] == fmt_time(T0)
    assert st["currentMetrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "current": {"averageUtilization": 100, "averageValue": "100m"},
            },
        }
    ]
    assert conditions(hpa) == {
        "AbleToScale": ("True", "SucceededRescale"),
        "ScalingActive": ("True", "ValidMetricFound"),
        "ScalingLimited": ("False", "DesiredWithinRange"),
    }
    assert ("Normal", "SuccessfulRescale", f"New size: 4; reason: {CPU_NAME} above target") in (
        env.events()
    )
    v1 = env.client.get(
        env.client.resource("autoscaling", "horizontalpodautoscalers", "v1"), "default", "web"
    )
    assert v1["status"]["currentCPUUtilizationPercentage"] == 100


async def test_within_tolerance_keeps_the_scale(env: Env) -> None:
    await env.deployment(replicas=2)
    await env.pod("a", cpu="52m")
    await env.pod("b", cpu="54m")
    await env.hpa()
    hpa = await env.sync()
    assert env.replicas() == 2
    assert hpa["status"]["desiredReplicas"] == 2 and "lastScaleTime" not in hpa["status"]
    assert conditions(hpa)["AbleToScale"] == ("True", "ReadyForNewScale")
    assert hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 53


async def test_scale_up_rate_and_max_limits(env: Env) -> None:
    await env.deployment(replicas=1)
    await env.pod("a", cpu="500m")  # 500 % of its request: wants 10
    await env.hpa()
    hpa = await env.sync()
    assert env.replicas() == 4  # at most max(2 × 1, 4) at once
    assert conditions(hpa)["ScalingLimited"] == ("True", "ScaleUpLimit")
    await env.client.patch(env.hpa_rt, "default", "web", {"spec": {"maxReplicas": 3}})
    await env.client.mutate(
        env.deploy_rt, "default", "web", lambda d: {**d, "spec": {**d["spec"], "replicas": 1}}
    )
    hpa = await env.sync()
    assert env.replicas() == 3
    assert conditions(hpa)["ScalingLimited"] == ("True", "TooManyReplicas")


async def test_scale_down_waits_for_the_stabilization_window(env: Env) -> None:
    await env.deployment(replicas=4)
    for name in "abcd":
        await env.pod(name, cpu="10m")
    await env.hpa()
    hpa = await env.sync()
    assert env.replicas() == 4  # the initial recommendation (4) is less than 5 min old
    assert conditions(hpa)["AbleToScale"] == ("True", "ScaleDownStabilized")
    assert hpa["status"]["desiredReplicas"] == 4
    env.now = T0 + timedelta(minutes=5, seconds=1)
    hpa = await env.sync()
    assert env.replicas() == 1  # 4 pods at 10 % of a 50 % target: ceil(0.2 × 4)
    assert ("Normal", "SuccessfulRescale", "New size: 1; reason: All metrics below target") in (
        env.events()
    )


async def test_behavior_policies_limit_the_scale_down_rate(env: Env) -> None:
    await env.deployment(replicas=6)
    for name in "abcdef":
        await env.pod(name, cpu="5m")
    down = {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
    }
    await env.hpa(behavior={"scaleDown": down})
    hpa = await env.sync()
    assert env.replicas() == 4
    assert conditions(hpa)["ScalingLimited"] == ("True", "ScaleDownLimit")
    env.now += timedelta(seconds=15)
    await env.sync()
    assert env.replicas() == 4  # two pods already went in this 60 s period
    env.now += timedelta(seconds=46)
    await env.sync()
    assert env.replicas() == 2


async def test_behavior_scale_up_stabilization_window(env: Env) -> None:
    await env.deployment(replicas=2)
    await env.pod("a", cpu="100m")
    await env.pod("b", cpu="100m")
    up = {"stabilizationWindowSeconds": 60}
    await env.hpa(behavior={"scaleUp": up})
    hpa = await env.sync()  # the initial recommendation (2) is in the window
    assert env.replicas() == 2
    assert conditions(hpa)["AbleToScale"] == ("True", "ScaleUpStabilized")
    env.now += timedelta(seconds=61)
    await env.sync()
    assert env.replicas() == 4


async def test_average_value_memory_target(env: Env) -> None:
    await env.deployment(replicas=2)
    await env.pod("a", memory="200Mi")
    await env.pod("b", memory="200Mi")
    target = {"type": "AverageValue", "averageValue": "100Mi"}
    await env.hpa(metrics=[{"type": "Resource", "resource": {"name": "memory", "target": target}}])
    hpa = await env.sync()
    assert env.replicas() == 4
    assert hpa["status"]["currentMetrics"][0]["resource"]["current"] == {
        "averageValue": "209715200"
    }
    assert ("Normal", "SuccessfulRescale", "New size: 4; reason: memory resource above target") in (
        env.events()
    )


async def test_unready_pods_make_scale_up_pessimistic(env: Env) -> None:
    await env.deployment(replicas=2)
    await env.pod("a", cpu="100m")
    await env.pod("b", cpu="100m", phase="Pending")  # counted as 0 when scaling up
    await env.hpa()
    hpa = await env.sync()
    assert env.replicas() == 2  # (100 + 0) / 2 pods = 50 %: on target
    assert hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 100


async def test_no_metrics_is_reported_and_changes_nothing(env: Env) -> None:
    await env.deployment(replicas=2)
    await env.pod("a")
    await env.hpa()
    hpa = await env.sync()
    assert env.replicas() == 2
    assert conditions(hpa)["ScalingActive"] == ("False", "FailedGetResourceMetric")
    assert hpa["status"]["currentMetrics"] == [{"type": ""}]
    error = (
        "failed to get cpu utilization: unable to get metrics for resource cpu: "
        "no metrics returned from resource metrics API"
    )
    assert ("Warning", "FailedGetResourceMetric", error) in env.events()
    assert (
        "Warning",
        "FailedComputeMetricsReplicas",
        f"invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource "
        f"metric value: {error}",
    ) in env.events()


async def test_missing_request(env: Env) -> None:
    await env.deployment(replicas=1)
    await env.pod("a", cpu="100m", request={})
    await env.hpa()
    hpa = await env.sync()
    cond = next(c for c in hpa["status"]["conditions"] if c["type"] == "ScalingActive")
    assert cond["message"] == (
        "the HPA was unable to compute the replica count: failed to get cpu utilization: "
        "missing request for cpu in container c of Pod a"
    )


async def test_replicas_outside_bounds_and_disabled(env: Env) -> None:
    await env.deployment(replicas=12)
    await env.hpa()
    hpa = await env.sync()
    assert env.replicas() == 10
    assert hpa["status"]["lastScaleTime"] == fmt_time(T0)
    assert (
        "Normal",
        "SuccessfulRescale",
        "New size: 10; reason: Current number of replicas above Spec.MaxReplicas",
    ) in env.events()
    await env.client.mutate(
        env.deploy_rt, "default", "web", lambda d: {**d, "spec": {**d["spec"], "replicas": 0}}
    )
    hpa = await env.sync()
    assert env.replicas() == 0
    assert conditions(hpa)["ScalingActive"] == ("False", "ScalingDisabled")


async def test_missing_target(env: Env) -> None:
    await env.hpa()
    hpa = await env.sync()
    cond = next(c for c in hpa["status"]["conditions"] if c["type"] == "AbleToScale")
    assert (cond["status"], cond["reason"]) == ("False", "FailedGetScale")
    assert cond["message"] == (
        "the HPA controller was unable to get the target's current scale: "
        'deployments.apps "web" not found'
    )
    assert ("Warning", "FailedGetScale", 'deployments.apps "web" not found') in env.events()


async def test_custom_resource_with_scale(env: Env) -> None:
    widgets = ResourceType(
        "example.com", "v1", "Widget", "widgets", subresources=("status", "scale")
    )
    env.client.registry.catalog.register(widgets)
    await env.client.create(
        widgets,
        "default",
        {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w"},
            "spec": {"replicas": 1},
        },
    )

    def status(o: dict[str, Any]) -> dict[str, Any]:
        o["status"] = {"replicas": 1, "selector": "app=web"}
        return o

    await env.client.mutate(widgets, "default", "w", status, subresource="status")
    await env.pod("a", cpu="200m")
    ref = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w"}
    await env.hpa(scaleTargetRef=ref)
    await env.sync()
    assert env.client.get(widgets, "default", "w")["spec"]["replicas"] == 4


async def test_resync_and_deletion(env: Env) -> None:
    await env.deployment(replicas=2)
    await env.hpa()
    await env.sync()
    assert "default/web" in env.ctrl.queue.delayed()
    await env.client.delete(env.hpa_rt, "default", "web")
    env.informers.prime()
    await env.ctrl.reconcile("default/web")
    assert "default/web" not in env.ctrl.normalizer._state  # noqa: SLF001


def test_pod_metrics_parsing() -> None:
    items = [
        {
            "metadata": {"name": "a"},
            "timestamp": "2026-03-01T12:00:00Z",
            "window": "1m0.5s",
            "containers": [
                {"name": "x", "usage": {"cpu": "12345678n", "memory": "1Ki"}},
                {"name": "y", "usage": {"cpu": "1m", "memory": "1Ki"}},
            ],
        },
        {
            "metadata": {"name": "b"},
            "timestamp": "2026-03-01T12:00:00Z",
            "window": "500ms",
            "containers": [{"name": "x", "usage": {"memory": "1Ki"}}],
        },
    ]
    got, stamp = replicas.pod_metrics(items, "cpu")
    assert set(got) == {"a"}  # b lacks cpu
    assert got["a"].value == 13 + 1 and got["a"].window == timedelta(seconds=60.5)
    assert stamp == T0
    assert replicas.pod_metrics(items, "cpu", "y")[0]["a"].value == 1
    with pytest.raises(replicas.CalcError, match="no metrics returned"):
        replicas.pod_metrics([], "cpu")
