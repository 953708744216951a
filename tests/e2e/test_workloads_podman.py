"""End to end: workload controllers with the real kubectl on real Podman.

One server per module (pod CIDR 10.220.X.0/24, service CIDR 10.221.X.0/24).
The slow, clock-bound objects (a Job, a CronJob firing every minute and a
StatefulSet) are created first by an autouse fixture, so that they progress
while the Deployment test runs; their tests then only check (and wait for
whatever is still missing), the CronJob's last.  The StatefulSet's pods write
their identity into their claim on first start; ``kubectl exec`` reads it back
after a pod is deleted and after a scale down and up.  The module ends with ``microkube reset`` and
checks that no Podman pod, container or network of the instance is left.

The second image tag (``mk-busybox:v2``) is the same content under another
name: ``kubectl set image`` to it is a real template change (a new
ReplicaSet, new containers), and the containers' image in Podman tells which
revision a pod runs.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import images
from tests.support.kube import PODMAN_E2E, apply, get_json
from tests.support.server import Kubectl, Server, podman_server

pytestmark = [*PODMAN_E2E, pytest.mark.timeout(300)]
IMAGE = images.BUSYBOX_IMAGE
IMAGE2 = "localhost/mk-busybox:v2"
# PID 1 exits at once on SIGTERM, so rollouts do not wait for the grace period
SERVE = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
CRON_BUDGET = 75.0  # the minute boundary plus the Job's run


def _podman(*args: str) -> str:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=False, timeout=60
    ).stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    images.busybox_image()
    subprocess.run(["podman", "tag", IMAGE, IMAGE2], check=True, capture_output=True, timeout=60)
    r = random.randint(1, 254)
    base = tmp_path_factory.mktemp("e2e-workloads")
    try:
        with podman_server(
            base, pod_cidr=f"10.220.{r}.0/24", service_cidr=f"10.221.{r}.0/24"
        ) as srv:
            yield srv
    finally:
        _podman("rmi", IMAGE2)  # only the second name (the image stays while it has others)


def eventually(
    pred: Callable[[], Any], timeout: float, what: str, story: Callable[[], str] = lambda: ""
) -> Any:
    """Poll ``pred`` until truthy; on a timeout fail with ``story()`` (what the cluster shows)."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{story()}")
        time.sleep(0.5)


def story(kubectl: Kubectl, *what: str) -> Callable[[], str]:
    def tell() -> str:
        out = [kubectl("describe", w, check=False).stdout for w in what]
        out.append(kubectl("get", "events", "--sort-by=.lastTimestamp", check=False).stdout)
        return "\n".join(out)

    return tell


def rollout_status(kubectl: Kubectl, what: str) -> str:
    """``kubectl rollout status``; on a timeout, fail with what the cluster shows."""
    proc = kubectl("rollout", "status", what, "--timeout=120s", timeout=130, check=False)
    if proc.returncode != 0:
        state = kubectl("get", "deploy,rs,sts,pods,pvc", "-o", "wide", check=False).stdout
        described = kubectl("describe", what, check=False).stdout
        pods = kubectl("describe", "pods", check=False).stdout
        raise AssertionError(f"{proc.stdout}{proc.stderr}\n{state}\n{described}\n{pods}")
    return proc.stdout


