"""End to end: pod lifecycle and faults with real Podman and the real kubectl.

One ``microkube serve`` per module (pod CIDR 10.228.X.0/24 with X in 121..240,
service CIDR 10.229.X.0/24) with its built-in registry behind basic auth.
Covers what the other pod modules do not: readiness flipping with its probe,
the CrashLoopBackOff delays, Secret env and volumes and ConfigMap updates
reaching a running pod, ``podman kill`` behind microkube's back, hostNetwork,
a finished pod giving its sandbox back, readiness gates, the admission-made
``kube-api-access`` volume, imagePullSecrets, ``kill -9`` of microkube and the
death of its Podman service.  The module ends with ``microkube reset`` and
checks that nothing of the instance is left in Podman.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import yaml

from tests.support import images, kube
from tests.support.kube import (
    PODMAN_E2E,
    apply,
    condition,
    pod_json,
    pod_manifest,
    ready,
    sh_container,
)
from tests.support.server import Kubectl, Server, free_port, podman_server

pytestmark = [*PODMAN_E2E, pytest.mark.timeout(240)]
IMAGE = images.BUSYBOX_IMAGE
USER, PASSWORD = "puller", "pull-secret-pw"


@pytest.fixture(scope="module")
def registry_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, registry_port: int) -> Iterator[Server]:
    images.busybox_image()
    r = random.randint(121, 240)
    base = tmp_path_factory.mktemp("lifecycle")
    secret = base / "registry-password"
    secret.write_text(PASSWORD + "\n")
    args = ["--registry-port", str(registry_port), "--registry-user", USER]
    args += ["--registry-password-file", str(secret)]
    with podman_server(
        base, pod_cidr=f"10.228.{r}.0/24", service_cidr=f"10.229.{r}.0/24", registry_args=args
    ) as srv:
        yield srv
    assert _service_pids(srv) == [], "a podman system service of the instance is left running"
    subprocess.run(
        ["podman", "rmi", "-f", f"localhost:{registry_port}/private/bb:1"],
        capture_output=True,
        check=False,
    )


def podman_env(server: Server) -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(server.state_dir / "podman" / "containers.conf")
    env["CONTAINERS_REGISTRIES_CONF"] = str(server.state_dir / "podman" / "registries.conf")
    return env


def podman(server: Server, *args: str) -> str:
    out = subprocess.run(
        ["podman", *args], env=podman_env(server), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _service_pids(server: Server) -> list[int]:
    """PIDs of the `podman system service` processes serving this instance's socket."""
    sock = f"unix://{server.state_dir / 'podman' / 'podman.sock'}"
    out = subprocess.run(["pgrep", "-f", f"system service --time=0 {sock}"], capture_output=True)
    return [int(p) for p in out.stdout.split()]


wait_for = functools.partial(kube.wait_for, interval=0.3)


