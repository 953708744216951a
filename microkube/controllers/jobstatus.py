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
FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
IGNORED_FAILURE_COUNT = "batch.kubernetes.io/job-index-ignored-failure-count"
_MAX_INT32 = 2**31 - 1
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
    """One run as upstream's ``orderedIntervals.String``: ``3``, ``3,4`` or ``3-5``."""
    if len(run) == 1:
        return str(run[0])
    return f"{run[0]},{run[1]}" if len(run) == 2 else f"{run[0]}-{run[-1]}"


def pod_index(pod: dict[str, Any]) -> int | None:
    m = pod.get("metadata") or {}
    raw = (m.get("annotations") or {}).get(COMPLETION_INDEX) or (m.get("labels") or {}).get(
        COMPLETION_INDEX
    )
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


# --- backoffLimitPerIndex ---------------------------------------------------------
#
# Mirrors the per-index parts of ``indexed_job_utils.go``: every pod of such a
# Job carries how often its index already failed (and how many failures the
# pod failure policy ignored); a replacement pod gets the replaced pod's
# counts plus this failure, and waits for its own index's back-off.


def _annotation_count(pod: dict[str, Any], key: str) -> int:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        value = int(raw) if raw is not None else 0
    except ValueError:
        return 0
    return value if 0 <= value <= _MAX_INT32 else 0


def index_failure_counts(pod: dict[str, Any]) -> tuple[int, int]:
    """(failures, ignored failures) recorded on ``pod`` for its index."""
    return _annotation_count(pod, FAILURE_COUNT), _annotation_count(pod, IGNORED_FAILURE_COUNT)


def _counted(spec: dict[str, Any], pod: dict[str, Any]) -> tuple[str | None, bool]:
    """The pod failure policy's action for ``pod`` and whether the failure counts."""
    if not spec.get("podFailurePolicy"):
        return None, True
    action, _ = match_pod_failure_policy(spec.get("podFailurePolicy"), pod)
    return action, action != "Ignore"


def index_failed(spec: dict[str, Any], pod: dict[str, Any]) -> bool:
    """Mirrors ``isIndexFailed``: FailIndex, or a counted failure past backoffLimitPerIndex."""
    if not pod_failed(pod, spec.get("podReplacementPolicy", "TerminatingOrFailed")):
        return False
    action, counted = _counted(spec, pod)
    if action == "FailIndex":
        return True
    limit = int(spec.get("backoffLimitPerIndex") or 0)
    return counted and index_failure_counts(pod)[0] >= limit


def replacement_failure_counts(
    spec: dict[str, Any], replaced: dict[str, Any] | None
) -> tuple[int, int]:
    """Mirrors ``getNewIndexFailureCounts``: the counts for the pod replacing ``replaced``."""
    if replaced is None:
        return 0, 0
    failures, ignored = index_failure_counts(replaced)
    if _counted(spec, replaced)[1]:
        return failures + 1, ignored
    return failures, ignored + 1


def index_backoff_remaining(
    replaced: dict[str, Any] | None, now: datetime, *, base: float = BACKOFF_BASE
) -> float:
    """Mirrors ``getRemainingTimePerIndex``: back-off of the index whose pod ``replaced`` failed."""
    if replaced is None:
        return 0.0
    failures, ignored = index_failure_counts(replaced)
    return backoff_remaining(failures + ignored + 1, pod_finish_time(replaced), now, base=base)


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
