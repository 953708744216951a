"""RollingUpdate (upstream ``rolling.go``): surge the new ReplicaSet, drain the old ones.

Each pass does at most one of: scale the new ReplicaSet up (bounded by
``replicas + maxSurge`` pods in total), or scale old ReplicaSets down (bounded
so that at least ``replicas - maxUnavailable`` pods stay available, first
removing old pods that are unavailable anyway).  Pod readiness changes bring
the deployment back here until it is complete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from microkube.controllers.deployment import progress, sync, util

if TYPE_CHECKING:
    from microkube.controllers.deployment.controller import DeploymentController

Obj = dict[str, Any]


async def rollout(dc: DeploymentController, d: Obj, rs_list: list[Obj]) -> None:
    new, old = await sync.get_all_rs_and_sync_revision(dc, d, rs_list, True)
    assert new is not None
    all_rss = [*old, new]
    if await reconcile_new(dc, all_rss, new, d):
        await progress.sync_rollout_status(dc, all_rss, new, d)
        return
    if await reconcile_old(dc, all_rss, util.active(old), new, d):
        await progress.sync_rollout_status(dc, all_rss, new, d)
        return
    if util.deployment_complete(d, d.get("status") or {}):
        await sync.cleanup(dc, d, old)
    await progress.sync_rollout_status(dc, all_rss, new, d)


async def reconcile_new(dc: DeploymentController, all_rss: list[Obj], new: Obj, d: Obj) -> bool:
    want = util.replicas(d)
    if util.replicas(new) == want:
        return False
    if util.replicas(new) > want:
        return await sync.scale_rs(dc, new, want, d)
    return await sync.scale_rs(dc, new, util.new_rs_new_replicas(d, all_rss, new), d)


async def reconcile_old(
    dc: DeploymentController, all_rss: list[Obj], old: list[Obj], new: Obj, d: Obj
) -> bool:
    if util.sum_spec(old) == 0:
        return False
    all_pods = util.sum_spec(all_rss)
    min_available = util.replicas(d) - util.max_unavailable(d)
    new_unavailable = util.replicas(new) - int(
        (new.get("status") or {}).get("availableReplicas") or 0
    )
    max_scaled_down = all_pods - min_available - new_unavailable
    if max_scaled_down <= 0:
        return False
    cleaned = await _cleanup_unhealthy(dc, old, d, max_scaled_down)
    if cleaned is None:
        return False
    scaled = await _scale_down_old(dc, [*old, new], old, d)
    return cleaned + scaled > 0


async def _cleanup_unhealthy(
    dc: DeploymentController, old: list[Obj], d: Obj, max_cleanup: int
) -> int | None:
    """Scale old ReplicaSets down by their unavailable pods; None when a status is stale.

    An old ReplicaSet reporting more available pods than its size has not
    yet caught up with our last scale-down (its deleted pods still count).
    Upstream's cleanupUnhealthyReplicas fails the pass then ("invalid request
    to scale down"); we end the pass the same way, minus the error: that
    ReplicaSet's next status write brings the deployment back.  Computing
    with the stale figure would scale it back *up*.
    """
    total = 0
    for rs in util.by_creation(old):
        if total >= max_cleanup:
            break
        n = util.replicas(rs)
        avail = int((rs.get("status") or {}).get("availableReplicas") or 0)
        if n == 0 or n == avail:
            continue
        if avail > n:
            return None
        down = min(max_cleanup - total, n - avail)
        await sync.scale_rs(dc, rs, n - down, d)
        total += down
    return total


async def _scale_down_old(
    dc: DeploymentController, all_rss: list[Obj], old: list[Obj], d: Obj
) -> int:
    min_available = util.replicas(d) - util.max_unavailable(d)
    available = util.sum_status(all_rss, "availableReplicas")
    if available <= min_available:
        return 0
    target = available - min_available
    total = 0
    for rs in util.by_creation(old):
        if total >= target:
            break
        n = util.replicas(rs)
        if n == 0:
            continue
        down = min(n, target - total)
        await sync.scale_rs(dc, rs, n - down, d)
        total += down
    return total
