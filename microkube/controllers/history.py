"""ControllerRevisions and pods made from templates, shared by StatefulSet, DaemonSet and Job.

Mirrors ``pkg/controller/history`` and ``controller.ComputeHash``: a workload's
pod template is snapshotted into a ControllerRevision whose ``data`` is the
strategic-merge patch ``{"spec": {"template": {..., "$patch": "replace"}}}``
and whose name is ``<parent>-<hash>``.  The hash is FNV-32a over the data plus
the parent's ``collisionCount``, rendered as its decimal digits mapped through
apimachinery's ``rand.SafeEncodeString`` alphabet (so names look like
upstream's ``web-7b9c8d5f4``).  Byte-for-byte equality with Go's hash is not a
goal (upstream hashes a spew dump); stability and determinism are.

Finding "the" revision for a template: an existing revision with equal data is
reused (if it is not the newest, its ``revision`` number is bumped, which is
how a rollback keeps numbering monotonic); otherwise a new one is created, and
a name clash with different data bumps ``status.collisionCount`` and retries.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from microkube import errors
from microkube.client.local import LocalClient
from microkube.objects import meta
from microkube.objects.hashing import fnv32a, safe_encode

REVISION_HASH_LABEL = "controller-revision-hash"


def compute_hash(data: Any, collision_count: int | None = None) -> str:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        raw += str(collision_count).encode()
    return safe_encode(str(fnv32a(raw)))


def template_patch(workload: dict[str, Any]) -> dict[str, Any]:
    """The revision data of a StatefulSet/DaemonSet (mirrors ``getPatch``)."""
    template = copy.deepcopy((workload.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def revision_name(parent: str, hash_: str) -> str:
    return f"{parent[:223]}-{hash_}"


def owned_revisions(client: LocalClient, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """ControllerRevisions controlled by ``owner``, oldest revision first."""
    rt = client.resource("apps", "controllerrevisions")
    uid = owner["metadata"]["uid"]
    out = [
        r
        for r in client.list(rt, owner["metadata"]["namespace"]).items
        if (meta.controller_ref(r) or {}).get("uid") == uid
    ]
    out.sort(key=lambda r: (int(r.get("revision") or 0), r["metadata"]["name"]))
    return out


async def ensure_revision(
    client: LocalClient,
    owner: dict[str, Any],
    revisions: list[dict[str, Any]],
    *,
    extra_labels: dict[str, str] | None = None,
    collision_count: int = 0,
) -> tuple[dict[str, Any], int]:
    """The revision of ``owner``'s current template, created if needed.

    Returns ``(revision, collision_count)``; ``revisions`` is the owned list
    (oldest first) and is not modified.
    """
    rt = client.resource("apps", "controllerrevisions")
    ns = owner["metadata"]["namespace"]
    data = template_patch(owner)
    latest = max((int(r.get("revision") or 0) for r in revisions), default=0)
    equal = [r for r in revisions if r.get("data") == data]
    if equal:
        rev = equal[-1]
        if int(rev.get("revision") or 0) == latest:
            return rev, collision_count

        def bump(obj: dict[str, Any]) -> dict[str, Any]:
            obj["revision"] = latest + 1
            return obj

        updated = await client.mutate(rt, ns, rev["metadata"]["name"], bump)
        assert updated is not None
        return updated, collision_count
    labels = dict(((owner["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {})
    labels.update(extra_labels or {})
    for _ in range(20):
        h = compute_hash(data, collision_count)
        body: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {
                "name": revision_name(owner["metadata"]["name"], h),
                "namespace": ns,
                "labels": {**labels, REVISION_HASH_LABEL: h},
                "ownerReferences": [meta.owner_ref(owner)],
            },
            "data": data,
            "revision": latest + 1,
        }
        try:
            return await client.create(rt, ns, body), collision_count
        except errors.AlreadyExists:
            existing = client.try_get(rt, ns, body["metadata"]["name"])
            if existing is not None and existing.get("data") == data:
                return existing, collision_count
            collision_count += 1
    raise errors.InternalError(f"could not find a free ControllerRevision name for {ns}/{owner}")


async def truncate_history(
    client: LocalClient,
    owner: dict[str, Any],
    revisions: list[dict[str, Any]],
    live: set[str],
) -> None:
    """Delete the oldest non-live revisions beyond ``spec.revisionHistoryLimit``."""
    rt = client.resource("apps", "controllerrevisions")
    limit = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10))
    history = [r for r in revisions if r["metadata"]["name"] not in live]
    for r in history[: max(len(history) - limit, 0)]:
        try:
            await client.delete(rt, r["metadata"]["namespace"], r["metadata"]["name"])
        except errors.NotFound:
            pass


def pod_from_template(
    owner: dict[str, Any],
    template: dict[str, Any],
    *,
    name: str = "",
    generate_name: str = "",
) -> dict[str, Any]:
    """A Pod for ``owner`` from its pod template (mirrors ``GetPodFromTemplate``)."""
    tmeta = template.get("metadata") or {}
    m: dict[str, Any] = {
        "namespace": owner["metadata"]["namespace"],
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [meta.owner_ref(owner)],
    }
    if tmeta.get("annotations"):
        m["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        m["finalizers"] = list(tmeta["finalizers"])
    if name:
        m["name"] = name
    else:
        m["generateName"] = generate_name or owner["metadata"]["name"] + "-"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": m,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def owned(objs: list[dict[str, Any]], owner: dict[str, Any]) -> list[dict[str, Any]]:
    uid = owner["metadata"]["uid"]
    return [o for o in objs if (meta.controller_ref(o) or {}).get("uid") == uid]


def pod_ready(pod: dict[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def pod_active(pod: dict[str, Any]) -> bool:
    """Not terminal and not being deleted (mirrors ``controller.IsPodActive``)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not meta.is_deleting(pod)


async def delete_quietly(client: LocalClient, rt: Any, namespace: str, name: str) -> bool:
    try:
        await client.delete(rt, namespace, name, propagation_policy="Background")
    except errors.NotFound:
        return False
    return True
