"""Jobs, CronJobs and StatefulSets with the real kubectl 1.32 against a real server.

No kubelet runs the pods here: a background thread plays kubelet through
``pods/status`` — Job pods succeed (exit code 0), other pods become Running
and Ready.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import make_kubectl, serve
from tests.support.pods import poll_until, ready_status, stand_in_kubelet
from tests.support.server import Kubectl, Server

pytestmark = pytest.mark.kubectl


def _status(pod: dict) -> dict:
    """Job pods succeed (exit code 0); other pods become Running and Ready."""
    owners = {r.get("kind") for r in pod["metadata"].get("ownerReferences") or []}
    return _succeeded(pod) if "Job" in owners else ready_status(pod)


def _succeeded(pod: dict) -> dict:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "phase": "Succeeded",
        "startTime": stamp,
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": stamp,
                        "finishedAt": stamp,
                    }
                },
            }
            for c in pod["spec"]["containers"]
        ],
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A control plane without a node: the stand-in kubelet below is alone."""
    yield from serve(tmp_path_factory, "none")


@pytest.fixture(scope="module")
def fake_kubelet(server: Server) -> Iterator[None]:
    with stand_in_kubelet(server, _status):
        yield


@pytest.fixture
def k(kubeconfig: Path, tmp_path: Path, fake_kubelet: None) -> Kubectl:
    return make_kubectl("1.32", kubeconfig, tmp_path / "home")


def get(k: Kubectl, *args: str) -> dict:
    return json.loads(k("get", *args, "-o", "json").stdout)


def test_job_completes_and_kubectl_wait(k: Kubectl) -> None:
    k("create", "job", "pi", "--image=busybox", "--", "sh", "-c", "exit 0")
    out = k("wait", "--for=condition=complete", "job/pi", "--timeout=30s").stdout
    assert "job.batch/pi condition met" in out
    job = get(k, "job", "pi")
    assert job["status"]["succeeded"] == 1
    assert job["status"]["completionTime"]
    assert {c["type"] for c in job["status"]["conditions"]} == {"SuccessCriteriaMet", "Complete"}
    pods = get(k, "pods", "-l", "batch.kubernetes.io/job-name=pi")["items"]
    assert len(pods) == 1 and not pods[0]["metadata"].get("finalizers")
    table = k("get", "job", "pi").stdout
    assert "Complete" in table and "1/1" in table
    events = k("get", "events", "--field-selector", "involvedObject.name=pi").stdout
    assert "SuccessfulCreate" in events and "Completed" in events


def test_cronjob_every_two_seconds_and_create_from(k: Kubectl) -> None:
    k(
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=@every 2s",
        "--",
        "true",
    )
    poll_until(lambda: get(k, "cronjob", "tick").get("status", {}).get("lastScheduleTime"), 15)
    poll_until(lambda: get(k, "cronjob", "tick").get("status", {}).get("lastSuccessfulTime"), 15)
    jobs = [
        j
        for j in get(k, "jobs")["items"]
        if (j["metadata"].get("ownerReferences") or [{}])[0].get("name") == "tick"
    ]
    assert jobs
    assert all(j["metadata"]["name"].startswith("tick-") for j in jobs)
    stamp = jobs[0]["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert stamp.endswith("Z")
    k("patch", "cronjob", "tick", "-p", '{"spec":{"suspend":true}}')
    k("create", "job", "manual", "--from=cronjob/tick")
    manual = get(k, "job", "manual")
    assert manual["metadata"]["ownerReferences"][0]["name"] == "tick"
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    k("wait", "--for=condition=complete", "job/manual", "--timeout=30s")
    # history: at most 3 successful jobs are kept (successfulJobsHistoryLimit default)
    poll_until(
        lambda: (
            sum(
                1
                for j in get(k, "jobs")["items"]
                if j["metadata"]["name"].startswith("tick-")
                and any(c["type"] == "Complete" for c in j.get("status", {}).get("conditions", []))
            )
            <= 3
        )
    )


STS = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: nginx:1}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"""


def test_statefulset_ordered_pods_and_pvcs_survive(k: Kubectl) -> None:
    k("apply", "-f", "-", input=STS)
    out = k("rollout", "status", "statefulset/web", "--timeout=30s").stdout
    assert "roll out complete" in out or "partitioned roll out complete" in out
    pods = get(k, "pods", "-l", "app=web")["items"]
    by_name = {p["metadata"]["name"]: p for p in pods}
    assert sorted(by_name) == ["web-0", "web-1", "web-2"]
    # OrderedReady: each pod is created only once its predecessor is Running and Ready.
    stamps = [by_name[f"web-{i}"]["metadata"]["creationTimestamp"] for i in range(3)]
    assert stamps == sorted(stamps)
    ready_at = {
        n: next(c for c in p["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
        for n, p in by_name.items()
    }
    assert ready_at["web-0"] <= stamps[1] and ready_at["web-1"] <= stamps[2]
    assert by_name["web-1"]["spec"]["hostname"] == "web-1"
    assert by_name["web-1"]["spec"]["subdomain"] == "nginx"
    pvcs = sorted(p["metadata"]["name"] for p in get(k, "pvc")["items"])
    assert pvcs == ["data-web-0", "data-web-1", "data-web-2"]
    uid = by_name["web-1"]["metadata"]["uid"]
    k("delete", "pod", "web-1", "--wait=false")
    poll_until(
        lambda: (
            (
                p := next(
                    (
                        x
                        for x in get(k, "pods", "-l", "app=web")["items"]
                        if x["metadata"]["name"] == "web-1"
                    ),
                    None,
                )
            )
            is not None
            and p["metadata"]["uid"] != uid
        )
    )
    assert sorted(p["metadata"]["name"] for p in get(k, "pvc")["items"]) == pvcs
    k("scale", "statefulset", "web", "--replicas=1")
    poll_until(lambda: len(get(k, "pods", "-l", "app=web")["items"]) == 1)
    assert sorted(p["metadata"]["name"] for p in get(k, "pvc")["items"]) == pvcs
    st = get(k, "statefulset", "web")["status"]
    assert st["currentRevision"] == st["updateRevision"]
