"""HorizontalPodAutoscaler: v2 defaults and validation, v1 served by conversion from v2 storage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from microkube import errors
from microkube.resources.kinds import autoscaling
from microkube.resources.registry import Registry, WriteOptions
from tests.support.registry import open_registry

pytestmark = pytest.mark.anyio


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_registry(tmp_path) as reg:
        yield reg


def v2(reg: Registry) -> Any:
    return reg.catalog.get("autoscaling", "v2", "horizontalpodautoscalers")


def v1(reg: Registry) -> Any:
    return reg.catalog.get("autoscaling", "v1", "horizontalpodautoscalers")


def hpa_v2(name: str = "web", **spec: Any) -> dict[str, Any]:
    base = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "maxReplicas": 5,
    }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {**base, **spec},
    }


MEMORY = {
    "type": "Resource",
    "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}},
}


async def test_defaults_min_replicas_cpu_target_and_behavior_rules(registry: Registry) -> None:
    out = await registry.create(v2(registry), "default", hpa_v2())
    spec = out["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [autoscaling.cpu_utilization_metric(80)]
    assert "behavior" not in spec  # absent behavior stays absent: the controller's defaults
    out = await registry.create(
        v2(registry),
        "default",
        hpa_v2("b", behavior={"scaleDown": {"stabilizationWindowSeconds": 60}}),
    )
    behavior = out["spec"]["behavior"]
    assert behavior["scaleUp"] == autoscaling.scale_up_rules()
    assert behavior["scaleDown"] == {
        "stabilizationWindowSeconds": 60,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    }


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"minReplicas": 6}, "spec.maxReplicas"),
        ({"minReplicas": 0}, "spec.minReplicas"),
        ({"maxReplicas": 0}, "spec.maxReplicas"),
        ({"scaleTargetRef": {"kind": "Deployment"}}, "spec.scaleTargetRef.name"),
        (
            {
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization"}},
                    }
                ]
            },
            "spec.metrics[0].resource.target.averageUtilization",
        ),
        (
            {
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Value", "value": "1"}},
                    }
                ]
            },
            "spec.metrics[0].resource.target.type",
        ),
        ({"metrics": [{"type": "Bogus"}]}, "spec.metrics[0].type"),
        (
            {
                "behavior": {
                    "scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 0}]}
                }
            },
            "spec.behavior.scaleUp.policies[0].periodSeconds",
        ),
    ],
)
async def test_validation(registry: Registry, spec: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.Invalid) as exc:
        await registry.create(v2(registry), "default", hpa_v2(**spec))
    assert field in [c.field for c in exc.value.causes]


async def test_v1_create_is_stored_as_v2_and_served_in_both(registry: Registry) -> None:
    body = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 50,
        },
    }
    out = await registry.create(v1(registry), "default", body)
    assert out["apiVersion"] == "autoscaling/v1"
    assert out["spec"]["targetCPUUtilizationPercentage"] == 50
    assert "metrics" not in out["spec"] and "annotations" not in out["metadata"]
    raw = registry.store.get(v2(registry).key("default", "web"))
    assert raw is not None and raw.value["apiVersion"] == "autoscaling/v2"
    got = registry.get(v2(registry), "default", "web")
    assert got["spec"]["metrics"] == [autoscaling.cpu_utilization_metric(50)]
    assert [o["apiVersion"] for o in registry.list(v1(registry), "default").items] == [
        "autoscaling/v1"
    ]


async def test_v1_round_trip_keeps_what_only_v2_can_say(registry: Registry) -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    metrics = [MEMORY, autoscaling.cpu_utilization_metric(60)]
    await registry.create(v2(registry), "default", hpa_v2(metrics=metrics, behavior=behavior))
    status = {
        "currentReplicas": 2,
        "desiredReplicas": 3,
        "currentMetrics": [
            {
                "type": "Resource",
                "resource": {"name": "memory", "current": {"averageValue": "50Mi"}},
            },
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "current": {"averageUtilization": 90, "averageValue": "90m"},
                },
            },
        ],
        "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}],
    }

    def set_status(o: dict[str, Any]) -> dict[str, Any]:
        o["status"] = status
        return o

    await registry.guaranteed_update(
        v2(registry), "default", "web", set_status, subresource="status"
    )
    old = registry.get(v1(registry), "default", "web")
    anns = old["metadata"]["annotations"]
    assert old["spec"]["targetCPUUtilizationPercentage"] == 60
    assert json.loads(anns[autoscaling.METRICS_ANNOTATION]) == [MEMORY]
    assert autoscaling.BEHAVIOR_ANNOTATION in anns
    assert old["status"]["currentCPUUtilizationPercentage"] == 90
    assert "conditions" not in old["status"]
    # a v1 client edits and PUTs back what it read
    old["spec"]["maxReplicas"] = 7
    out, _ = await registry.update(v1(registry), "default", "web", old, WriteOptions())
    assert out["spec"]["maxReplicas"] == 7
    new = registry.get(v2(registry), "default", "web")
    assert new["spec"]["metrics"] == metrics
    assert new["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 0
    assert new["status"] == status
    assert "annotations" not in new["metadata"]
    # a merge patch through v1 changes the CPU target and keeps the memory metric
    out, _ = await registry.patch(
        v1(registry), "default", "web", "merge", {"spec": {"targetCPUUtilizationPercentage": 40}}
    )
    assert out["spec"]["targetCPUUtilizationPercentage"] == 40
    assert registry.get(v2(registry), "default", "web")["spec"]["metrics"] == [
        MEMORY,
        autoscaling.cpu_utilization_metric(40),
    ]


async def test_v1_dry_run_answers_v1(registry: Registry) -> None:
    body = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3},
    }
    out = await registry.create(v1(registry), "default", body, WriteOptions(dry_run=True))
    assert out["apiVersion"] == "autoscaling/v1"
    assert out["spec"]["targetCPUUtilizationPercentage"] == 80
    assert registry.try_get(v2(registry), "default", "web") is None


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (autoscaling.METRICS_ANNOTATION, "{bad"),
        (autoscaling.METRICS_ANNOTATION, "5"),
        (autoscaling.BEHAVIOR_ANNOTATION, "[]"),
    ],
)
async def test_v1_bad_annotations_are_400(registry: Registry, annotation: str, value: str) -> None:
    body = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "annotations": {annotation: value}},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 3},
    }
    with pytest.raises(errors.BadRequest, match=annotation):
        await registry.create(v1(registry), "default", body)


async def test_behavior_and_metrics_must_be_structured(registry: Registry) -> None:
    for spec in ({"behavior": "fast"}, {"metrics": "cpu"}):
        with pytest.raises(errors.BadRequest, match="cannot unmarshal"):
            await registry.create(v2(registry), "default", hpa_v2(**spec))
