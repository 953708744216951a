"""Table printing: columns and cells as upstream printers.go renders them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from microkube.resources import printers
from microkube.resources.catalog import default_catalog
from microkube.resources.types import ResourceType

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CAT = default_catalog()


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rt(group: str, kind: str) -> ResourceType:
    found = CAT.by_kind(group, kind)
    assert found is not None
    return found


def cells(group: str, kind: str, obj: dict) -> dict:
    table = printers.table_for(rt(group, kind), [obj], now=NOW)
    names = [c["name"] for c in table["columnDefinitions"]]
    return dict(zip(names, table["rows"][0]["cells"], strict=True))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-1.5, "0s"),
        (-5, "<invalid>"),
        (5, "5s"),
        (119, "119s"),
        (200, "3m20s"),
        (240, "4m"),
        (11 * 60 + 5, "11m"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (10 * 3600, "10h"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (9 * 86400, "9d"),
        (800 * 86400, "2y70d"),
        (3000 * 86400, "8y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert printers.human_duration(seconds) == text


def _pod(status: dict, *, spec: dict | None = None, meta: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "default",
            "creationTimestamp": ts(90),
            **(meta or {}),
        },
        "spec": spec or {"containers": [{"name": "a", "image": "busybox"}], "nodeName": "node1"},
        "status": status,
    }


def test_pod_columns_and_running_row() -> None:
    pod = _pod(
        {
            "phase": "Running",
            "podIP": "10.1.0.5",
            "podIPs": [{"ip": "10.1.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "a",
                    "ready": True,
                    "restartCount": 3,
                    "state": {"running": {"startedAt": ts(20)}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ts(12)}},
                }
            ],
        }
    )
    table = printers.table_for(rt("", "Pod"), [pod], now=NOW)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [(c["name"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ]
    assert table["columnDefinitions"][0]["format"] == "name"
    assert table["rows"][0]["cells"] == [
        "p",
        "1/1",
        "Running",
        "3 (12s ago)",
        "90s",
        "10.1.0.5",
        "node1",
        "<none>",
        "<none>",
    ]
    obj = table["rows"][0]["object"]
    assert obj["kind"] == "PartialObjectMetadata" and obj["metadata"]["namespace"] == "default"


def test_pod_statuses() -> None:
    assert cells("", "Pod", _pod({"phase": "Pending"}))["Status"] == "Pending"
    crash = _pod(
        {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "a",
                    "ready": False,
                    "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                }
            ],
        }
    )
    c = cells("", "Pod", crash)
    assert (c["Status"], c["Ready"], c["Restarts"]) == ("CrashLoopBackOff", "0/1", "5")
    init = _pod(
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "i1", "ready": False, "restartCount": 0, "state": {"running": {}}},
                {
                    "name": "i2",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}},
                },
            ],
        },
        spec={
            "initContainers": [{"name": "i1", "image": "x"}, {"name": "i2", "image": "x"}],
            "containers": [{"name": "a", "image": "x"}],
        },
    )
    assert cells("", "Pod", init)["Status"] == "Init:0/2"
    done = _pod(
        {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "a",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                }
            ],
        }
    )
    table = printers.table_for(rt("", "Pod"), [done], now=NOW)
    assert table["rows"][0]["cells"][2] == "Completed"
    assert table["rows"][0]["conditions"][0]["type"] == "Completed"
    terminating = _pod({"phase": "Running"}, meta={"deletionTimestamp": ts(1)})
    assert cells("", "Pod", terminating)["Status"] == "Terminating"
    failed_init = _pod(
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}
            ],
        },
        spec={
            "initContainers": [{"name": "i1", "image": "x"}],
            "containers": [{"name": "a", "image": "x"}],
        },
    )
    assert cells("", "Pod", failed_init)["Status"] == "Init:ExitCode:2"


def test_deployment_and_replicaset() -> None:
    dep = {
        "metadata": {"name": "web", "creationTimestamp": ts(200)},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.25"},
                        {"name": "side", "image": "busybox"},
                    ]
                }
            },
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells("apps", "Deployment", dep) == {
        "Name": "web",
        "Ready": "2/3",
        "Up-to-date": 3,
        "Available": 2,
        "Age": "3m20s",
        "Containers": "nginx,side",
        "Images": "nginx:1.25,busybox",
        "Selector": "app=web",
    }
    rs = cells("apps", "ReplicaSet", {**dep, "status": {"replicas": 3, "readyReplicas": 1}})
    assert (rs["Desired"], rs["Current"], rs["Ready"]) == (3, 3, 1)
    sts = cells("apps", "StatefulSet", {**dep, "status": {"readyReplicas": 1}})
    assert sts["Ready"] == "1/3"


def test_service_ports_and_ips() -> None:
    svc = {
        "metadata": {"name": "web", "creationTimestamp": ts(5)},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.152.183.10",
            "clusterIPs": ["10.152.183.10"],
            "ports": [
                {"port": 80, "protocol": "TCP"},
                {"port": 443, "nodePort": 30443, "protocol": "TCP"},
            ],
            "selector": {"app": "web", "tier": "fe"},
        },
    }
    assert cells("", "Service", svc) == {
        "Name": "web",
        "Type": "NodePort",
        "Cluster-IP": "10.152.183.10",
        "External-IP": "<none>",
        "Port(s)": "80/TCP,443:30443/TCP",
        "Age": "5s",
        "Selector": "app=web,tier=fe",
    }
    lb = {**svc, "spec": {**svc["spec"], "type": "LoadBalancer"}}
    assert cells("", "Service", lb)["External-IP"] == "<pending>"
    headless = {"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}
    c = cells("", "Service", headless)
    assert (c["Type"], c["Cluster-IP"], c["Port(s)"], c["Age"]) == (
        "ClusterIP",
        "None",
        "<none>",
        "<unknown>",
    )


def test_jobs_cronjobs_nodes_events() -> None:
    job = {
        "metadata": {"name": "j", "creationTimestamp": ts(100)},
        "spec": {"completions": 1, "template": {"spec": {"containers": []}}},
        "status": {
            "succeeded": 1,
            "startTime": ts(100),
            "completionTime": ts(90),
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    c = cells("batch", "Job", job)
    assert (c["Status"], c["Completions"], c["Duration"]) == ("Complete", "1/1", "10s")
    cj = cells(
        "batch",
        "CronJob",
        {"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "suspend": False}},
    )
    assert (cj["Schedule"], cj["Timezone"], cj["Suspend"], cj["Active"], cj["Last Schedule"]) == (
        "*/5 * * * *",
        "<none>",
        "False",
        0,
        "<none>",
    )
    node = {
        "metadata": {
            "name": "n1",
            "labels": {"node-role.kubernetes.io/control-plane": ""},
            "creationTimestamp": ts(3 * 86400),
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.4"}],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0",
                "osImage": "Debian",
                "kernelVersion": "6.1",
                "containerRuntimeVersion": "podman://4.9",
            },
        },
    }
    n = cells("", "Node", node)
    assert (
        n["Status"],
        n["Roles"],
        n["Age"],
        n["Version"],
        n["Internal-IP"],
        n["External-IP"],
    ) == (
        "Ready,SchedulingDisabled",
        "control-plane",
        "3d",
        "v1.32.0",
        "192.0.2.4",
        "<none>",
    )
    ev = {
        "metadata": {"name": "p.1"},
        "involvedObject": {"kind": "Pod", "name": "p"},
        "reason": "Pulled",
        "type": "Normal",
        "message": "ok ",
        "firstTimestamp": ts(60),
        "lastTimestamp": ts(30),
        "count": 2,
        "source": {"component": "kubelet", "host": "n1"},
    }
    e = cells("", "Event", ev)
    assert (e["Last Seen"], e["Object"], e["Message"], e["Count"], e["Source"], e["Name"]) == (
        "30s",
        "pod/p",
        "ok",
        2,
        "kubelet, n1",
        "p.1",
    )


def test_config_and_default_printers() -> None:
    assert (
        cells("", "ConfigMap", {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})["Data"]
        == 2
    )
    s = cells(
        "", "Secret", {"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"a": ""}}
    )
    assert (s["Type"], s["Data"]) == ("kubernetes.io/tls", 1)
    crd = printers.table_for(
        rt("apiextensions.k8s.io", "CustomResourceDefinition"),
        [{"metadata": {"name": "x", "creationTimestamp": "2024-01-02T03:04:05Z"}}],
        now=NOW,
    )
    assert [c["name"] for c in crd["columnDefinitions"]] == ["Name", "Created At"]
    assert crd["rows"][0]["cells"] == ["x", "2024-01-02T03:04:05Z"]
    limit = printers.table_for(
        rt("", "LimitRange"), [{"metadata": {"name": "l", "creationTimestamp": ts(5)}}], now=NOW
    )
    assert limit["rows"][0]["cells"] == ["l", "5s"]
    ep = cells(
        "",
        "Endpoints",
        {
            "metadata": {"name": "e"},
            "subsets": [
                {"addresses": [{"ip": f"10.0.0.{i}"} for i in range(5)], "ports": [{"port": 80}]}
            ],
        },
    )
    assert ep["Endpoints"] == "10.0.0.0:80,10.0.0.1:80,10.0.0.2:80 + 2 more..."


def test_include_object_modes() -> None:
    obj = {"metadata": {"name": "c", "labels": {"a": "b"}}, "data": {}}
    full = printers.table_for(rt("", "ConfigMap"), [obj], include_object="Object", now=NOW)
    assert full["rows"][0]["object"] is obj
    none = printers.table_for(rt("", "ConfigMap"), [obj], include_object="None", now=NOW)
    assert "object" not in none["rows"][0]


def test_crd_additional_printer_columns() -> None:
    widgets = ResourceType("example.com", "v1", "Widget", "widgets")
    columns = [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {
            "name": "Owner",
            "type": "string",
            "jsonPath": ".spec.owner",
            "priority": 1,
            "description": "who",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    obj = {
        "metadata": {"name": "w", "creationTimestamp": ts(600)},
        "spec": {"size": 3},
        "status": {
            "conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True"},
            ]
        },
    }
    table = printers.table_for(widgets, [obj], now=NOW, columns=columns)
    assert [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", 0),
        ("Size", "integer", 0),
        ("Ready", "string", 0),
        ("Owner", "string", 1),
        ("Age", "date", 0),
    ]
    assert table["rows"][0]["cells"] == ["w", 3, "True", None, "10m"]
    default = printers.table_for(widgets, [obj], now=NOW)
    assert [c["name"] for c in default["columnDefinitions"]] == ["Name", "Age"]
    assert default["rows"][0]["cells"] == ["w", "10m"]
    assert printers.jsonpath({"a": [{"b": 1}, {"b": 2}]}, "{.a[*].b}") == [1, 2]
    assert printers.jsonpath({"a": {"x.y": 1}}, ".a['x.y']") == [1]
