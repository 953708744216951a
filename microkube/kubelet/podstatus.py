"""Pure: a Pod's ``status`` from what the runtime reports and what the kubelet knows.

Mirrors ``kubelet.generateAPIPodStatus`` / ``convertToAPIContainerStatuses``
and ``getPhase``:

* each container's *latest* runtime container gives ``state`` and
  ``restartCount``; the one before gives ``lastState``;
* a container the kubelet holds back (``CrashLoopBackOff``,
  ``ImagePullBackOff``, ``ErrImagePull``, ``CreateContainerConfigError`` …)
  shows that *waiting* reason, with the last exit as ``lastState``;
* readiness and startup probe results come in as ``ready``/``started`` maps
  (containers without those probes are ready/started once running);
* phase: Pending while an init container or a container waits without ever
  having run; Running while one runs; then Succeeded/Failed by exit codes
  and restartPolicy;
* conditions PodReadyToStartContainers, Initialized, ContainersReady, Ready
  (and the scheduler's PodScheduled, kept), with ``lastTransitionTime``
  preserved while a condition's status does not change.

Nothing here does I/O or reads a clock: ``now`` is a parameter, so golden
tests are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from microkube.kubelet import runtime as rt

Obj = dict[str, Any]


def ts(t: datetime | None) -> str | None:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


@dataclass
class PodRuntimeState:
    """Everything :func:`compute` needs besides the pod object."""

    sandbox: rt.SandboxStatus | None = None
    containers: list[rt.ContainerStatus] = field(default_factory=list)
    """All runtime containers of the pod (every attempt of every container)."""
    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Container name → (reason, message) the kubelet holds it back with."""
    ready: dict[str, bool] = field(default_factory=dict)
    """Readiness probe results (absent: no probe, or not yet probed)."""
    started: dict[str, bool] = field(default_factory=dict)
    """Startup probe results."""
    images: dict[str, rt.ImageInfo] = field(default_factory=dict)
    """Spec image → what the pull resolved to (for ``imageID``)."""
    host_ip: str = ""
    start_time: str | None = None


def attempts(containers: list[rt.ContainerStatus], name: str) -> list[rt.ContainerStatus]:
    """Runtime containers of one spec container, newest attempt last."""
    mine = [c for c in containers if c.name == name]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(mine, key=lambda c: (c.restart_count, c.created_at or epoch))


def _terminated(c: rt.ContainerStatus) -> Obj:
    out: Obj = {
        "exitCode": c.exit_code if c.exit_code is not None else 0,
        "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
        "startedAt": ts(c.started_at),
        "finishedAt": ts(c.finished_at),
        "containerID": f"podman://{c.id}",
    }
    if c.message:
        out["message"] = c.message
    return out


def _image_id(c: rt.ContainerStatus, spec_image: str, images: dict[str, rt.ImageInfo]) -> str:
    info = images.get(spec_image)
    if info is not None and info.digest:
        return f"{info.ref.split('@')[0].rsplit(':', 1)[0]}@{info.digest}"
    iid = c.image_id or (info.id if info else "")
    if iid and not iid.startswith("sha256:") and "@" not in iid:
        iid = f"sha256:{iid}"
    return iid


