"""Finding/creating the new ReplicaSet, scaling, cleanup and status (upstream ``sync.go``).

``get_all_rs_and_sync_revision`` splits a deployment's ReplicaSets into the
*new* one (template equal to the deployment's, ignoring pod-template-hash)
and the *old* ones, and gives the new one revision ``max(old)+1``; that bump
is what makes ``kubectl rollout undo`` (which copies an old template back)
move the old ReplicaSet to the top of ``rollout history``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from microkube import errors
from microkube.controllers import events
from microkube.controllers.deployment import util

if TYPE_CHECKING:
    from microkube.controllers.deployment.controller import DeploymentController

Obj = dict[str, Any]


async def get_all_rs_and_sync_revision(
    dc: DeploymentController, d: Obj, rs_list: list[Obj], create: bool
) -> tuple[Obj | None, list[Obj]]:
    template = d["spec"].get("template") or {}
    matching = [rs for rs in util.by_creation(rs_list) if util.equal_ignore_hash(
        rs["spec"].get("template"), template)]  # fmt: skip
    existing = matching[0] if matching else None
    old = [
        rs
        for rs in rs_list
        if existing is None or rs["metadata"]["uid"] != existing["metadata"]["uid"]
    ]
    new = await get_new_rs(dc, d, rs_list, old, existing, create)
    return new, old


async def get_new_rs(
    dc: DeploymentController,
    d: Obj,
    rs_list: list[Obj],
    old: list[Obj],
    existing: Obj | None,
    create: bool,
) -> Obj | None:
    max_old = max((util.revision(rs) for rs in old), default=0)
    new_revision = str(max_old + 1)
    now = dc.stamp()
    if existing is not None:
        cur = copy.deepcopy(existing)
        changed = util.set_new_rs_annotations(d, cur, new_revision, True)
        mrs = d["spec"].get("minReadySeconds", 0)
        if cur["spec"].get("minReadySeconds", 0) != mrs:
            cur["spec"]["minReadySeconds"] = mrs
            changed = True
        if changed:
            cur = await dc.client.update(dc.rs_rt, cur)
        needs = _set_deployment_revision(d, cur["metadata"]["annotations"].get(util.REVISION, ""))
        status = d.setdefault("status", {})
        if util.has_progress_deadline(d) and util.get_condition(status, "Progressing") is None:
            msg = f'Found new replica set "{cur["metadata"]["name"]}"'
            util.set_condition(
                status, util.new_condition("Progressing", "True", util.FOUND_NEW_RS, msg, now)
            )
            needs = True
        if needs:
            await dc.write_status(d)
        return cur
    if not create:
        return None
    collision = d.get("status", {}).get("collisionCount")
    template = util.template_without_hash(d["spec"].get("template"))
    h = util.compute_hash(template, collision)
    tmeta = template.setdefault("metadata", {})
    tmeta.setdefault("labels", {})[util.HASH_LABEL] = h
    selector = copy.deepcopy(d["spec"].get("selector") or {})
    selector.setdefault("matchLabels", {})[util.HASH_LABEL] = h
    name = f"{d['metadata']['name']}-{h}"
    rs: Obj = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": d["metadata"]["namespace"],
            "labels": dict(tmeta["labels"]),
            "ownerReferences": [dc.owner_ref(d)],
        },
        "spec": {
            "replicas": 0,
            "minReadySeconds": d["spec"].get("minReadySeconds", 0),
            "selector": selector,
            "template": template,
        },
    }
    rs["spec"]["replicas"] = util.new_rs_new_replicas(d, rs_list, rs)
    util.set_new_rs_annotations(d, rs, new_revision, False)
    already = False
    try:
        created = await dc.client.create(dc.rs_rt, d["metadata"]["namespace"], rs)
    except errors.AlreadyExists:
        found = dc.client.try_get(dc.rs_rt, d["metadata"]["namespace"], name)
        ref = util_controller_uid(found)
        if (
            found is not None
            and ref == d["metadata"]["uid"]
            and util.equal_ignore_hash(found["spec"].get("template"), d["spec"].get("template"))
        ):
            created, already = found, True
        else:
            # A hash collision: bump collisionCount so the next hash differs.
            status = d.setdefault("status", {})
            status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
            await dc.write_status(d)
            raise
    if not already and util.replicas(created) > 0:
        await dc.recorder.event(
            d,
            events.NORMAL,
            "ScalingReplicaSet",
            f"Scaled up replica set {name} to {util.replicas(created)} from 0",
        )
    needs = _set_deployment_revision(d, new_revision)
    if not already and util.has_progress_deadline(d):
        msg = f'Created new replica set "{name}"'
        util.set_condition(
            d.setdefault("status", {}),
            util.new_condition("Progressing", "True", util.NEW_RS_CREATED, msg, now),
        )
        needs = True
    if needs:
        await dc.write_status(d)
    return created


def util_controller_uid(obj: Obj | None) -> str | None:
    for ref in (obj or {}).get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _set_deployment_revision(d: Obj, rev: str) -> bool:
    ann = d["metadata"].setdefault("annotations", {})
    if not rev or ann.get(util.REVISION) == rev:
        return False
    ann[util.REVISION] = rev
    return True


async def scale_rs(
    dc: DeploymentController, rs: Obj, new_scale: int, d: Obj, *, record: bool = True
) -> bool:
    """scaleReplicaSet(AndRecordEvent): size and replica annotations; event on resize."""
    old = util.replicas(rs)
    size_changed = old != new_scale
    max_r = util.replicas(d) + util.max_surge(d)
    if not size_changed and not util.replicas_annotations_need_update(rs, util.replicas(d), max_r):
        return False
    c = copy.deepcopy(rs)
    c["spec"]["replicas"] = new_scale
    util.set_replicas_annotations(c, util.replicas(d), max_r)
    updated = await dc.client.update(dc.rs_rt, c)
    rs.clear()
    rs.update(updated)
    if size_changed and record:
        op = "up" if new_scale > old else "down"
        await dc.recorder.event(
            d,
            events.NORMAL,
            "ScalingReplicaSet",
            f"Scaled {op} replica set {rs['metadata']['name']} to {new_scale} from {old}",
        )
    return size_changed


async def scale(dc: DeploymentController, d: Obj, new: Obj | None, old: list[Obj]) -> None:
    """Proportional scaling of a deployment whose size changed mid-rollout."""
    latest = _find_active_or_latest(new, old)
    if latest is not None:
        if util.replicas(latest) != util.replicas(d):
            await scale_rs(dc, latest, util.replicas(d), d)
        return
    if util.is_saturated(d, new):
        for rs in util.active(old):
            await scale_rs(dc, rs, 0, d)
        return
    if not util.is_rolling(d):
        return
    all_rss = util.active([*old, new] if new else old)
    total = util.sum_spec(all_rss)
    allowed = util.replicas(d) + util.max_surge(d) if util.replicas(d) > 0 else 0
    to_add = allowed - total
    if to_add > 0:  # largest first, newer on ties
        all_rss.sort(key=lambda r: (-util.replicas(r), _neg_ts(r)))
    elif to_add < 0:  # largest first, older on ties
        all_rss.sort(key=lambda r: (-util.replicas(r), r["metadata"].get("creationTimestamp", "")))
    added = 0
    sizes: dict[str, int] = {}
    for rs in all_rss:
        if to_add != 0:
            p = _proportion(d, rs, to_add, added)
            sizes[rs["metadata"]["name"]] = util.replicas(rs) + p
            added += p
        else:
            sizes[rs["metadata"]["name"]] = util.replicas(rs)
    if to_add != 0 and all_rss:
        first = all_rss[0]["metadata"]["name"]
        sizes[first] = max(sizes[first] + to_add - added, 0)
    for rs in all_rss:
        await scale_rs(dc, rs, sizes[rs["metadata"]["name"]], d)


def _neg_ts(rs: Obj) -> tuple[int, ...]:
    return tuple(-ord(c) for c in rs["metadata"].get("creationTimestamp", ""))


def _find_active_or_latest(new: Obj | None, old: list[Obj]) -> Obj | None:
    if new is None and not old:
        return None
    old_sorted = util.by_creation(old, newest_first=True)
    act = util.active([*old_sorted, new] if new is not None else old_sorted)
    if not act:
        return new if new is not None else old_sorted[0]
    if len(act) == 1:
        return act[0]
    return None


def _proportion(d: Obj, rs: Obj, to_add: int, added: int) -> int:
    if util.replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    if util.replicas(d) == 0:
        frac = -util.replicas(rs)
    else:
        dep = util.replicas(d) + util.max_surge(d)
        ann = (rs["metadata"].get("annotations") or {}).get(util.MAX_REPLICAS)
        try:
            annotated = int(ann) if ann else int((d.get("status") or {}).get("replicas") or 0)
        except ValueError:
            annotated = int((d.get("status") or {}).get("replicas") or 0)
        if annotated == 0:
            frac = 0
        else:
            frac = int(_round_half_away(util.replicas(rs) * dep / annotated)) - util.replicas(rs)
    allowed = to_add - added
    return min(frac, allowed) if to_add > 0 else max(frac, allowed)


def _round_half_away(x: float) -> int:
    import math

    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


async def cleanup(dc: DeploymentController, d: Obj, old: list[Obj]) -> None:
    """Delete old ReplicaSets beyond revisionHistoryLimit (oldest first, only empty ones)."""
    limit = d["spec"].get("revisionHistoryLimit")
    if limit is None:
        return
    alive = [rs for rs in old if rs is not None and not rs["metadata"].get("deletionTimestamp")]
    diff = len(alive) - int(limit)
    if diff <= 0:
        return
    for rs in util.by_creation(alive)[:diff]:
        st = rs.get("status") or {}
        if int(st.get("replicas") or 0) != 0 or util.replicas(rs) != 0:
            continue
        if int(st.get("observedGeneration") or 0) < int(rs["metadata"].get("generation", 1)):
            continue
        try:
            await dc.client.delete(
                dc.rs_rt, rs["metadata"]["namespace"], rs["metadata"]["name"],
                uid=rs["metadata"]["uid"],
            )  # fmt: skip
        except errors.NotFound:
            pass


def calculate_status(dc: DeploymentController, all_rss: list[Obj], new: Obj | None, d: Obj) -> Obj:
    rss = [rs for rs in all_rss if rs is not None]
    available = util.sum_status(rss, "availableReplicas")
    total = util.sum_spec(rss)
    status: Obj = {
        "observedGeneration": int(d["metadata"].get("generation", 1)),
        "replicas": util.sum_status(rss, "replicas"),
        "updatedReplicas": util.sum_status([new] if new else [], "replicas"),
        "readyReplicas": util.sum_status(rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(total - available, 0),
    }
    old = d.get("status") or {}
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if old.get("conditions"):
        status["conditions"] = copy.deepcopy(old["conditions"])
    now = dc.stamp()
    if available >= util.replicas(d) - util.max_unavailable(d):
        cond = util.new_condition(
            "Available", "True", util.MIN_AVAILABLE, "Deployment has minimum availability.", now
        )
    else:
        cond = util.new_condition(
            "Available", "False", util.MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.", now,
        )  # fmt: skip
    util.set_condition(status, cond)
    for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
              "unavailableReplicas"):  # fmt: skip
        if not status[k]:
            del status[k]  # omitempty
    return status


async def sync(dc: DeploymentController, d: Obj, rs_list: list[Obj]) -> None:
    """Scale-only pass (paused deployments and scaling events)."""
    new, old = await get_all_rs_and_sync_revision(dc, d, rs_list, False)
    await scale(dc, d, new, old)
    if d["spec"].get("paused"):
        await cleanup(dc, d, old)
    all_rss = [*old, new] if new else old
    status = calculate_status(dc, all_rss, new, d)
    if status != (d.get("status") or {}):
        d["status"] = status
        await dc.write_status(d)
