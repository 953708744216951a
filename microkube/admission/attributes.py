"""What one admission request is about (mirrors ``admission.Attributes``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]


class UserInfo(TypedDict, total=False):
    """authenticationv1.UserInfo as the authenticator puts it on the request."""

    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


#: Who in-process writers (controllers, kubelet, scheduler) act as.
LOOPBACK_USER: UserInfo = {
    "username": "system:apiserver",
    "uid": "",
    "groups": ["system:authenticated", "system:masters"],
}


@dataclass(frozen=True)
class GroupVersionResource:
    group: str
    version: str
    resource: str


@dataclass(frozen=True)
class GroupVersionKind:
    group: str
    version: str
    kind: str


@dataclass
class Attributes:
    """One write, described for the plugins.

    ``object`` is the object being written (``None`` on DELETE, the connect
    options on CONNECT); mutating plugins change it in place or replace it
    with :meth:`replace_object`.  ``warnings`` collect ``Warning:`` headers for
    the client.
    """

    kind: GroupVersionKind
    resource: GroupVersionResource
    subresource: str
    operation: Operation
    namespace: str
    name: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    user_info: UserInfo
    dry_run: bool = False
    #: CreateOptions / UpdateOptions / DeleteOptions / the connect options as an object.
    options: dict[str, Any] | None = None
    #: The kind and resource the client asked for (same as kind/resource here:
    #: microkube serves one storage version per kind).
    request_kind: GroupVersionKind | None = None
    request_resource: GroupVersionResource | None = None
    #: Whether the object's namespace is itself a namespaced resource (scope matching).
    namespaced: bool = True
    warnings: list[str] = field(default_factory=list)
    #: Audit-style annotations plugins may add (``key`` → ``value``).
    annotations: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.request_kind is None:
            self.request_kind = self.kind
        if self.request_resource is None:
            self.request_resource = self.resource

    def replace_object(self, obj: dict[str, Any]) -> None:
        """Replace the object being written, keeping the caller's dict identity."""
        if self.object is None:
            self.object = obj
            return
        self.object.clear()
        self.object.update(obj)