def wait_complete(kubectl: Kubectl, job: str, timeout: int = 90) -> None:
    """``kubectl wait --for=condition=complete``; on a timeout, fail with the Job's story."""
    proc = kubectl(
        "wait", "--for=condition=complete", f"job/{job}", f"--timeout={timeout}s",
        timeout=timeout + 10, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        described = kubectl("describe", f"job/{job}", check=False).stdout
        pods = kubectl("describe", "pods", "-l", f"job-name={job}", check=False).stdout
        raise AssertionError(f"{proc.stdout}{proc.stderr}\n{described}\n{pods}")


def live_pods(kubectl: Kubectl, selector: str) -> list[dict[str, Any]]:
    items = get_json(kubectl, "pods", "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def sandboxes(server: Server, **labels: str) -> list[dict[str, Any]]:
    """Podman pods of this instance whose labels include ``labels``."""
    out = _podman(
        "pod",
        "ps",
        "--format",
        "json",
        "--filter",
        f"label=io.microkube.instance={server.instance}",
    )
    pods = json.loads(out or "[]")
    return [p for p in pods if all((p.get("Labels") or {}).get(k) == v for k, v in labels.items())]


def container_images(server: Server, pod_name: str) -> set[str]:
    """Images of the running app containers of pod ``pod_name`` (infra excluded)."""
    out = _podman(
        "ps", "--format", "json",
        "--filter", f"label=io.microkube.instance={server.instance}",
        "--filter", f"label=io.microkube.pod-name={pod_name}",
    )  # fmt: skip
    return {
        c["Image"]
        for c in json.loads(out or "[]")
        if (c.get("Labels") or {}).get("io.microkube.container-name")
    }


def container(name: str, image: str = IMAGE, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "command": SERVE, **extra}


def pod_template(
    labels: dict[str, str], containers: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {"labels": labels},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": containers, **spec},
    }


def run_once(cmd: str) -> dict[str, Any]:
    return pod_template(
        {}, [{"name": "run", "image": IMAGE, "command": ["sh", "-c", cmd]}], restartPolicy="Never"
    )


# --- objects that progress in the background -----------------------------------------------

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "once"},
    "spec": {
        "completions": 2,
        "parallelism": 2,
        "backoffLimit": 2,
        "template": run_once("echo done"),
    },
}
CRONJOB = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {"name": "tick"},
    "spec": {
        "schedule": "*/1 * * * *",
        "concurrencyPolicy": "Forbid",
        "successfulJobsHistoryLimit": 2,
        "jobTemplate": {"spec": {"backoffLimit": 1, "template": run_once("echo tick")}},
    },
}
DB_LABELS = {"app": "db"}
STATEFULSET = {
    "apiVersion": "apps/v1",
    "kind": "StatefulSet",
    "metadata": {"name": "db"},
    "spec": {
        "serviceName": "db",
        "replicas": 3,
        "selector": {"matchLabels": DB_LABELS},
        "template": pod_template(
            DB_LABELS,
            [
                {
                    "name": "db",
                    "image": IMAGE,
                    # the first start of an identity writes it to its claim; later ones keep it
                    "command": [
                        "sh",
                        "-c",
                        f"[ -s /data/id ] || echo $(hostname)-$RANDOM$RANDOM > /data/id; {SERVE[2]}",
                    ],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
        ),
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "16Mi"}},
                },
            }
        ],
    },
}
HEADLESS = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "db"},
    "spec": {"clusterIP": "None", "selector": DB_LABELS, "ports": [{"port": 80}]},
}


@pytest.fixture(scope="module", autouse=True)
def background(kubectl: Kubectl) -> float:
    """Create the Job, CronJob and StatefulSet; return when the CronJob was created."""
    apply(kubectl, JOB, CRONJOB, HEADLESS, STATEFULSET)
    return time.monotonic()


# --- Deployment -------------------------------------------------------------------------------