def running(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in s["state"] for s in statuses)


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_readiness_flips_with_the_probe(kubectl: Kubectl) -> None:
    probe = {
        "exec": {"command": ["test", "-f", "/tmp/ready"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    apply(kubectl, pod_manifest("flip", sh_container("c", "sleep 3600", readinessProbe=probe)))
    p = wait_for(kubectl, "flip", running)
    assert not ready(p) and condition(p, "Ready")["reason"] == "ContainersNotReady"
    assert "0/1" in kubectl("get", "pod", "flip").stdout
    kubectl("exec", "flip", "--", "touch", "/tmp/ready")
    wait_for(kubectl, "flip", ready, timeout=20)
    assert "1/1" in kubectl("get", "pod", "flip").stdout
    kubectl("exec", "flip", "--", "rm", "/tmp/ready")
    p = wait_for(kubectl, "flip", lambda p: not ready(p), timeout=20)
    assert p["status"]["containerStatuses"][0]["ready"] is False
    assert p["status"]["containerStatuses"][0]["restartCount"] == 0  # readiness never restarts
    evs = json.loads(kubectl("get", "events", "-o", "json").stdout)["items"]
    assert any(e["reason"] == "Unhealthy" and e["involvedObject"]["name"] == "flip" for e in evs)
    kubectl("delete", "pod", "flip", "--wait=false")


def test_crash_loop_back_off_timing(kubectl: Kubectl) -> None:
    """Upstream's delays: the first restart at once, the next after 10 s."""
    apply(kubectl, pod_manifest("loop", sh_container("c", "sleep 1; exit 1")))
    attempts: dict[int, tuple[str, str]] = {}  # attempt -> (startedAt, finishedAt)
    messages: set[str] = set()
    deadline = time.monotonic() + 60
    while len(attempts) < 2 or 2 not in {k + 1 for k in attempts}:
        cs = (pod_json(kubectl, "loop").get("status", {}).get("containerStatuses") or [{}])[0]
        last = (cs.get("lastState") or {}).get("terminated")
        if last:
            attempts[cs["restartCount"] - 1] = (last["startedAt"], last["finishedAt"])
        if waiting := (cs.get("state") or {}).get("waiting"):
            messages.add(waiting.get("message", ""))
        if 1 in attempts and cs.get("restartCount", 0) >= 2 and "running" in cs.get("state", {}):
            attempts[2] = (cs["state"]["running"]["startedAt"], "")
        assert time.monotonic() < deadline, (attempts, cs)
        time.sleep(0.3)
    first_gap = (ts(attempts[1][0]) - ts(attempts[0][1])).total_seconds()
    second_gap = (ts(attempts[2][0]) - ts(attempts[1][1])).total_seconds()
    assert first_gap <= 3, attempts
    assert 9 <= second_gap <= 15, attempts
    assert any(
        m.startswith("back-off 10s restarting failed container=c pod=loop_default(")
        for m in messages
    )
    kubectl("delete", "pod", "loop", "--wait=false")


def test_secret_env_and_volume_and_config_map_update(kubectl: Kubectl) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "stringData": {"user": "admin", "pass": "s3cret"},
    }
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "live"},
        "data": {"mode": "one"},
    }
    c = sh_container(
        "c",
        "sleep 3600",
        env=[{"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}}],
        envFrom=[{"prefix": "S_", "secretRef": {"name": "creds"}}],
        volumeMounts=[
            {"name": "sec", "mountPath": "/etc/sec", "readOnly": True},
            {"name": "cfg", "mountPath": "/etc/cfg"},
        ],
    )
    vols = [
        {
            "name": "sec",
            "secret": {
                "secretName": "creds",
                "defaultMode": 0o440,
                "items": [
                    {"key": "pass", "path": "db/pass", "mode": 0o400},
                    {"key": "user", "path": "user"},
                ],
            },
        },
        {"name": "cfg", "configMap": {"name": "live"}},
    ]
    apply(kubectl, secret, cm, pod_manifest("secrets", c, volumes=vols))
    wait_for(kubectl, "secrets", ready)

    def sh(script: str) -> str:
        return kubectl("exec", "secrets", "--", "sh", "-c", script).stdout

    assert sh('echo "$DB_USER $S_user $S_pass"') == "admin admin s3cret\n"
    assert sh("cat /etc/sec/db/pass; echo; cat /etc/sec/user") == "s3cret\nadmin"
    assert sh("stat -L -c %a /etc/sec/db/pass /etc/sec/user") == "400\n440\n"
    assert sh("cat /etc/cfg/mode") == "one"
    kubectl("patch", "configmap", "live", "-p", '{"data":{"mode":"two"}}')
    deadline = time.monotonic() + 40
    while sh("cat /etc/cfg/mode") != "two":  # upstream: within the kubelet's sync period
        assert time.monotonic() < deadline, "the ConfigMap update never reached the pod"
        time.sleep(1)
    kubectl("delete", "pod", "secrets", "--wait=false")


def test_podman_kill_restarts_the_container(server: Server, kubectl: Kubectl) -> None:
    apply(kubectl, pod_manifest("victim", sh_container("c", "sleep 3600")))
    before = wait_for(kubectl, "victim", ready)["status"]["containerStatuses"][0]
    podman(server, "kill", before["containerID"].removeprefix("podman://"))
    after = wait_for(
        kubectl,
        "victim",
        lambda p: ready(p) and p["status"]["containerStatuses"][0]["restartCount"] == 1,
        timeout=30,
    )["status"]["containerStatuses"][0]
    assert after["containerID"] != before["containerID"]
    term = after["lastState"]["terminated"]
    assert term["exitCode"] == 137 and term["reason"] == "Error"
    assert term["containerID"] == before["containerID"]
    kubectl("delete", "pod", "victim", "--wait=false")


def test_host_network_pod(kubectl: Kubectl) -> None:
    port = free_port()
    apply(
        kubectl,
        pod_manifest(
            "hostnet",
            sh_container("c", f"nc -ll -p {port} -e echo host-net"),
            hostNetwork=True,
        ),
    )
    p = wait_for(kubectl, "hostnet", running)
    assert p["status"]["podIP"] == p["status"]["hostIP"]
    assert p["status"]["podIPs"] == [{"ip": p["status"]["hostIP"]}]
    deadline = time.monotonic() + 20
    got = b""
    while got != b"host-net\n":
        assert time.monotonic() < deadline, got
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                got = s.recv(100)
        except OSError:
            time.sleep(0.3)
    # the host's hostname, not the pod's name
    assert kubectl("exec", "hostnet", "--", "hostname").stdout.strip() == socket.gethostname()
    kubectl("delete", "pod", "hostnet", "--wait=false")


def test_finished_pod_releases_its_sandbox_and_keeps_logs(server: Server, kubectl: Kubectl) -> None:
    apply(
        kubectl, pod_manifest("finished", sh_container("c", "echo all done"), restartPolicy="Never")
    )
    p = wait_for(kubectl, "finished", lambda p: p.get("status", {}).get("phase") == "Succeeded")
    uid = p["metadata"]["uid"]
    deadline = time.monotonic() + 20
    while True:
        status = podman(
            server,
            "pod",
            "ps",
            "--filter",
            f"label=io.microkube.pod-uid={uid}",
            "--format",
            "{{.Status}}",
        ).strip()
        if status in ("Exited", "Stopped"):
            break
        assert time.monotonic() < deadline, f"sandbox still {status!r}"
        time.sleep(0.3)
    assert kubectl("logs", "finished").stdout == "all done\n"
    assert "Completed" in kubectl("get", "pod", "finished").stdout
    assert pod_json(kubectl, "finished")["status"]["podIP"] == p["status"]["podIP"]
    kubectl("delete", "pod", "finished", "--timeout=60s")


def test_readiness_gate_and_kube_api_access(kubectl: Kubectl) -> None:
    apply(
        kubectl,
        pod_manifest(
            "gated",
            sh_container("c", "sleep 3600"),
            readinessGates=[{"conditionType": "example.com/lb"}],
        ),
    )
    p = wait_for(
        kubectl, "gated", lambda p: condition(p, "ContainersReady").get("status") == "True"
    )
    gate = condition(p, "Ready")
    assert gate["status"] == "False" and gate["reason"] == "ReadinessGatesNotReady"
    assert (
        gate["message"]
        == 'corresponding condition of pod readiness gate "example.com/lb" does not exist.'
    )
    assert "0/1" in kubectl("get", "pod", "gated", "-o", "wide").stdout  # READINESS GATES
    patch = [
        {
            "op": "add",
            "path": "/status/conditions/-",
            "value": {"type": "example.com/lb", "status": "True"},
        }
    ]
    kubectl("patch", "pod", "gated", "--subresource=status", "--type=json", "-p", json.dumps(patch))
    wait_for(kubectl, "gated", ready, timeout=20)
    # what the ServiceAccount admission plugin added, as `kubectl get -o yaml` shows it
    spec = yaml.safe_load(kubectl("get", "pod", "gated", "-o", "yaml").stdout)["spec"]
    [vol] = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(vol["name"]) == len("kube-api-access-") + 5
    mount = {
        "name": vol["name"],
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    assert mount in spec["containers"][0]["volumeMounts"]
    listing = kubectl(
        "exec",
        "gated",
        "--",
        "sh",
        "-c",
        "cd /var/run/secrets/kubernetes.io/serviceaccount && cat namespace && ls",
    ).stdout
    assert listing == "default" + "ca.crt\nnamespace\ntoken\n"
    kubectl("delete", "pod", "gated", "--wait=false")


def test_image_pull_secrets_are_used(server: Server, kubectl: Kubectl, registry_port: int) -> None:
    """The pull carries the pod's credentials: a wrong password fails, the right one pulls.

    (microkube's own Podman also knows its registry's password, which is why the
    wrong-password case is the telling one.)
    """
    image = f"localhost:{registry_port}/private/bb:1"
    podman(server, "push", "--creds", f"{USER}:{PASSWORD}", IMAGE, image)

    def regcred(name: str, password: str) -> dict[str, Any]:
        auth = {"auths": {f"localhost:{registry_port}": {"username": USER, "password": password}}}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(auth).encode()).decode()},
        }

    def puller(name: str, secret: str) -> dict[str, Any]:
        c = {"name": "c", "image": image, "imagePullPolicy": "Always", "command": ["sleep", "3600"]}
        return pod_manifest(name, c, imagePullSecrets=[{"name": secret}])

    apply(kubectl, regcred("good", PASSWORD), regcred("bad", "wrong"))
    apply(kubectl, puller("pull-good", "good"), puller("pull-bad", "bad"))
    wait_for(kubectl, "pull-good", running, timeout=90)
    bad = wait_for(
        kubectl,
        "pull-bad",
        lambda p: (
            (p.get("status", {}).get("containerStatuses") or [{}])[0]
            .get("state", {})
            .get("waiting", {})
            .get("reason")
            in ("ErrImagePull", "ImagePullBackOff")
        ),
        timeout=90,
    )
    message = bad["status"]["containerStatuses"][0]["state"]["waiting"].get("message", "")
    assert "unauthorized" in message.lower() or "authentication" in message.lower(), message
    kubectl("delete", "pod", "pull-good", "pull-bad", "--wait=false")


