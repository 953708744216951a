"""RBAC evaluation over real Role/Binding objects, with upstream 403 wording."""

from __future__ import annotations

import pytest

from microkube import errors
from microkube.api import requestinfo
from microkube.auth import bootstrap_rbac, rbac
from microkube.resources.registry import Registry

pytestmark = pytest.mark.anyio
RBAC = "rbac.authorization.k8s.io"
BOB = {"username": "bob", "groups": ["devs", "system:authenticated"]}


def rt(reg: Registry, plural: str):  # noqa: ANN201
    found = reg.catalog.get(RBAC, "v1", plural)
    assert found is not None
    return found


async def bind(
    reg: Registry,
    kind: str,
    name: str,
    role_kind: str,
    role: str,
    subjects: list[dict],
    namespace: str = "",
) -> None:
    body = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role},
        "subjects": subjects,
    }
    await reg.create(
        rt(reg, "rolebindings" if kind == "RoleBinding" else "clusterrolebindings"), namespace, body
    )


def check(
    authz: rbac.RBACAuthorizer, user: dict, method: str, path: str, query: dict | None = None
) -> str:
    try:
        authz.authorize(user, requestinfo.parse(method, path, query))
    except errors.Forbidden as exc:
        return exc.message
    return "allowed"


async def test_masters_and_discovery(registry: Registry) -> None:
    authz = rbac.RBACAuthorizer(registry)
    admin = {"username": "admin", "groups": ["system:masters", "system:authenticated"]}
    assert check(authz, admin, "DELETE", "/api/v1/namespaces/default/pods/x") == "allowed"
    assert check(authz, BOB, "GET", "/apis/apps/v1") == "allowed"
    assert check(authz, BOB, "GET", "/version") == "allowed"
    assert (
        check(authz, BOB, "GET", "/metrics") == 'forbidden: User "bob" cannot get path "/metrics"'
    )
    assert (
        check(authz, BOB, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        == "allowed"
    )


async def test_view_can_get_but_not_delete(registry: Registry) -> None:
    authz = rbac.RBACAuthorizer(registry)
    assert check(authz, BOB, "GET", "/api/v1/namespaces/default/pods/x") == (
        'pods "x" is forbidden: User "bob" cannot get resource "pods" in API group "" '
        'in the namespace "default"'
    )
    await bind(
        registry,
        "ClusterRoleBinding",
        "bob-view",
        "ClusterRole",
        "view",
        [{"kind": "User", "name": "bob", "apiGroup": RBAC}],
    )
    assert check(authz, BOB, "GET", "/api/v1/namespaces/default/pods/x") == "allowed"
    assert check(authz, BOB, "GET", "/api/v1/pods", {"watch": "1"}) == "allowed"
    assert check(authz, BOB, "GET", "/api/v1/namespaces/default/pods/x/log") == "allowed"
    assert check(authz, BOB, "GET", "/api/v1/namespaces/default/secrets") == (
        'secrets is forbidden: User "bob" cannot list resource "secrets" in API group "" '
        'in the namespace "default"'
    )
    assert check(authz, BOB, "DELETE", "/apis/apps/v1/namespaces/default/deployments/web") == (
        'deployments.apps "web" is forbidden: User "bob" cannot delete resource "deployments" '
        'in API group "apps" in the namespace "default"'
    )
    assert check(authz, BOB, "DELETE", "/api/v1/namespaces/default/pods") == (
        'pods is forbidden: User "bob" cannot deletecollection resource "pods" in API group "" '
        'in the namespace "default"'
    )
    assert check(authz, BOB, "POST", "/api/v1/namespaces/default/pods/x/exec") == (
        'pods "x" is forbidden: User "bob" cannot create resource "pods/exec" in API group "" '
        'in the namespace "default"'
    )
    assert check(authz, BOB, "DELETE", "/api/v1/nodes/n1") == (
        'nodes "n1" is forbidden: User "bob" cannot delete resource "nodes" in API group "" '
        "at the cluster scope"
    )


async def test_aggregation_follows_labelled_roles(registry: Registry) -> None:
    authz = rbac.RBACAuthorizer(registry)
    await bind(
        registry,
        "RoleBinding",
        "bob-edit",
        "ClusterRole",
        "edit",
        [{"kind": "Group", "name": "devs", "apiGroup": RBAC}],
        namespace="dev",
    )
    # edit includes view (view is labelled aggregate-to-edit) and its own rules.
    assert check(authz, BOB, "GET", "/api/v1/namespaces/dev/pods") == "allowed"
    assert check(authz, BOB, "DELETE", "/api/v1/namespaces/dev/pods/x") == "allowed"
    assert check(authz, BOB, "GET", "/api/v1/namespaces/default/pods").startswith(
        "pods is forbidden"
    )
    assert check(
        authz, BOB, "GET", "/apis/stable.example.com/v1/namespaces/dev/crontabs"
    ).startswith("crontabs.stable.example.com is forbidden")
    await registry.create(
        rt(registry, "clusterroles"),
        "",
        {
            "metadata": {"name": "crontab-view", "labels": {f"{RBAC}/aggregate-to-view": "true"}},
            "rules": [
                {
                    "apiGroups": ["stable.example.com"],
                    "resources": ["crontabs"],
                    "verbs": ["get", "list"],
                }
            ],
        },
    )
    assert (
        check(authz, BOB, "GET", "/apis/stable.example.com/v1/namespaces/dev/crontabs") == "allowed"
    )


async def test_roles_resource_names_and_service_accounts(registry: Registry) -> None:
    authz = rbac.RBACAuthorizer(registry)
    await registry.create(
        rt(registry, "roles"),
        "dev",
        {
            "metadata": {"name": "one-cm"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["app"],
                    "verbs": ["get", "update"],
                },
                {"apiGroups": [""], "resources": ["*/status"], "verbs": ["get"]},
            ],
        },
    )
    await bind(
        registry,
        "RoleBinding",
        "sa",
        "Role",
        "one-cm",
        [{"kind": "ServiceAccount", "name": "builder"}],
        namespace="dev",
    )
    sa = {
        "username": "system:serviceaccount:dev:builder",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:dev", "system:authenticated"],
    }
    assert check(authz, sa, "GET", "/api/v1/namespaces/dev/configmaps/app") == "allowed"
    assert check(authz, sa, "PUT", "/api/v1/namespaces/dev/configmaps/app") == "allowed"
    assert check(authz, sa, "GET", "/api/v1/namespaces/dev/configmaps/other").startswith(
        'configmaps "other"'
    )
    assert check(authz, sa, "GET", "/api/v1/namespaces/dev/configmaps").startswith(
        "configmaps is forbidden"
    )
    assert check(authz, sa, "GET", "/api/v1/namespaces/dev/pods/p/status") == "allowed"
    assert check(authz, sa, "GET", "/api/v1/namespaces/default/configmaps/app").startswith(
        'configmaps "app"'
    )
    other_sa = dict(sa, username="system:serviceaccount:default:builder")
    assert check(authz, other_sa, "GET", "/api/v1/namespaces/dev/configmaps/app").startswith(
        'configmaps "app"'
    )


