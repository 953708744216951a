"""Impersonation (``kubectl --as``): permission checks and the resulting identity."""

from __future__ import annotations

import pytest

from microkube import errors
from microkube.auth import impersonation, rbac
from microkube.resources.registry import Registry

pytestmark = pytest.mark.anyio
RBAC = "rbac.authorization.k8s.io"
ADMIN = {"username": "admin", "groups": ["system:masters", "system:authenticated"]}
ALICE = {"username": "alice", "groups": ["system:authenticated"]}


def headers(**values: str | list[str]) -> list[tuple[bytes, bytes]]:
    out = []
    for key, value in values.items():
        for v in value if isinstance(value, list) else [value]:
            out.append((("Impersonate-" + key.replace("_", "-")).encode(), v.encode()))
    return out


def test_requested_headers() -> None:
    assert impersonation.requested([(b"authorization", b"Bearer x")]) is None
    wanted = impersonation.requested(
        headers(User="bob", Group=["devs", "ops"], Extra_scopes="a") + [(b"x", b"y")]
    )
    assert wanted == {
        "user": "bob",
        "uid": None,
        "groups": ["devs", "ops"],
        "extra": {"scopes": ["a"]},
    }
    with pytest.raises(errors.BadRequest):
        impersonation.requested(headers(Group="devs"))


async def test_admin_may_impersonate_users_and_service_accounts(registry: Registry) -> None:
    authz = rbac.RBACAuthorizer(registry)
    bob = impersonation.impersonate(ADMIN, impersonation.requested(headers(User="bob")), authz)
    assert bob == {"username": "bob", "groups": ["system:authenticated"]}
    sa = impersonation.impersonate(
        ADMIN, impersonation.requested(headers(User="system:serviceaccount:dev:builder")), authz
    )
    assert sa["groups"] == [
        "system:serviceaccounts",
        "system:serviceaccounts:dev",
        "system:authenticated",
    ]


async def test_others_need_the_impersonate_verb(registry: Registry) -> None:
    authz = rbac.RBACAuthorizer(registry)
    wanted = impersonation.requested(headers(User="bob", Group="devs"))
    with pytest.raises(errors.Forbidden) as info:
        impersonation.impersonate(ALICE, wanted, authz)
    assert info.value.message == (
        'users "bob" is forbidden: User "alice" cannot impersonate resource "users" '
        'in API group "" at the cluster scope'
    )
    await registry.create(
        registry.catalog.get(RBAC, "v1", "clusterroles"),
        "",
        {
            "metadata": {"name": "imp"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["users"],
                    "verbs": ["impersonate"],
                    "resourceNames": ["bob"],
                }
            ],
        },
    )
    await registry.create(
        registry.catalog.get(RBAC, "v1", "clusterrolebindings"),
        "",
        {
            "metadata": {"name": "imp"},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "imp"},
            "subjects": [{"kind": "User", "name": "alice"}],
        },
    )
    with pytest.raises(errors.Forbidden, match='groups "devs" is forbidden'):
        impersonation.impersonate(ALICE, wanted, authz)
    bob = impersonation.impersonate(ALICE, impersonation.requested(headers(User="bob")), authz)
    assert bob["username"] == "bob"
    with pytest.raises(errors.Forbidden, match='users "carol" is forbidden'):
        impersonation.impersonate(ALICE, impersonation.requested(headers(User="carol")), authz)