def container_status(
    spec: Obj, state: PodRuntimeState, *, has_probe: dict[str, bool], init: bool = False
) -> Obj:
    name = spec["name"]
    restartable = spec.get("restartPolicy") == "Always"
    tries = attempts(state.containers, name)
    latest = tries[-1] if tries else None
    previous = tries[-2] if len(tries) > 1 else None
    out: Obj = {
        "name": name,
        "state": {},
        "lastState": {},
        "ready": False,
        "restartCount": latest.restart_count if latest else 0,
        "image": spec.get("image", ""),
        "imageID": "",
        "started": False,
    }
    if latest is not None:
        out["imageID"] = _image_id(latest, spec.get("image", ""), state.images)
        out["containerID"] = f"podman://{latest.id}"
    waiting = state.waiting.get(name)
    if waiting is not None:
        reason, message = waiting
        out["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        if latest is not None and latest.state == "exited":
            out["lastState"] = {"terminated": _terminated(latest)}
        elif previous is not None and previous.state == "exited":
            out["lastState"] = {"terminated": _terminated(previous)}
    elif latest is None or latest.state in ("created", "unknown"):
        out["state"] = {"waiting": {"reason": "PodInitializing" if init else "ContainerCreating"}}
        if previous is not None and previous.state == "exited":
            out["lastState"] = {"terminated": _terminated(previous)}
    elif latest.state == "running":
        out["state"] = {"running": {"startedAt": ts(latest.started_at)}}
        started = state.started.get(name, not has_probe.get("startup"))
        out["started"] = started
        ready = state.ready.get(name, not has_probe.get("readiness"))
        out["ready"] = bool(started and ready) and (not init or restartable)
        if previous is not None and previous.state == "exited":
            out["lastState"] = {"terminated": _terminated(previous)}
    else:
        out["state"] = {"terminated": _terminated(latest)}
        if init and latest.exit_code == 0:
            out["ready"] = True
        if previous is not None and previous.state == "exited":
            out["lastState"] = {"terminated": _terminated(previous)}
    return out


def _probes(c: Obj) -> dict[str, bool]:
    return {
        "readiness": bool(c.get("readinessProbe")),
        "startup": bool(c.get("startupProbe")),
    }


def phase(pod: Obj, init_statuses: list[Obj], statuses: list[Obj]) -> str:
    """Mirrors ``getPhase``; ``init_statuses`` excludes restartable (sidecar) ones."""
    policy = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    pending_init = False
    for s in init_statuses:
        term = s["state"].get("terminated")
        if term and term["exitCode"] == 0:
            continue
        if (term or (s["lastState"].get("terminated") and "waiting" in s["state"])) and (
            policy == "Never"
        ):
            return "Failed"
        pending_init = True
    running = waiting = stopped = succeeded = 0
    for s in statuses:
        st = s["state"]
        if "running" in st:
            running += 1
        elif "terminated" in st:
            stopped += 1
            if st["terminated"]["exitCode"] == 0:
                succeeded += 1
        elif "waiting" in st:
            if s["lastState"].get("terminated"):
                stopped += 1
            else:
                waiting += 1
    if pending_init or waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


_KUBELET_CONDITIONS = (
    "PodScheduled",
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
)


def _unready_gates(spec: Obj, conditions: list[Obj]) -> list[str]:
    """Why the readiness gates hold Ready back (mirrors ``GeneratePodReadyCondition``)."""
    by_type = {c.get("type"): c for c in conditions}
    out = []
    for gate in spec.get("readinessGates") or []:
        t = gate.get("conditionType", "")
        c = by_type.get(t)
        if c is None:
            out.append(f'corresponding condition of pod readiness gate "{t}" does not exist.')
        elif c.get("status") != "True":
            out.append(
                f'the status of pod readiness gate "{t}" is not "True", but {c.get("status")}'
            )
    return out


def _condition(type_: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    c: Obj = {"type": type_, "status": "True" if ok else "False", "lastProbeTime": None}
    if not ok and reason:
        c["reason"] = reason
    if not ok and message:
        c["message"] = message
    return c


def compute(pod: Obj, state: PodRuntimeState, *, now: datetime) -> Obj:
    """The new ``status`` of ``pod`` (a fresh dict; the pod is not modified)."""
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    inits = [
        container_status(c, state, has_probe=_probes(c), init=True)
        for c in spec.get("initContainers") or []
    ]
    mains = [container_status(c, state, has_probe=_probes(c)) for c in spec.get("containers") or []]
    sidecars = {
        c["name"] for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
    }
    mains_ran = any("waiting" not in s["state"] or s["lastState"].get("terminated") for s in mains)

    def init_done(s: Obj) -> bool:
        if s["name"] in sidecars:
            return bool(s["started"]) or mains_ran
        term = s["state"].get("terminated") or {}
        return "terminated" in s["state"] and term.get("exitCode") == 0

    initialized = all(init_done(s) for s in inits)
    if not initialized:
        for s in mains:
            if s["state"].get("waiting", {}).get("reason") == "ContainerCreating":
                s["state"] = {"waiting": {"reason": "PodInitializing"}}
    regular = [s for s in inits if s["name"] not in sidecars]
    ph = phase(pod, regular, mains)
    if old.get("phase") in ("Succeeded", "Failed"):
        ph = old["phase"]  # terminal phases never change (kubelet invariant)
    done = ph in ("Succeeded", "Failed")
    unready = [s["name"] for s in inits if s["name"] in sidecars and not s["ready"]]
    unready += [s["name"] for s in mains if not s["ready"]]
    pending_inits = [s["name"] for s in inits if not init_done(s)]
    sandbox_ok = state.sandbox is not None and state.sandbox.state == "ready" and not done
    conds = [
        _condition("PodReadyToStartContainers", sandbox_ok),
        _condition(
            "Initialized",
            initialized or done,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(pending_inits)}]",
        ),
    ]
    if done:
        conds += [
            _condition("Ready", False, "PodCompleted"),
            _condition("ContainersReady", False, "PodCompleted"),
        ]
    else:
        msg = f"containers with unready status: [{' '.join(unready)}]"
        gates = [] if unready else _unready_gates(spec, old.get("conditions") or [])
        ready = (
            _condition("Ready", False, "ReadinessGatesNotReady", ", ".join(gates))
            if gates
            else _condition("Ready", not unready, "ContainersNotReady", msg)
        )
        conds += [ready, _condition("ContainersReady", not unready, "ContainersNotReady", msg)]
    stamp = ts(now)
    previous = {c.get("type"): c for c in old.get("conditions") or []}
    for c in conds:
        p = previous.get(c["type"])
        same = p is not None and p.get("status") == c["status"] and p.get("lastTransitionTime")
        c["lastTransitionTime"] = p["lastTransitionTime"] if same and p else stamp
    # The kubelet always reports PodScheduled=True (pods bound by nodeName too).
    kept = [c for t, c in previous.items() if t == "PodScheduled" and c.get("status") == "True"]
    if not kept:
        kept = [
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": stamp,
            }
        ]
    # Conditions the kubelet does not own (readiness gates', DisruptionTarget …) stay.
    kept += [c for t, c in previous.items() if t not in _KUBELET_CONDITIONS]
    kept_fields = ("nominatedNodeName", "resize") + (("reason", "message") if done else ())
    out: Obj = {
        **{k: v for k, v in old.items() if k in kept_fields},
        "phase": ph,
        "conditions": conds + kept,
        "hostIP": state.host_ip,
        "hostIPs": [{"ip": state.host_ip}] if state.host_ip else [],
        "startTime": old.get("startTime") or state.start_time or stamp,
        "containerStatuses": mains,
        "qosClass": old.get("qosClass", "BestEffort"),
    }
    ip = state.sandbox.ip if state.sandbox is not None else ""
    if not ip and old.get("podIP"):
        ip = old["podIP"]
    if ip:
        out["podIP"] = ip
        out["podIPs"] = [{"ip": ip}]
    if inits:
        out["initContainerStatuses"] = inits
    return out
