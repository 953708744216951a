"""Recreate (upstream ``recreate.go``): all old pods gone, then the new ReplicaSet up.

The new ReplicaSet is only created once no old pod is running, so two
versions never run side by side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from microkube.controllers.deployment import progress, sync, util

if TYPE_CHECKING:
    from microkube.controllers.deployment.controller import DeploymentController

Obj = dict[str, Any]


async def rollout(dc: DeploymentController, d: Obj, rs_list: list[Obj]) -> None:
    new, old = await sync.get_all_rs_and_sync_revision(dc, d, rs_list, False)
    all_rss = [*old, new] if new else list(old)
    scaled = False
    for rs in util.active(old):
        if await sync.scale_rs(dc, rs, 0, d):
            scaled = True
    if scaled:
        await progress.sync_rollout_status(dc, all_rss, new, d)
        return
    if old_pods_running(dc, new, old):
        await progress.sync_rollout_status(dc, all_rss, new, d)
        return
    if new is None:
        new, old = await sync.get_all_rs_and_sync_revision(dc, d, rs_list, True)
        assert new is not None
        all_rss = [*old, new]
    await sync.scale_rs(dc, new, util.replicas(d), d)
    if util.deployment_complete(d, d.get("status") or {}):
        await sync.cleanup(dc, d, old)
    await progress.sync_rollout_status(dc, all_rss, new, d)


def old_pods_running(dc: DeploymentController, new: Obj | None, old: list[Obj]) -> bool:
    if util.sum_status(old, "replicas") > 0:
        return True
    uids = {rs["metadata"]["uid"] for rs in old}
    for pod in dc.pods_for(uids):
        if pod.get("status", {}).get("phase") in ("Failed", "Succeeded"):
            continue
        return True
    return False
