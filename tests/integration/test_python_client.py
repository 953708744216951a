"""The official ``kubernetes`` Python client against a real microkube."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.support.server import Server


@pytest.fixture(scope="module")
def api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(str(kubeconfig))


@pytest.fixture
def ns(api: client.ApiClient) -> str:
    name = "py-" + uuid.uuid4().hex[:8]
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # As on any cluster, a new namespace soon holds the published root CA; wait for it
    # so the tests below see only their own changes.
    deadline = time.monotonic() + 10
    while not core.list_namespaced_config_map(name, field_selector="metadata.name=kube-root-ca.crt").items:
        assert time.monotonic() < deadline, "kube-root-ca.crt was not published"
        time.sleep(0.05)
    return name


def test_crud_and_errors(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "a", "labels": {"k": "v"}}, "data": {"x": "1"}})
    assert cm.metadata.uid and cm.metadata.resource_version
    got = core.read_namespaced_config_map("a", ns)
    assert got.data == {"x": "1"}
    lst = core.list_namespaced_config_map(ns, label_selector="k=v")
    assert [i.metadata.name for i in lst.items] == ["a"]
    patched = core.patch_namespaced_config_map("a", ns, {"data": {"y": "2"}})
    assert patched.data == {"x": "1", "y": "2"}
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "a"}})
    assert exc.value.status == 409 and '"reason":"AlreadyExists"' in exc.value.body
    stale = core.read_namespaced_config_map("a", ns)
    stale.data["z"] = "3"
    core.replace_namespaced_config_map("a", ns, stale)
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("a", ns, stale)
    assert exc.value.status == 409 and '"reason":"Conflict"' in exc.value.body
    core.delete_namespaced_config_map("a", ns)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("a", ns)
    assert exc.value.status == 404


def test_pagination(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    for i in range(7):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"p{i}"}})
    names: list[str] = []
    cont = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(ns, limit=3, _continue=cont)
        pages += 1
        names += [i.metadata.name for i in page.items]
        cont = page.metadata._continue
        if not cont:
            break
    assert pages == 3 and names == ["kube-root-ca.crt"] + [f"p{i}" for i in range(7)]


def test_watch_sees_every_change_in_order(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    events: list[tuple[str, str]] = []
    w = watch.Watch()

    def run() -> None:
        for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10):
            events.append((ev["type"], ev["object"].metadata.name))
            if len(events) == 4:
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    core.create_namespaced_config_map(ns, {"metadata": {"name": "w"}})
    core.patch_namespaced_config_map("w", ns, {"data": {"a": "b"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "w2"}})
    core.delete_namespaced_config_map("w", ns)
    t.join(15)
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("ADDED", "w2"), ("DELETED", "w")]


def test_apps_scale_and_status_subresources(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    body = {
        "metadata": {"name": "d"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
        },
    }
    d = apps.create_namespaced_deployment(ns, body)
    assert d.metadata.generation == 1
    scale = apps.patch_namespaced_deployment_scale("d", ns, {"spec": {"replicas": 3}})
    assert scale.spec.replicas == 3
    assert apps.read_namespaced_deployment("d", ns).spec.replicas == 3
    # Status writes ignore spec; main writes ignore status (on a kind no controller touches).
    core = client.CoreV1Api(api)
    core.create_namespaced_resource_quota(ns, {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "5"}}, "status": {"used": {"pods": "4"}}})
    q = core.read_namespaced_resource_quota("q", ns)
    assert q.status is None or not q.status.used
    q.spec.hard = {"pods": "9"}
    q.status = client.V1ResourceQuotaStatus(hard={"pods": "5"}, used={"pods": "1"})
    core.replace_namespaced_resource_quota_status("q", ns, q)
    after = core.read_namespaced_resource_quota("q", ns)
    assert after.spec.hard == {"pods": "5"} and after.status.used == {"pods": "1"}
    after.status.used = {"pods": "3"}
    after.spec.hard = {"pods": "7"}
    core.replace_namespaced_resource_quota("q", ns, after)
    final = core.read_namespaced_resource_quota("q", ns)
    assert final.spec.hard == {"pods": "7"} and final.status.used == {"pods": "1"}


def test_dry_run_and_delete_with_finalizers(api: client.ApiClient, ns: str, server: Server) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "dry"}}, dry_run="All")
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", ns)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "fin", "finalizers": ["example.com/x"]}})
    code, body = server.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/fin")
    assert code == 202 and body["metadata"]["deletionTimestamp"]
    assert core.read_namespaced_config_map("fin", ns).metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("fin", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("fin", ns)
    assert exc.value.status == 404


def test_binding_subresource(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    pod = {"metadata": {"name": "b"}, "spec": {"schedulerName": "my-scheduler", "containers": [{"name": "c", "image": "busybox"}]}}
    core.create_namespaced_pod(ns, pod)
    node = core.list_node().items[0].metadata.name
    target = client.V1ObjectReference(api_version="v1", kind="Node", name=node)
    body = client.V1Binding(metadata=client.V1ObjectMeta(name="b"), target=target)
    core.create_namespaced_pod_binding("b", ns, body, _preload_content=False)
    got = core.read_namespaced_pod("b", ns)
    assert got.spec.node_name == node
    assert any(c.type == "PodScheduled" and c.status == "True" for c in got.status.conditions)
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod_binding("b", ns, body, _preload_content=False)
    assert exc.value.status == 409 and "is already assigned to node" in exc.value.body