def test_deployment_rollout_scale_and_cascade(server: Server, kubectl: Kubectl) -> None:
    labels = {"app": "web"}
    apply(
        kubectl,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": pod_template(labels, [container("app"), container("side")]),
            },
        },
    )
    status = rollout_status(kubectl, "deploy/web")
    assert 'deployment "web" successfully rolled out' in status
    pods = live_pods(kubectl, "app=web")
    assert len(pods) == 3
    for p in pods:
        assert [c["ready"] for c in p["status"]["containerStatuses"]] == [True, True]
        assert container_images(server, p["metadata"]["name"]) == {IMAGE}
    assert len(sandboxes(server, **{"io.microkube.namespace": "default"})) >= 3

    kubectl("set", "image", "deploy/web", f"app={IMAGE2}", f"side={IMAGE2}")
    kubectl("annotate", "deploy/web", "kubernetes.io/change-cause=to v2")
    rollout_status(kubectl, "deploy/web")
    pods = eventually(
        lambda: (ps := live_pods(kubectl, "app=web")) and len(ps) == 3 and ps, 30, "3 pods"
    )
    for p in pods:
        assert {c["image"] for c in p["spec"]["containers"]} == {IMAGE2}
        assert container_images(server, p["metadata"]["name"]) == {IMAGE2}
    rs = get_json(kubectl, "rs", "-l", "app=web")["items"]
    assert sorted(r["spec"]["replicas"] for r in rs) == [0, 3]

    hist = kubectl("rollout", "history", "deploy/web").stdout
    rows = [line.split() for line in hist.splitlines()[2:] if line.strip()]
    assert [r[0] for r in rows] == ["1", "2"] and "to v2" in hist
    assert IMAGE2 in kubectl("rollout", "history", "deploy/web", "--revision=2").stdout

    kubectl("rollout", "undo", "deploy/web")
    rollout_status(kubectl, "deploy/web")
    pods = eventually(
        lambda: (ps := live_pods(kubectl, "app=web")) and len(ps) == 3 and ps, 30, "3 pods"
    )
    for p in pods:
        assert container_images(server, p["metadata"]["name"]) == {IMAGE}
    hist = kubectl("rollout", "history", "deploy/web").stdout
    assert [line.split()[0] for line in hist.splitlines()[2:] if line.strip()] == ["2", "3"]

    kubectl("scale", "deploy/web", "--replicas=5")
    rollout_status(kubectl, "deploy/web")
    d = get_json(kubectl, "deploy", "web")
    assert d["status"]["availableReplicas"] == 5 and d["status"]["readyReplicas"] == 5
    assert len(live_pods(kubectl, "app=web")) == 5

    kubectl("scale", "deploy/web", "--replicas=1")
    eventually(
        lambda: len(live_pods(kubectl, "app=web")) == 1,
        60,
        "scale down to 1",
        story(kubectl, "deploy/web"),
    )
    names = {p["metadata"]["name"] for p in get_json(kubectl, "pods", "-l", "app=web")["items"]}
    eventually(
        lambda: (
            {s["Labels"]["io.microkube.pod-name"] for s in sandboxes(server)} & names
            == {p["metadata"]["name"] for p in live_pods(kubectl, "app=web")}
        ),
        60,
        "sandboxes of the scaled-down pods removed",
    )

    described = kubectl("describe", "deploy", "web").stdout
    assert "ScalingReplicaSet" in described and "Scaled down replica set web-" in described
    kubectl("delete", "deploy", "web", "--cascade=background", "--timeout=60s", timeout=70)
    eventually(lambda: not get_json(kubectl, "pods", "-l", "app=web")["items"], 60, "pods deleted")
    assert get_json(kubectl, "rs", "-l", "app=web")["items"] == []
    eventually(
        lambda: (
            not [
                s
                for s in sandboxes(server)
                if s["Labels"]["io.microkube.pod-name"].startswith("web-")
            ]
        ),
        60,
        "Podman pods of the Deployment removed",
    )


# --- Job ------------------------------------------------------------------------


def test_job_runs_to_completion(kubectl: Kubectl) -> None:
    wait_complete(kubectl, "once")
    job = get_json(kubectl, "job", "once")
    assert job["status"]["succeeded"] == 2 and not job["status"].get("failed")
    assert job["status"]["completionTime"] >= job["status"]["startTime"]
    pods = get_json(kubectl, "pods", "-l", "job-name=once")["items"]
    assert sorted(p["status"]["phase"] for p in pods) == ["Succeeded", "Succeeded"]
    assert "done" in kubectl("logs", pods[0]["metadata"]["name"]).stdout


# --- StatefulSet ------------------------------------------------------------------------------


