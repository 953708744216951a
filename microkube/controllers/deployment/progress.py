"""Rollout progress: the Progressing condition and progressDeadlineSeconds (``progress.go``).

Progressing is True/ReplicaSetUpdated while pods move, True/NewReplicaSetAvailable
once complete, and False/ProgressDeadlineExceeded when nothing moved for
``progressDeadlineSeconds`` (``kubectl rollout status`` then fails).  A stuck
deployment is re-queued for the moment its deadline passes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from microkube.controllers.base import parse_time
from microkube.controllers.deployment import sync, util

if TYPE_CHECKING:
    from microkube.controllers.deployment.controller import DeploymentController

Obj = dict[str, Any]


def _subject(d: Obj, new: Obj | None) -> str:
    if new is not None:
        return f'ReplicaSet "{new["metadata"]["name"]}"'
    return f'Deployment "{d["metadata"]["name"]}"'


def timed_out(dc: DeploymentController, d: Obj, status: Obj) -> bool:
    if not util.has_progress_deadline(d):
        return False
    cond = util.get_condition(status, "Progressing")
    if cond is None or cond.get("reason") == util.NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == util.TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    return since + timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"])) < dc.now()


async def sync_rollout_status(
    dc: DeploymentController, all_rss: list[Obj], new: Obj | None, d: Obj
) -> None:
    status = sync.calculate_status(dc, all_rss, new, d)
    if not util.has_progress_deadline(d):
        util.remove_condition(status, "Progressing")
    cur = util.get_condition(d.get("status") or {}, "Progressing")
    complete = (
        int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
        and cur is not None
        and cur.get("reason") == util.NEW_RS_AVAILABLE
    )
    now = dc.stamp()
    if util.has_progress_deadline(d) and not complete:
        if util.deployment_complete(d, status):
            msg = f"{_subject(d, new)} has successfully progressed."
            util.set_condition(
                status, util.new_condition("Progressing", "True", util.NEW_RS_AVAILABLE, msg, now)
            )
        elif util.deployment_progressing(d, status):
            msg = f"{_subject(d, new)} is progressing."
            cond = util.new_condition("Progressing", "True", util.RS_UPDATED, msg, now)
            if cur is not None:
                if cur["status"] == "True":
                    cond["lastTransitionTime"] = cur.get("lastTransitionTime", now)
                util.remove_condition(status, "Progressing")
            util.set_condition(status, cond)
        elif timed_out(dc, d, status):
            msg = f"{_subject(d, new)} has timed out progressing."
            util.set_condition(
                status, util.new_condition("Progressing", "False", util.TIMED_OUT, msg, now)
            )
    if status == (d.get("status") or {}):
        requeue_stuck(dc, d, status)
        return
    d["status"] = status
    await dc.write_status(d)


def requeue_stuck(dc: DeploymentController, d: Obj, status: Obj) -> None:
    cond = util.get_condition(status, "Progressing")
    if cond is None or not util.has_progress_deadline(d):
        return
    if util.deployment_complete(d, status) or cond.get("reason") == util.TIMED_OUT:
        return
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return
    due = since + timedelta(seconds=int(d["spec"]["progressDeadlineSeconds"]))
    after = (due - dc.now()).total_seconds()
    key = f"{d['metadata']['namespace']}/{d['metadata']['name']}"
    if after < 1:
        dc.queue.add_rate_limited(key)
    else:
        dc.queue.add_after(key, after + 1)


def check_paused(dc: DeploymentController, d: Obj) -> bool:
    """Set Progressing Unknown DeploymentPaused/DeploymentResumed; True if changed."""
    if not util.has_progress_deadline(d):
        return False
    status = d.setdefault("status", {})
    cond = util.get_condition(status, "Progressing")
    if cond is not None and cond.get("reason") == util.TIMED_OUT:
        return False
    paused = bool(d["spec"].get("paused"))
    was_paused = cond is not None and cond.get("reason") == util.PAUSED
    now = dc.stamp()
    if paused and not was_paused:
        util.set_condition(
            status,
            util.new_condition("Progressing", "Unknown", util.PAUSED, "Deployment is paused", now),
        )
        return True
    if not paused and was_paused:
        util.set_condition(
            status,
            util.new_condition(
                "Progressing", "Unknown", util.RESUMED, "Deployment is resumed", now
            ),
        )
        return True
    return False
