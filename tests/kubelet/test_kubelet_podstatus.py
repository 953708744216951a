"""Pure tests of podstatus.compute: phases, conditions, container states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from microkube.kubelet import podstatus
from microkube.kubelet import runtime as rt

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SB = rt.SandboxStatus("sb", "sb", "uid", "default", "p", {}, "ready", ip="10.1.0.5")


def pod(
    containers: list[str], init: list[str] = (), policy: str = "Always", **spec: Any
) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "metadata": {"name": "p", "namespace": "default", "uid": "uid"},
        "spec": {
            "restartPolicy": policy,
            "containers": [{"name": n, "image": "busybox", **spec.get(n, {})} for n in containers],
            "initContainers": [{"name": n, "image": "busybox"} for n in init],
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }


def ctr(
    name: str, state: str, *, code: int | None = None, restarts: int = 0, at: int = 0
) -> rt.ContainerStatus:
    started = T0 + timedelta(seconds=at)
    return rt.ContainerStatus(
        id=f"{name}-{restarts}",
        name=name,
        sandbox_id="sb",
        pod_uid="uid",
        labels={},
        state=state,  # type: ignore[arg-type]
        exit_code=code,
        started_at=started if state != "created" else None,
        finished_at=started + timedelta(seconds=1) if state == "exited" else None,
        created_at=started,
        image_id="abc",
        restart_count=restarts,
        reason="" if code is None else ("Completed" if code == 0 else "Error"),
    )


def conds(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_nothing_started_is_pending_container_creating() -> None:
    st = podstatus.compute(
        pod(["a"]), podstatus.PodRuntimeState(sandbox=SB, host_ip="192.0.2.1"), now=T0
    )
    assert st["phase"] == "Pending"
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert st["podIP"] == "10.1.0.5" and st["hostIP"] == "192.0.2.1"
    assert conds(st) == {
        "PodScheduled": "True",
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "False",
        "ContainersReady": "False",
    }
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [a]"


def test_running_and_ready() -> None:
    state = podstatus.PodRuntimeState(sandbox=SB, containers=[ctr("a", "running")])
    st = podstatus.compute(pod(["a"]), state, now=T0)
    cs = st["containerStatuses"][0]
    assert st["phase"] == "Running" and conds(st)["Ready"] == "True"
    assert cs["state"] == {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    assert cs["containerID"] == "podman://a-0" and cs["imageID"] == "sha256:abc"
    assert cs["ready"] and cs["started"]


def test_readiness_probe_result_gates_ready() -> None:
    p = pod(["a"], a={"readinessProbe": {"exec": {"command": ["true"]}}})
    state = podstatus.PodRuntimeState(sandbox=SB, containers=[ctr("a", "running")])
    assert conds(podstatus.compute(p, state, now=T0))["Ready"] == "False"
    state.ready["a"] = True
    assert conds(podstatus.compute(p, state, now=T0))["Ready"] == "True"


def test_crash_loop_shows_waiting_and_last_state() -> None:
    state = podstatus.PodRuntimeState(
        sandbox=SB,
        containers=[
            ctr("a", "exited", code=1, restarts=0),
            ctr("a", "exited", code=1, restarts=1, at=5),
        ],
        waiting={
            "a": (
                "CrashLoopBackOff",
                "back-off 10s restarting failed container=a pod=p_default(uid)",
            )
        },
    )
    st = podstatus.compute(pod(["a"]), state, now=T0)
    cs = st["containerStatuses"][0]
    assert st["phase"] == "Running"  # restartPolicy Always
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["lastState"]["terminated"]["containerID"] == "podman://a-1"
    assert cs["restartCount"] == 1


def test_terminal_phases() -> None:
    ok = podstatus.PodRuntimeState(sandbox=SB, containers=[ctr("a", "exited", code=0)])
    st = podstatus.compute(pod(["a"], policy="Never"), ok, now=T0)
    assert st["phase"] == "Succeeded"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "PodCompleted"
    bad = podstatus.PodRuntimeState(
        sandbox=SB, containers=[ctr("a", "exited", code=2), ctr("b", "exited", code=0)]
    )
    assert podstatus.compute(pod(["a", "b"], policy="Never"), bad, now=T0)["phase"] == "Failed"
    assert podstatus.compute(pod(["a", "b"], policy="OnFailure"), bad, now=T0)["phase"] == "Running"


def test_init_containers() -> None:
    p = pod(["main"], init=["i1", "i2"])
    state = podstatus.PodRuntimeState(
        sandbox=SB, containers=[ctr("i1", "exited", code=0), ctr("i2", "running")]
    )
    st = podstatus.compute(p, state, now=T0)
    assert st["phase"] == "Pending"
    init = next(c for c in st["conditions"] if c["type"] == "Initialized")
    assert (
        init["status"] == "False" and init["message"] == "containers with incomplete status: [i2]"
    )
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert [s["state"].keys() for s in st["initContainerStatuses"]] == [
        {"terminated": 0}.keys(),
        {"running": 0}.keys(),
    ]
    failed = podstatus.PodRuntimeState(sandbox=SB, containers=[ctr("i1", "exited", code=1)])
    assert (
        podstatus.compute(pod(["main"], init=["i1"], policy="Never"), failed, now=T0)["phase"]
        == "Failed"
    )


def test_transition_times_are_kept_and_pod_scheduled_survives() -> None:
    p = pod(["a"])
    p["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "x"}
    ]
    state = podstatus.PodRuntimeState(sandbox=SB, containers=[ctr("a", "running")])
    first = podstatus.compute(p, state, now=T0)
    p["status"] = first
    second = podstatus.compute(p, state, now=T0 + timedelta(minutes=5))
    assert second == first
    assert second["conditions"][-1] == {
        "type": "PodScheduled",
        "status": "True",
        "lastTransitionTime": "x",
    }


def test_terminal_phase_is_sticky() -> None:
    p = pod(["a"], policy="Never")
    p["status"]["phase"] = "Succeeded"
    state = podstatus.PodRuntimeState(sandbox=SB, containers=[ctr("a", "running")])
    assert podstatus.compute(p, state, now=T0)["phase"] == "Succeeded"


def test_sidecar_counts_for_readiness_not_for_phase() -> None:
    p = pod(["main"], init=["side"])
    p["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    p["spec"]["initContainers"][0]["readinessProbe"] = {"exec": {"command": ["x"]}}
    state = podstatus.PodRuntimeState(
        sandbox=SB, containers=[ctr("side", "running"), ctr("main", "running")]
    )
    st = podstatus.compute(p, state, now=T0)
    assert st["phase"] == "Running" and conds(st)["Initialized"] == "True"
    assert conds(st)["Ready"] == "False"  # the sidecar's readiness probe has not passed
    state.ready["side"] = True
    assert conds(podstatus.compute(p, state, now=T0))["Ready"] == "True"
    # regular init containers are never "ready" while running
    q = pod(["main"], init=["i"])
    running_init = podstatus.PodRuntimeState(sandbox=SB, containers=[ctr("i", "running")])
    assert podstatus.compute(q, running_init, now=T0)["initContainerStatuses"][0]["ready"] is False


def test_readiness_gates_hold_ready_back_and_foreign_conditions_stay() -> None:
    p = pod(["a"])
    p["spec"]["readinessGates"] = [
        {"conditionType": "example.com/lb"},
        {"conditionType": "example.com/dns"},
    ]
    running = podstatus.PodRuntimeState(sandbox=SB, containers=[ctr("a", "running")])
    st = podstatus.compute(p, running, now=T0)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ReadinessGatesNotReady"
    assert ready["message"] == (
        'corresponding condition of pod readiness gate "example.com/lb" does not exist., '
        'corresponding condition of pod readiness gate "example.com/dns" does not exist.'
    )
    assert conds(st)["ContainersReady"] == "True"
    # a controller sets the gate conditions through pods/status
    lb = {"type": "example.com/lb", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    dns = {"type": "example.com/dns", "status": "False"}
    p["status"] = {**st, "conditions": [*st["conditions"], lb, dns]}
    st = podstatus.compute(p, running, now=T0)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (
        ready["message"]
        == 'the status of pod readiness gate "example.com/dns" is not "True", but False'
    )
    assert lb in st["conditions"] and dns in st["conditions"]  # kept as they were
    p["status"]["conditions"][-1] = {**dns, "status": "True"}
    st = podstatus.compute(p, running, now=T0)
    assert conds(st)["Ready"] == "True"
    # unready containers win over the gates' message
    crashed = podstatus.PodRuntimeState(sandbox=SB, containers=[ctr("a", "exited", code=1)])
    st = podstatus.compute(p, crashed, now=T0)
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ContainersNotReady"
