"""The create-only review kinds: access reviews, rules reviews, token and self reviews."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from microkube import errors
from microkube.api.context import ApiContext
from microkube.resources.types import ResourceType


def user_of(request: Request) -> dict[str, Any]:
    return request.scope.get("microkube.user") or {
        "username": "system:anonymous",
        "groups": ["system:unauthenticated"],
    }


async def create(
    request: Request, ctx: ApiContext, rt: ResourceType, ns: str, body: Any
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.BadRequest("the object provided is not a JSON object")
    user = user_of(request)
    spec = body.get("spec") or {}
    out: dict[str, Any] = {
        "kind": rt.kind,
        "apiVersion": rt.api_version,
        "metadata": {"creationTimestamp": None},
        "spec": spec,
    }
    if rt.kind == "SelfSubjectReview":
        out.pop("spec")
        out["status"] = {
            "userInfo": {
                k: v for k, v in user.items() if k in ("username", "uid", "groups", "extra")
            }
        }
        return out
    if rt.kind == "TokenReview":
        info = (
            ctx.tokens.review(spec.get("token", ""), spec.get("audiences") or [])
            if ctx.tokens
            else None
        )
        out["status"] = (
            {"authenticated": True, "user": info["user"], "audiences": info["audiences"]}
            if info
            else {"authenticated": False, "user": {}, "error": "invalid bearer token"}
        )
        return out
    if rt.kind in ("SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview"):
        if rt.kind == "SelfSubjectAccessReview":
            subject = user
        else:
            subject = {
                "username": spec.get("user", ""),
                "groups": spec.get("groups") or [],
                "uid": spec.get("uid", ""),
            }
        attrs = spec.get("resourceAttributes") or spec.get("nonResourceAttributes") or {}
        if rt.kind == "LocalSubjectAccessReview":
            attrs = dict(attrs, namespace=ns)
        allowed, reason = (
            (True, "")
            if ctx.authorizer is None
            else ctx.authorizer.review(subject, attrs, resource="resourceAttributes" in spec)
        )
        out["status"] = {"allowed": allowed}
        if reason:
            out["status"]["reason"] = reason
        return out
    if rt.kind == "SelfSubjectRulesReview":
        namespace = spec.get("namespace", "")
        if ctx.authorizer is None:
            rules = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
            nonres = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
        else:
            rules, nonres = ctx.authorizer.rules_for(user, namespace)
        out["status"] = {"resourceRules": rules, "nonResourceRules": nonres, "incomplete": False}
        return out
    raise errors.MethodNotAllowed(f"{rt.kind} is not supported")