def test_statefulset_claims_and_data_outlive_pods(kubectl: Kubectl) -> None:
    claims = ["data-db-0", "data-db-1", "data-db-2"]
    # OrderedReady (the default): db-0, db-1, db-2, each once the previous is Ready
    assert "roll out complete" in rollout_status(kubectl, "sts/db")
    pods = {p["metadata"]["name"]: p for p in live_pods(kubectl, "app=db")}
    assert sorted(pods) == ["db-0", "db-1", "db-2"]
    for n, p in pods.items():
        assert p["spec"]["hostname"] == n and p["spec"]["subdomain"] == "db"
        vol = next(v for v in p["spec"]["volumes"] if v["name"] == "data")
        assert vol["persistentVolumeClaim"]["claimName"] == f"data-{n}"
    pvcs = get_json(kubectl, "pvc")["items"]
    assert sorted(c["metadata"]["name"] for c in pvcs) == claims
    assert {c["status"]["phase"] for c in pvcs} == {"Bound"}
    volumes = {c["metadata"]["name"]: c["spec"]["volumeName"] for c in pvcs}

    def ident(pod: str) -> str:
        return kubectl("exec", pod, "--", "cat", "/data/id").stdout.strip()

    ids = {n: ident(n) for n in pods}
    assert all(v.startswith(f"{n}-") for n, v in ids.items()), ids  # one volume per identity

    old_uid = pods["db-1"]["metadata"]["uid"]
    kubectl("delete", "pod", "db-1", "--timeout=60s", timeout=70)

    def recreated() -> bool:
        p = json.loads(kubectl("get", "pod", "db-1", "-o", "json", check=False).stdout or "{}")
        return bool(p) and p["metadata"]["uid"] != old_uid

    eventually(recreated, 60, "db-1 recreated", story(kubectl, "sts/db", "pod/db-1"))
    rollout_status(kubectl, "sts/db")
    assert ident("db-1") == ids["db-1"]  # same claim, same volume, same data

    kubectl("scale", "sts/db", "--replicas=1")
    eventually(lambda: len(live_pods(kubectl, "app=db")) == 1, 60, "scale down to 1")
    kept = {
        c["metadata"]["name"]: c["spec"]["volumeName"] for c in get_json(kubectl, "pvc")["items"]
    }
    assert kept == volumes  # whenScaled: Retain (the default)
    kubectl("scale", "sts/db", "--replicas=3")
    rollout_status(kubectl, "sts/db")
    assert {n: ident(n) for n in ids} == ids

    kubectl("delete", "sts", "db", "--timeout=60s", timeout=70)
    eventually(
        lambda: not get_json(kubectl, "pods", "-l", "app=db")["items"],
        60,
        "StatefulSet pods deleted",
    )
    assert {c["metadata"]["name"] for c in get_json(kubectl, "pvc")["items"]} == set(claims)


# --- CronJob (last: its wait absorbs the minute boundary) ------------------------------------


def test_cronjob_fires_every_minute(kubectl: Kubectl, background: float) -> None:
    def completed_child() -> list[dict[str, Any]]:
        jobs = get_json(kubectl, "jobs")["items"]
        return [
            j
            for j in jobs
            if any(
                r.get("kind") == "CronJob" and r["name"] == "tick"
                for r in j["metadata"].get("ownerReferences") or []
            )
            and any(
                c["type"] == "Complete" and c["status"] == "True"
                for c in (j.get("status") or {}).get("conditions") or []
            )
        ]

    remaining = CRON_BUDGET - (time.monotonic() - background)
    done = eventually(
        completed_child,
        max(remaining, 5),
        "a Job of the CronJob to complete",
        story(kubectl, "cronjob/tick", "jobs", "pods"),
    )
    assert done[0]["metadata"]["name"].startswith("tick-")
    cj = eventually(
        lambda: (
            (c := get_json(kubectl, "cronjob", "tick"))["status"].get("lastSuccessfulTime") and c
        ),
        15,
        "lastSuccessfulTime",
    )
    assert cj["status"]["lastScheduleTime"] <= cj["status"]["lastSuccessfulTime"]
    # a manual run from the template, as ``kubectl create job --from`` does
    kubectl("create", "job", "manual", "--from=cronjob/tick")
    wait_complete(kubectl, "manual", 60)
