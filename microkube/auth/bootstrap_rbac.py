"""The default ClusterRoles and ClusterRoleBindings every cluster starts with.

Mirrors ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy``: the user-facing
roles ``cluster-admin``, ``admin``, ``edit`` and ``view`` (the last three
*aggregated*: their rules are the union of every ClusterRole labelled
``rbac.authorization.k8s.io/aggregate-to-<role>: "true"``, so CRD authors can
extend them), the ``system:aggregate-to-*`` roles that hold the built-in rules,
and the discovery roles bound to every authenticated user.

Created when missing on every start (the apiserver's ``autoupdate`` default);
objects an administrator changed are left alone.
"""

from __future__ import annotations

from typing import Any

from microkube import errors
from microkube.resources.registry import Registry

RBAC = "rbac.authorization.k8s.io"
_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
_ANNOTATIONS = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def _url_rule(urls: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"nonResourceURLs": urls, "verbs": verbs}


def _role(
    name: str,
    rules: list[dict[str, Any]],
    *,
    labels: dict[str, str] | None = None,
    aggregate: str = "",
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {**_LABELS, **(labels or {})},
            "annotations": dict(_ANNOTATIONS),
        },
        "rules": rules,
    }
    if aggregate:
        obj["aggregationRule"] = {
            "clusterRoleSelectors": [{"matchLabels": {f"{RBAC}/aggregate-to-{aggregate}": "true"}}]
        }
        obj["rules"] = []
    return obj


def _binding(name: str, role: str, groups: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(_LABELS), "annotations": dict(_ANNOTATIONS)},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": g} for g in groups],
    }


_VIEW = [
    _rule(
        [""],
        [
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "pods",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "serviceaccounts",
            "services",
            "services/status",
        ],
        _READ,
    ),
    _rule(
        [""],
        [
            "bindings",
            "events",
            "limitranges",
            "namespaces/status",
            "pods/log",
            "pods/status",
            "replicationcontrollers/status",
            "resourcequotas",
            "resourcequotas/status",
        ],
        _READ,
    ),
    _rule([""], ["namespaces"], _READ),
    _rule(["discovery.k8s.io"], ["endpointslices"], _READ),
    _rule(
        ["apps"],
        [
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
        _READ,
    ),
    _rule(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], _READ),
    _rule(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], _READ),
    _rule(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], _READ),
    _rule(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], _READ),
]

_EDIT = [
    _rule(
        [""],
        [
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
            "secrets",
            "services/proxy",
        ],
        _READ,
    ),
    _rule([""], ["serviceaccounts"], ["impersonate"]),
    _rule([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], _WRITE),
    _rule([""], ["pods/eviction"], ["create"]),
    _rule(
        [""],
        [
            "configmaps",
            "events",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ],
        _WRITE,
    ),
    _rule([""], ["serviceaccounts/token"], ["create"]),
    _rule(
        ["apps"],
        [
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ],
        _WRITE,
    ),
    _rule(["autoscaling"], ["horizontalpodautoscalers"], _WRITE),
    _rule(["batch"], ["cronjobs", "jobs"], _WRITE),
    _rule(["policy"], ["poddisruptionbudgets"], _WRITE),
    _rule(["networking.k8s.io"], ["ingresses", "networkpolicies"], _WRITE),
    _rule(["coordination.k8s.io"], ["leases"], [*_WRITE, *_READ]),
]

_ADMIN = [
    _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
    _rule([RBAC], ["rolebindings", "roles"], [*_WRITE, *_READ]),
]

_HEALTH_URLS = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def _agg(name: str) -> dict[str, str]:
    return {f"{RBAC}/aggregate-to-{name}": "true"}


CLUSTER_ROLES: tuple[dict[str, Any], ...] = (
    _role(
        "cluster-admin",
        [_rule(["*"], ["*"], ["*"]), _url_rule(["*"], ["*"])],
    ),
    _role("admin", [], aggregate="admin"),
    _role("edit", [], labels=_agg("admin"), aggregate="edit"),
    _role("view", [], labels=_agg("edit"), aggregate="view"),
    _role("system:aggregate-to-admin", _ADMIN, labels=_agg("admin")),
    _role("system:aggregate-to-edit", _EDIT, labels=_agg("edit")),
    _role("system:aggregate-to-view", _VIEW, labels=_agg("view")),
    _role(
        "system:discovery",
        [
            _url_rule(
                ["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", *_HEALTH_URLS],
                ["get"],
            )
        ],
    ),
    _role(
        "system:basic-user",
        [
            _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
            _rule(
                ["authorization.k8s.io"],
                ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ["create"],
            ),
        ],
    ),
    _role("system:public-info-viewer", [_url_rule(_HEALTH_URLS, ["get"])]),
    # metrics-server's components.yaml: kubectl top for whoever may view pods
    _role(
        "system:aggregated-metrics-reader",
        [_rule(["metrics.k8s.io"], ["pods", "nodes"], _READ)],
        labels={"k8s-app": "metrics-server", **_agg("admin"), **_agg("edit"), **_agg("view")},
    ),
)

CLUSTER_ROLE_BINDINGS: tuple[dict[str, Any], ...] = (
    _binding("cluster-admin", "cluster-admin", ["system:masters"]),
    _binding("system:discovery", "system:discovery", ["system:authenticated"]),
    _binding("system:basic-user", "system:basic-user", ["system:authenticated"]),
    _binding(
        "system:public-info-viewer",
        "system:public-info-viewer",
        ["system:authenticated", "system:unauthenticated"],
    ),
)


async def ensure(registry: Registry) -> None:
    """Create the default roles and bindings that are missing (idempotent)."""
    import copy

    cat = registry.catalog
    roles = cat.get(RBAC, "v1", "clusterroles")
    bindings = cat.get(RBAC, "v1", "clusterrolebindings")
    assert roles is not None and bindings is not None
    for rt, objs in ((roles, CLUSTER_ROLES), (bindings, CLUSTER_ROLE_BINDINGS)):
        for obj in objs:
            if registry.try_get(rt, "", obj["metadata"]["name"]) is not None:
                continue
            try:
                await registry.create(rt, "", copy.deepcopy(obj))
            except errors.AlreadyExists:
                pass
