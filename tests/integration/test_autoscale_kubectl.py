"""``kubectl top`` and ``kubectl autoscale`` against a real server with ``--runtime fake``.

The fake runtime's pods use what their container env declares
(``MICROKUBE_FAKE_CPU``/``MICROKUBE_FAKE_MEMORY``), else their requests, so
the HorizontalPodAutoscaler sees a known utilization.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import yaml

from tests.support.server import Kubectl

pytestmark = pytest.mark.kubectl
T = TypeVar("T")


def until(fn: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        out = fn()
        if out:
            return out
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.5)


def deployment(name: str, replicas: int, cpu: str, **env: str) -> dict[str, Any]:
    container = {
        "name": "app",
        "image": "nginx",
        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}},
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }


def test_top_pods_containers_and_node(kubectl132: Kubectl) -> None:
    k = kubectl132
    body = deployment("top", 2, "100m", MICROKUBE_FAKE_CPU="40m", MICROKUBE_FAKE_MEMORY="48Mi")
    k("apply", "-f", "-", input=yaml.safe_dump(body))

    def top() -> str | None:
        p = k("top", "pod", "-l", "app=top", check=False)
        return p.stdout if p.returncode == 0 and p.stdout.count("top-") == 2 else None

    out = until(top)
    assert out.splitlines()[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    for line in out.splitlines()[1:]:
        assert line.split()[1:] == ["40m", "48Mi"], out
    out = k("top", "pod", "-l", "app=top", "--containers").stdout
    assert out.splitlines()[0].split() == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert all(line.split()[1:] == ["app", "40m", "48Mi"] for line in out.splitlines()[1:])
    raw = json.loads(
        k("get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods").stdout
    )
    (item, *_) = [i for i in raw["items"] if i["metadata"]["name"].startswith("top-")]
    assert item["containers"] == [{"name": "app", "usage": {"cpu": "40m", "memory": "48Mi"}}]
    assert item["window"].endswith("s") and item["timestamp"].endswith("Z")
    node = until(lambda: (p := k("top", "node", check=False)).returncode == 0 and p.stdout)
    header, row = node.splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert row.split()[1].endswith("m") and row.split()[3].endswith("Mi")
    # read-only: anything but get/list is refused
    p = k("delete", "podmetrics", item["metadata"]["name"], check=False)
    assert p.returncode != 0 and "MethodNotAllowed" in p.stderr
    k("delete", "deployment", "top")


def test_autoscale_scales_a_deployment_up_to_max(kubectl132: Kubectl) -> None:
    k = kubectl132
    # every pod uses 100m of a 100m request: 100 % against a 50 % target
    k("apply", "-f", "-", input=yaml.safe_dump(deployment("auto", 1, "100m")))
    out = k("autoscale", "deploy", "auto", "--cpu-percent=50", "--min=1", "--max=3").stdout
    assert "horizontalpodautoscaler.autoscaling/auto autoscaled" in out

    def hpa() -> dict[str, Any]:
        return dict(json.loads(k("get", "hpa", "auto", "-o", "json").stdout))

    def replicas() -> int:
        return int(json.loads(k("get", "deploy", "auto", "-o", "json").stdout)["spec"]["replicas"])

    until(lambda: replicas() == 3, timeout=90)  # 1 → 2 (metrics of one pod) → 3 (max)
    status = until(lambda: (h := hpa())["status"].get("currentReplicas") == 3 and h["status"])
    assert status["desiredReplicas"] == 3 and status.get("lastScaleTime")
    conds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conds["AbleToScale"][0] == "True"
    assert conds["ScalingActive"] == ("True", "ValidMetricFound")
    assert conds["ScalingLimited"] == ("True", "TooManyReplicas")
    table = k("get", "hpa", "auto").stdout
    header, row = table.splitlines()
    assert header.split() == [
        "NAME",
        "REFERENCE",
        "TARGETS",
        "MINPODS",
        "MAXPODS",
        "REPLICAS",
        "AGE",
    ]
    assert row.split()[:7] == ["auto", "Deployment/auto", "cpu:", "100%/50%", "1", "3", "3"]
    described = k("describe", "hpa", "auto").stdout
    assert "SuccessfulRescale" in described and "New size: 3" in described
    v1 = json.loads(
        k("get", "horizontalpodautoscalers.v1.autoscaling", "auto", "-o", "json").stdout
    )
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 50
    assert v1["status"]["currentCPUUtilizationPercentage"] == 100
    k("delete", "hpa", "auto")
    k("delete", "deployment", "auto")
