"""The URL grammar of the Kubernetes API, stated once.

Mirrors apiserver's ``RequestInfoFactory``: turns a method and path into the
verb, group, version, namespace, resource, name and subresource that the
handlers and the authorizer both use::

    /api/v1/namespaces/{ns}/{resource}[/{name}[/{subresource}]]
    /api/v1/{resource}[/{name}[/{subresource}]]           (cluster scope or all namespaces)
    /apis/{group}/{version}/...                            (same shapes)
    /api/v1/watch/...                                      (legacy watch prefix)
"""

from __future__ import annotations

from dataclasses import dataclass

_VERBS = {
    "GET": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
    "HEAD": "get",
}


@dataclass
class RequestInfo:
    is_resource_request: bool
    path: str
    verb: str
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    parts: tuple[str, ...] = ()

    @property
    def api_prefix(self) -> str:
        return "apis" if self.group else "api"


def parse(method: str, path: str, query: dict[str, str] | None = None) -> RequestInfo:
    query = query or {}
    segs = [s for s in path.strip("/").split("/") if s]
    verb = _VERBS.get(method.upper(), method.lower())
    if not segs or segs[0] not in ("api", "apis"):
        return RequestInfo(False, path, verb)
    if segs[0] == "api":
        if len(segs) < 2:
            return RequestInfo(False, path, verb)
        group, version, rest = "", segs[1], segs[2:]
    else:
        if len(segs) < 3:
            return RequestInfo(False, path, verb, group=segs[1] if len(segs) > 1 else "")
        group, version, rest = segs[1], segs[2], segs[3:]
    if not rest:
        return RequestInfo(False, path, verb, group=group, version=version)
    watch = False
    if rest[0] == "watch":
        watch = True
        rest = rest[1:]
    info = RequestInfo(True, path, verb, group=group, version=version, parts=tuple(rest))
    if (
        len(rest) >= 2
        and rest[0] == "namespaces"
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        if len(rest) == 2:
            # /namespaces/{name}: the namespace object itself.
            info.resource, info.name = "namespaces", rest[1]
        else:
            info.namespace = rest[1]
            rest = rest[2:]
            info.resource = rest[0]
            if len(rest) > 1:
                info.name = rest[1]
            if len(rest) > 2:
                info.subresource = "/".join(rest[2:]) if rest[2] == "proxy" else rest[2]
    else:
        info.resource = rest[0]
        if len(rest) > 1:
            info.name = rest[1]
        if len(rest) > 2:
            info.subresource = rest[2]
    if info.verb == "get" and not info.name:
        info.verb = "list"
    if info.verb == "delete" and not info.name:
        info.verb = "deletecollection"
    if watch or (info.verb in ("list", "get") and query.get("watch") in ("true", "1")):
        info.verb = "watch"
    return info
