"""Resource metadata as data (the lightkube ``ApiInfo`` idea).

A :class:`ResourceType` says everything the plumbing needs to know about a kind:
its group/version/kind, its plural (the URL segment and the storage key),
whether it is namespaced, its short names and categories for discovery, and the
subresources it serves. Routes, discovery documents, OpenAPI paths and storage
keys are all derived from it, so adding a kind is one line in ``catalog.py``
plus an optional :class:`~microkube.resources.strategy.Strategy`.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    singular: str = ""
    list_kind: str = ""
    # OpenAPI definition name of the kind, e.g. "io.k8s.api.apps.v1.Deployment".
    # Empty for custom resources (their schema comes from the CRD).
    definition: str = ""
    # Storage group/version when several versions are served (CRDs).
    storage_version: str = ""

    def __post_init__(self) -> None:
        if not self.singular:
            object.__setattr__(self, "singular", self.kind.lower())
        if not self.list_kind:
            object.__setattr__(self, "list_kind", self.kind + "List")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def resource_key(self) -> str:
        """Storage key segment: ``<plural>`` for core, ``<group>/<plural>`` otherwise.

        Storage is shared by all versions of one group/resource, like etcd keys.
        """
        return f"{self.group}/{self.plural}" if self.group else self.plural

    def key(self, namespace: str, name: str) -> str:
        """Storage key ``/registry/<resource_key>/<ns>/<name>`` (no ns when cluster scoped)."""
        if self.namespaced:
            return f"/registry/{self.resource_key}/{namespace}/{name}"
        return f"/registry/{self.resource_key}/{name}"

    def prefix(self, namespace: str | None = None) -> str:
        """Key prefix for a list: all namespaces when ``namespace`` is falsy."""
        if self.namespaced and namespace:
            return f"/registry/{self.resource_key}/{namespace}/"
        return f"/registry/{self.resource_key}/"

    def base_path(self, namespace: str | None = None) -> str:
        """The URL path of the collection."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{root}/{self.plural}"


@dataclass(frozen=True)
class Subresource:
    """What a subresource looks like in discovery."""

    name: str
    group: str = ""
    version: str = ""
    kind: str = ""
    verbs: tuple[str, ...] = ("get", "patch", "update")


# Discovery shape of the subresources the plumbing knows about.  ``kind`` empty
# means "the parent kind".
KNOWN_SUBRESOURCES: dict[str, Subresource] = {
    "status": Subresource("status"),
    "scale": Subresource("scale", "autoscaling", "v1", "Scale"),
    "log": Subresource("log", "", "v1", "Pod", verbs=("get",)),
    "exec": Subresource("exec", "", "v1", "PodExecOptions", verbs=("create", "get")),
    "attach": Subresource("attach", "", "v1", "PodAttachOptions", verbs=("create", "get")),
    "portforward": Subresource(
        "portforward", "", "v1", "PodPortForwardOptions", verbs=("create", "get")
    ),
    "binding": Subresource("binding", "", "v1", "Binding", verbs=("create",)),
    "eviction": Subresource("eviction", "policy", "v1", "Eviction", verbs=("create",)),
    "ephemeralcontainers": Subresource("ephemeralcontainers"),
    "token": Subresource("token", "authentication.k8s.io", "v1", "TokenRequest", verbs=("create",)),
    "proxy": Subresource(
        "proxy", "", "v1", "", verbs=("create", "delete", "get", "patch", "update")
    ),
    "approval": Subresource("approval"),
    "finalize": Subresource("finalize", verbs=("update",)),
}