def test_kill_9_and_restart_adopts_running_containers(server: Server, kubectl: Kubectl) -> None:
    apply(kubectl, pod_manifest("survivor", sh_container("c", "sleep 3600")))
    before = wait_for(kubectl, "survivor", ready)["status"]["containerStatuses"][0]
    server.stop(signal.SIGKILL)
    server.start(timeout=60)
    kubectl("exec", "survivor", "--", "true")
    after = wait_for(kubectl, "survivor", ready)["status"]["containerStatuses"][0]
    assert after["containerID"] == before["containerID"] and after["restartCount"] == 0
    assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]
    assert len(_service_pids(server)) == 1, "the killed instance's podman service was not replaced"
    kubectl("delete", "pod", "survivor", "--wait=false")


def test_podman_service_death_is_survived(server: Server, kubectl: Kubectl) -> None:
    apply(kubectl, pod_manifest("steady", sh_container("c", "sleep 3600")))
    before = wait_for(kubectl, "steady", ready)["status"]["containerStatuses"][0]
    [pid] = _service_pids(server)
    os.kill(pid, signal.SIGKILL)
    # microkube restarts the service; the kubelet carries on with new pods
    apply(kubectl, pod_manifest("newcomer", sh_container("c", "sleep 3600")))
    wait_for(kubectl, "newcomer", ready, timeout=90)
    [new_pid] = _service_pids(server)
    assert new_pid != pid
    after = wait_for(kubectl, "steady", ready)["status"]["containerStatuses"][0]
    assert after["containerID"] == before["containerID"] and after["restartCount"] == 0
    assert kubectl("exec", "steady", "--", "echo", "still-here").stdout == "still-here\n"
    kubectl("delete", "pod", "steady", "newcomer", "--wait=false")


