"""User impersonation: ``kubectl --as USER --as-group G`` (``Impersonate-*`` headers).

Mirrors apiserver's ``WithImpersonation`` filter: the authenticated user must
be allowed the ``impersonate`` verb on what it asks to become, checked with
the cluster's authorizer like any request:

* ``Impersonate-User: system:serviceaccount:NS:NAME`` → ``serviceaccounts``
  ``NAME`` in namespace ``NS``; the new user's groups default to
  ``system:serviceaccounts``, ``system:serviceaccounts:NS``;
* any other ``Impersonate-User`` → ``users`` ``NAME`` (cluster scope);
* each ``Impersonate-Group`` → ``groups``; ``Impersonate-Uid`` → ``uids``;
  ``Impersonate-Extra-KEY`` → ``userextras/KEY``.

The impersonated user is ``system:authenticated`` as well (unless it is
``system:anonymous``).  Groups or extras without a user are a 400, as
upstream; a refusal is upstream's 403, e.g. ``users "bob" is forbidden: User
"alice" cannot impersonate resource "users" in API group "" at the cluster
scope``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from microkube import errors

Obj = dict[str, Any]
_SA_PREFIX = "system:serviceaccount:"


def requested(raw_headers: list[tuple[bytes, bytes]]) -> Obj | None:
    """The ``Impersonate-*`` headers as {user, uid, groups, extra}; None when absent."""
    user: str | None = None
    uid: str | None = None
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for name, value in raw_headers:
        key = name.decode("latin-1").lower()
        if not key.startswith("impersonate-"):
            continue
        text = value.decode("latin-1")
        if key == "impersonate-user":
            user = text
        elif key == "impersonate-uid":
            uid = text
        elif key == "impersonate-group":
            groups.append(text)
        elif key.startswith("impersonate-extra-"):
            extra.setdefault(unquote(key[len("impersonate-extra-") :]), []).append(text)
    if user is None and uid is None and not groups and not extra:
        return None
    if user is None:
        raise errors.BadRequest(
            "requested impersonation of groups, uid or extra without impersonating a user"
        )
    return {"user": user, "uid": uid, "groups": groups, "extra": extra}


def impersonate(user: Obj, wanted: Obj, authorizer: Any) -> Obj:
    """The user to act as, after checking ``impersonate`` permissions of ``user``."""
    name = str(wanted["user"])
    checks: list[tuple[str, str, str]] = []  # (resource, namespace, name)
    groups = list(wanted["groups"])
    if name.startswith(_SA_PREFIX) and name.count(":") == 3:
        ns, sa = name[len(_SA_PREFIX) :].split(":")
        checks.append(("serviceaccounts", ns, sa))
        if not groups:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
    else:
        checks.append(("users", "", name))
    checks += [("groups", "", g) for g in wanted["groups"]]
    if wanted["uid"]:
        checks.append(("uids", "", str(wanted["uid"])))
    checks += [(f"userextras/{k}", "", v) for k, vs in wanted["extra"].items() for v in vs]
    for resource, namespace, obj_name in checks:
        main, _, sub = resource.partition("/")
        attrs = {
            "verb": "impersonate",
            "group": "authentication.k8s.io" if main in ("uids", "userextras") else "",
            "resource": main,
            "subresource": sub,
            "namespace": namespace,
            "name": obj_name,
        }
        allowed, _ = authorizer.review(user, attrs)
        if not allowed:
            raise errors.Forbidden(
                _message(user, attrs), name=obj_name, group=attrs["group"], kind=main
            )
    if name != "system:anonymous" and "system:authenticated" not in groups:
        groups.append("system:authenticated")
    out: Obj = {"username": name, "groups": groups}
    if wanted["uid"]:
        out["uid"] = str(wanted["uid"])
    if wanted["extra"]:
        out["extra"] = dict(wanted["extra"])
    return out


def _message(user: Obj, attrs: Obj) -> str:
    resource = attrs["resource"] + (f"/{attrs['subresource']}" if attrs["subresource"] else "")
    qualified = f"{attrs['resource']}.{attrs['group']}" if attrs["group"] else attrs["resource"]
    where = (
        f'in the namespace "{attrs["namespace"]}"' if attrs["namespace"] else "at the cluster scope"
    )
    return (
        f'{qualified} "{attrs["name"]}" is forbidden: User "{user.get("username", "")}" cannot '
        f'impersonate resource "{resource}" in API group "{attrs["group"]}" {where}'
    )
