"""Job status math (pure): conditions, completion indexes, pod failure policy, backoff.

Mirrors the pure parts of ``pkg/controller/job`` (``indexed_job_utils.go``,
``pod_failure_policy.go``, ``backoff_utils.go`` and the condition helpers of
``job_controller.go``) so that :mod:`microkube.controllers.job` is only about
reading pods and writing objects.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
#: Upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff.
BACKOFF_BASE = 10.0
BACKOFF_MAX = 600.0


def fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- conditions -------------------------------------------------------------


def condition(status: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in status.get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return c
    return None


def set_condition(
    status: dict[str, Any],
    ctype: str,
    cstatus: str,
    reason: str,
    message: str,
    now: datetime,
) -> bool:
    """Add or update a condition; returns True when something changed."""
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == ctype:
            if c.get("status") == cstatus and c.get("reason") == reason:
                return False
            if c.get("status") != cstatus:
                c["lastTransitionTime"] = fmt(now)
            c.update(status=cstatus, reason=reason, message=message, lastProbeTime=fmt(now))
            return True
    conds.append(
        {
            "type": ctype,
            "status": cstatus,
            "lastProbeTime": fmt(now),
            "lastTransitionTime": fmt(now),
            "reason": reason,
            "message": message,
        }
    )
    return True


def is_finished(job: dict[str, Any]) -> bool:
    st = job.get("status") or {}
    return condition(st, "Complete") is not None or condition(st, "Failed") is not None


def finish_time(job: dict[str, Any]) -> datetime | None:
    st = job.get("status") or {}
    if st.get("completionTime"):
        return parse(st["completionTime"])
    c = condition(st, "Failed") or condition(st, "Complete")
    return parse(c["lastTransitionTime"]) if c and c.get("lastTransitionTime") else None


# --- completion indexes ---------------------------------------------------------


def parse_indexes(text: str | None, limit: int | None = None) -> set[int]:
    """``"1,3-5"`` → {1, 3, 4, 5} (mirrors ``parseIndexesFromString``)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            continue
        out.update(i for i in range(a, b + 1) if limit is None or i < limit)
    return out


def format_indexes(indexes: set[int]) -> str:
    """{1, 3, 4, 5} → ``"1,3-5"`` (intervals, ascending)."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(_interval(run))
        run = [i]
    if run:
        parts.append(_interval(run))
    return ",".join(parts)


def _interval(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def pod_index(pod: dict[str, Any]) -> int | None:
    m = pod.get("metadata") or {}
    raw = (m.get("annotations") or {}).get(COMPLETION_INDEX) or (m.get("labels") or {}).get(
        COMPLETION_INDEX
    )
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


# --- pod outcome ----------------------------------------------------------------


def pod_succeeded(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Succeeded"


def pod_failed(pod: dict[str, Any], replacement_policy: str) -> bool:
    """Mirrors ``isPodFailed``: Failed, or deleted before finishing (unless policy Failed)."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Failed":
        return True
    if replacement_policy == "Failed":
        return False
    return bool((pod.get("metadata") or {}).get("deletionTimestamp")) and phase != "Succeeded"


def pod_finish_time(pod: dict[str, Any]) -> datetime | None:
    latest: datetime | None = None
    st = pod.get("status") or {}
    for cs in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or []):
        fin = ((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")
        if fin:
            t = parse(fin)
            latest = t if latest is None or t > latest else latest
    if latest is None and (pod.get("metadata") or {}).get("deletionTimestamp"):
        latest = parse(pod["metadata"]["deletionTimestamp"])
    return latest


def backoff_remaining(
    failed: int, last_failure: datetime | None, now: datetime, *, base: float = BACKOFF_BASE
) -> float:
    """Seconds to wait before replacing failed pods (mirrors ``getRemainingTimeForBackoff``)."""
    if failed <= 0 or last_failure is None or base <= 0:
        return 0.0
    delay = min(base * (2 ** (failed - 1)), BACKOFF_MAX)
    return max((last_failure + timedelta(seconds=delay) - now).total_seconds(), 0.0)


# --- pod failure policy ------------------------------------------------------------


def match_pod_failure_policy(
    policy: dict[str, Any] | None, pod: dict[str, Any]
) -> tuple[str | None, str]:
    """First matching rule's action and a message (mirrors ``matchPodFailurePolicy``).

    Only pods in phase Failed are matched.  Returns ``(None, "")`` when no rule
    matches (the failure counts against backoffLimit).
    """
    if not policy or (pod.get("status") or {}).get("phase") != "Failed":
        return None, ""
    st = pod.get("status") or {}
    statuses = (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or [])
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        on_codes = rule.get("onExitCodes")
        if on_codes:
            container = on_codes.get("containerName")
            op = on_codes.get("operator")
            values = set(on_codes.get("values") or [])
            for cs in statuses:
                if container and cs.get("name") != container:
                    continue
                term = (cs.get("state") or {}).get("terminated")
                if not term:
                    continue
                code = int(term.get("exitCode", 0))
                if code == 0:
                    continue
                if (op == "In" and code in values) or (op == "NotIn" and code not in values):
                    m = pod["metadata"]
                    msg = (
                        f"Container {cs.get('name')} for pod {m.get('namespace')}/{m.get('name')} "
                        f"failed with exit code {code} matching {action} rule at index {i}"
                    )
                    return action, msg
        for pattern in rule.get("onPodConditions") or []:
            for c in st.get("conditions") or []:
                if c.get("type") == pattern.get("type") and c.get("status") == pattern.get(
                    "status", "True"
                ):
                    m = pod["metadata"]
                    msg = (
                        f"Pod {m.get('namespace')}/{m.get('name')} has condition "
                        f"{c['type']} matching {action} rule at index {i}"
                    )
                    return action, msg
    return None, ""