def test_logs_of_partial_writes_are_whole_lines(kubectl: Kubectl) -> None:
    script = 'printf "a "; sleep 1; printf "b\\n"; echo full; printf "c "; printf "d\\n"'
    apply(kubectl, pod_manifest("partial", sh_container("c", script), restartPolicy="Never"))
    wait_for(kubectl, "partial", lambda p: p.get("status", {}).get("phase") == "Succeeded")
    assert kubectl("logs", "partial").stdout == "a b\nfull\nc d\n"
    assert kubectl("logs", "partial", "--tail=1").stdout == "c d\n"
    assert kubectl("logs", "partial", "--limit-bytes=6").stdout == "a b\nfu"
    stamped = kubectl("logs", "partial", "--timestamps").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["a b", "full", "c d"]
    first, second = (datetime.fromisoformat(line.split(" ")[0][:26]) for line in stamped[:2])
    assert (second - first).total_seconds() >= 0.9  # "a b" carries its first fragment's time
    assert kubectl("logs", "-f", "partial").stdout == "a b\nfull\nc d\n"
    kubectl("delete", "pod", "partial", "--wait=false")


def test_memory_limit_kill_shows_oomkilled(kubectl: Kubectl) -> None:
    hog = sh_container(
        "hog", "tail /dev/zero", resources={"limits": {"memory": "16Mi", "cpu": "500m"}}
    )
    apply(kubectl, pod_manifest("hog", hog, restartPolicy="Never"))
    p = wait_for(kubectl, "hog", lambda p: p.get("status", {}).get("phase") == "Failed")
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    assert "OOMKilled" in kubectl("get", "pod", "hog").stdout
    kubectl("delete", "pod", "hog", "--wait=false")


def test_oomkilled_restart_is_last_state(kubectl: Kubectl) -> None:
    hog = sh_container("hog", "tail /dev/zero", resources={"limits": {"memory": "16Mi"}})
    apply(kubectl, pod_manifest("hog-restart", hog))
    p = wait_for(
        kubectl,
        "hog-restart",
        lambda p: any(
            c.get("lastState", {}).get("terminated")
            for c in p.get("status", {}).get("containerStatuses", [])
        ),
    )
    last = p["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
    kubectl("delete", "pod", "hog-restart", "--wait=false")
