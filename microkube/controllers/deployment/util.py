"""Pure helpers over Deployments and ReplicaSets (``pkg/controller/deployment/util``).

No I/O here: hashing the pod template, revision and replica annotations,
maxSurge/maxUnavailable arithmetic, ReplicaSet sorting and counting, and
deployment conditions.  The controller modules compose them.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from microkube.objects.hashing import fnv32a, safe_encode

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
HASH_LABEL = "pod-template-hash"
MAX_INT32 = 2**31 - 1
_SKIP_COPY = {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
              "deprecated.deployment.rollback.to"}  # fmt: skip

# condition reasons (deploymentutil)
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

# --- hashing ------------------------------------------------------------------------


def compute_hash(template: Obj, collision_count: int | None) -> str:
    """controller.ComputeHash: FNV-32a of the template, then collisionCount, then SafeEncodeString.

    Checked against upstream (``pkg/controller/controller_utils.go`` ComputeHash,
    ``pkg/util/hash`` DeepHashObject, apimachinery ``rand.SafeEncodeString``):
    when collisionCount is set, 8 bytes follow the template (the count as a
    little-endian uint32, then 4 zero bytes); ``Sum32`` is rendered in decimal
    and each digit mapped onto ``bcdfghjklmnpqrstvwxz2456789``.  Only the bytes
    of the template differ: upstream writes Go's ``dump.ForHash`` (spew) of the
    typed ``v1.PodTemplateSpec``, whose text depends on the Go field order and
    types of one Kubernetes release, so the same template hashes differently
    across releases there too; we write canonical JSON, stable for this server.
    No client reads meaning into the value, only equality.
    """
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += int(collision_count & 0xFFFFFFFF).to_bytes(4, "little") + b"\0\0\0\0"
    return safe_encode(str(fnv32a(data)))


def template_without_hash(template: Obj | None) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels and HASH_LABEL in labels:
        del labels[HASH_LABEL]
        if not labels:
            del t["metadata"]["labels"]
    return t


def equal_ignore_hash(a: Obj | None, b: Obj | None) -> bool:
    return template_without_hash(a) == template_without_hash(b)


# --- replica arithmetic -----------------------------------------------------------


def replicas(obj: Obj | None) -> int:
    if obj is None:
        return 0
    return int((obj.get("spec") or {}).get("replicas", 1))


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    s = str(value)
    if s.endswith("%"):
        pct = int(s[:-1])
        v = pct * total / 100
        return math.ceil(v) if round_up else math.floor(v)
    return int(s)


def is_rolling(d: Obj) -> bool:
    strategy = (d.get("spec", {}).get("strategy") or {}).get("type", "RollingUpdate")
    return bool(strategy == "RollingUpdate")


def resolve_fenceposts(d: Obj) -> tuple[int, int]:
    ru = (d.get("spec", {}).get("strategy") or {}).get("rollingUpdate") or {}
    desired = replicas(d)
    surge = scaled_value(ru.get("maxSurge", "25%"), desired, True)
    unavailable = scaled_value(ru.get("maxUnavailable", "25%"), desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    return resolve_fenceposts(d)[0] if is_rolling(d) else 0


def max_unavailable(d: Obj) -> int:
    if not is_rolling(d) or replicas(d) == 0:
        return 0
    return min(resolve_fenceposts(d)[1], replicas(d))


def sum_spec(rss: list[Obj]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def sum_status(rss: list[Obj], field: str) -> int:
    return sum(int((rs.get("status") or {}).get(field) or 0) for rs in rss if rs is not None)


def active(rss: list[Obj]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def by_creation(rss: list[Obj], *, newest_first: bool = False) -> list[Obj]:
    def k(rs: Obj) -> tuple[str, str]:
        return (rs["metadata"].get("creationTimestamp") or "", rs["metadata"]["name"])

    return sorted(rss, key=k, reverse=newest_first)


def revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj | None) -> int:
    """NewRSNewReplicas: how big the new ReplicaSet may be now."""
    if not is_rolling(d):
        return replicas(d)
    current = sum_spec(all_rss)
    max_total = replicas(d) + max_surge(d)
    if current >= max_total:
        return replicas(new_rs)
    up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + up


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    if rs is None:
        return False
    ann = (rs["metadata"].get("annotations") or {}).get(DESIRED_REPLICAS)
    return (
        ann == str(replicas(d))
        and int((rs.get("status") or {}).get("availableReplicas") or 0) == replicas(d)
        and replicas(rs) == replicas(d)
    )


# --- annotations -----------------------------------------------------------------------


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for k, v in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(k) != v:
            ann[k] = v
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].get("annotations") or {}
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def copy_deployment_annotations(d: Obj, rs: Obj) -> bool:
    """copyDeploymentAnnotationsToReplicaSet (change-cause and user annotations)."""
    changed = False
    rann = rs["metadata"].setdefault("annotations", {})
    for k, v in (d["metadata"].get("annotations") or {}).items():
        if k in _SKIP_COPY or rann.get(k) == v:
            continue
        rann[k] = v
        changed = True
    return changed


def set_new_rs_annotations(d: Obj, rs: Obj, new_revision: str, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations."""
    changed = copy_deployment_annotations(d, rs)
    ann = rs["metadata"].setdefault("annotations", {})
    old = ann.get(REVISION, "")
    try:
        old_n = int(old) if old else 0
        new_n = int(new_revision)
    except ValueError:
        old_n, new_n = 0, 0
    if old_n < new_n:
        ann[REVISION] = new_revision
        changed = True
        if old:
            hist = [h for h in ann.get(REVISION_HISTORY, "").split(",") if h]
            ann[REVISION_HISTORY] = ",".join([*hist, old])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


# --- conditions -----------------------------------------------------------------------


def get_condition(status: Obj, type_: str) -> Obj | None:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def new_condition(type_: str, status: str, reason: str, message: str, now: str) -> Obj:
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def set_condition(status: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: keep lastTransitionTime when the status did not flip."""
    cur = get_condition(status, cond["type"])
    if cur is not None and cur["status"] == cond["status"] and cur.get("reason") == cond["reason"]:
        return
    if cur is not None and cur["status"] == cond["status"]:
        cond["lastTransitionTime"] = cur.get("lastTransitionTime", cond["lastTransitionTime"])
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def remove_condition(status: Obj, type_: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def has_progress_deadline(d: Obj) -> bool:
    pds = d.get("spec", {}).get("progressDeadlineSeconds")
    return pds is not None and int(pds) != MAX_INT32


def deployment_complete(d: Obj, status: Obj) -> bool:
    n = replicas(d)
    return (
        int(status.get("updatedReplicas") or 0) == n
        and int(status.get("replicas") or 0) == n
        and int(status.get("availableReplicas") or 0) == n
        and int(status.get("observedGeneration") or 0) >= int(d["metadata"].get("generation", 1))
    )


def deployment_progressing(d: Obj, new: Obj) -> bool:
    old = d.get("status") or {}

    def g(s: Obj, k: str) -> int:
        return int(s.get(k) or 0)

    old_old = g(old, "replicas") - g(old, "updatedReplicas")
    new_old = g(new, "replicas") - g(new, "updatedReplicas")
    return (
        g(new, "updatedReplicas") > g(old, "updatedReplicas")
        or new_old < old_old
        or g(new, "readyReplicas") > g(old, "readyReplicas")
        or g(new, "availableReplicas") > g(old, "availableReplicas")
    )