async def test_reviews_and_rules(registry: Registry) -> None:
    authz = rbac.RBACAuthorizer(registry)
    await bind(
        registry,
        "ClusterRoleBinding",
        "bob-view",
        "ClusterRole",
        "view",
        [{"kind": "User", "name": "bob", "apiGroup": RBAC}],
    )
    allowed, reason = authz.review(BOB, {"verb": "get", "resource": "pods", "namespace": "default"})
    assert allowed
    assert (
        reason
        == 'RBAC: allowed by ClusterRoleBinding "bob-view" of ClusterRole "view" to User "bob"'
    )
    assert authz.review(BOB, {"verb": "delete", "resource": "pods", "namespace": "default"}) == (
        False,
        "",
    )
    assert authz.review(BOB, {"verb": "get", "path": "/healthz"}, resource=False)[0]
    rules, urls = authz.rules_for(BOB, "default")
    assert {
        "verbs": ["get", "list", "watch"],
        "apiGroups": [""],
        "resources": ["namespaces"],
    } in rules
    assert any("/api/*" in r["nonResourceURLs"] for r in urls)


async def test_bootstrap_is_idempotent_and_always_allow(registry: Registry) -> None:
    await bootstrap_rbac.ensure(registry)
    names = {o["metadata"]["name"] for o in registry.list(rt(registry, "clusterroles")).items}
    assert {
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
        "system:public-info-viewer",
    } <= names
    view = registry.get(rt(registry, "clusterroles"), "", "view")
    assert view["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {f"{RBAC}/aggregate-to-view": "true"}}
    ]
    assert view["metadata"]["labels"][f"{RBAC}/aggregate-to-edit"] == "true"
    allow = rbac.authorizer_for("AlwaysAllow", registry)
    allow.authorize(BOB, requestinfo.parse("DELETE", "/api/v1/nodes/x"))
    with pytest.raises(ValueError):
        rbac.authorizer_for("Webhook", registry)


async def test_aggregation_controller_writes_rules(registry: Registry) -> None:
    from microkube.auth import aggregation

    assert await aggregation.sync_all(registry) == 3
    roles = rt(registry, "clusterroles")
    view = registry.get(roles, "", "view")["rules"]
    edit = registry.get(roles, "", "edit")["rules"]
    admin = registry.get(roles, "", "admin")["rules"]
    by_name = {r["metadata"]["name"]: r for r in bootstrap_rbac.CLUSTER_ROLES}
    metrics = by_name["system:aggregated-metrics-reader"]["rules"]  # labelled for all three
    assert sorted(map(str, view)) == sorted(
        map(str, by_name["system:aggregate-to-view"]["rules"] + metrics)
    )
    assert all(r in edit and r in admin for r in metrics)
    assert all(r in edit for r in view) and all(r in admin for r in edit)
    assert await aggregation.sync_all(registry) == 0
    await registry.create(
        roles,
        "",
        {
            "metadata": {"name": "extra", "labels": {f"{RBAC}/aggregate-to-view": "true"}},
            "rules": [{"apiGroups": ["x.io"], "resources": ["things"], "verbs": ["get"]}],
        },
    )
    assert await aggregation.sync_all(registry) == 3
    assert {"apiGroups": ["x.io"], "resources": ["things"], "verbs": ["get"]} in registry.get(
        roles, "", "admin"
    )["rules"]
    await registry.delete(roles, "", "extra")
    await aggregation.sync_all(registry)
    assert registry.get(roles, "", "view")["rules"] == view


async def test_decisions_follow_rbac_changes_only(registry: Registry) -> None:
    authz = rbac.RBACAuthorizer(registry)
    path = "/api/v1/namespaces/default/configmaps/c"
    await registry.create(
        rt(registry, "roles"),
        "default",
        {
            "metadata": {"name": "cm"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        },
    )
    await bind(
        registry, "RoleBinding", "b", "Role", "cm", [{"kind": "User", "name": "bob"}], "default"
    )
    assert check(authz, BOB, "GET", path) == "allowed"
    snap = authz.snapshot()
    # Writes to other kinds keep the snapshot (and the memoized decisions).
    cms = registry.catalog.get("", "v1", "configmaps")
    assert cms is not None
    await registry.create(cms, "default", {"metadata": {"name": "c"}})
    assert authz.snapshot() is snap
    # Changing the Role's rules takes effect at once ...
    role = registry.get(rt(registry, "roles"), "default", "cm")
    role["rules"][0]["verbs"] = ["list"]
    await registry.update(rt(registry, "roles"), "default", "cm", role)
    assert check(authz, BOB, "GET", path).startswith('configmaps "c" is forbidden')
    role = registry.get(rt(registry, "roles"), "default", "cm")
    role["rules"][0]["verbs"] = ["get"]
    await registry.update(rt(registry, "roles"), "default", "cm", role)
    assert check(authz, BOB, "GET", path) == "allowed"
    # ... and so does deleting the binding.
    await registry.delete(rt(registry, "rolebindings"), "default", "b")
    assert check(authz, BOB, "GET", path).startswith('configmaps "c" is forbidden')
