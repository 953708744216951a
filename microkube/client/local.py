"""In-process client: the API as controllers see it, without HTTP.

Every call goes through :class:`~microkube.resources.registry.Registry`, the
same GenericStore the HTTP handlers use, so defaulting, strategies,
validation, managedFields and admission-like hooks are identical whether a
write comes from kubectl or from a controller (mirrors client-go talking to
the apiserver, minus the wire).  The client only adds:

* resource lookup by ``(group, plural)`` so controllers need not import the
  catalog;
* a ``field_manager`` stamped on every write (``kube-controller-manager`` by
  default, as upstream's controllers show up in managedFields);
* keyword-only options in place of ``WriteOptions``/``DeleteOptions``.

Objects returned are fresh dicts the caller owns.  Reads are served from the
store's in-memory state (cheap, synchronous); controllers should still read
through an :class:`~microkube.client.informer.Informer` so that they are
level-triggered and testable.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from microkube import errors
from microkube.objects.selectors import FieldSelector, LabelSelector
from microkube.resources.registry import DeleteOptions, ListResult, Registry, WriteOptions
from microkube.resources.types import ResourceType

Obj = dict[str, Any]


class LocalClient:
    """A typed, thin wrapper over :class:`Registry` for in-process components."""

    def __init__(self, registry: Registry, *, field_manager: str = "kube-controller-manager"):
        self.registry = registry
        self.field_manager = field_manager

    def with_manager(self, field_manager: str) -> LocalClient:
        """The same client writing under another managedFields manager name."""
        return LocalClient(self.registry, field_manager=field_manager)

    # --- resource types -----------------------------------------------------

    def resource(self, group: str, plural: str, version: str = "") -> ResourceType:
        """The served type for ``group``/``plural`` (preferred version unless given)."""
        for rt in self.registry.catalog:
            if rt.group == group and rt.plural == plural and (not version or rt.version == version):
                return rt
        raise errors.NotFound(f"the server could not find the requested resource ({plural})")

    def resource_for(self, api_version: str, kind: str) -> ResourceType | None:
        return self.registry.catalog.by_api_version(api_version, kind)

    # --- reads ----------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        return self.registry.get(rt, namespace, name)

    def try_get(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        return self.registry.try_get(rt, namespace, name)

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: LabelSelector | str | None = None,
        field_selector: FieldSelector | str | None = None,
    ) -> ListResult:
        if isinstance(label_selector, str):
            label_selector = LabelSelector.parse(label_selector)
        if isinstance(field_selector, str):
            field_selector = FieldSelector.parse(field_selector)
        return self.registry.list(
            rt, namespace, label_selector=label_selector, field_selector=field_selector
        )

    def watch(
        self, rt: ResourceType, namespace: str | None = None, *, resource_version: str = ""
    ) -> AsyncIterator[tuple[str, Obj]]:
        """``(type, object)`` pairs; raises :class:`errors.Gone` below the compacted revision."""
        return self.registry.watch(rt, namespace, resource_version=resource_version)

    # --- writes ---------------------------------------------------------------

    def _opts(self, subresource: str = "") -> WriteOptions:
        return WriteOptions(field_manager=self.field_manager, subresource=subresource)

    async def create(self, rt: ResourceType, namespace: str, obj: Obj) -> Obj:
        return await self.registry.create(rt, namespace, obj, self._opts())

    async def update(self, rt: ResourceType, obj: Obj, *, subresource: str = "") -> Obj:
        """PUT ``obj`` (its metadata.resourceVersion, if set, is a precondition)."""
        m = obj["metadata"]
        out, _ = await self.registry.update(
            rt, m.get("namespace", ""), m["name"], obj, self._opts(subresource)
        )
        return out

    async def update_status(self, rt: ResourceType, obj: Obj) -> Obj:
        return await self.update(rt, obj, subresource="status")

    async def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        patch_type: str = "merge",
        subresource: str = "",
    ) -> Obj:
        out, _ = await self.registry.patch(
            rt, namespace, name, patch_type, body, self._opts(subresource)
        )
        return out

    async def mutate(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        fn: Callable[[Obj], Obj | None],
        *,
        subresource: str = "",
    ) -> Obj | None:
        """Read-modify-write retried on conflict; ``fn`` returns None for "no change"."""
        return await self.registry.guaranteed_update(
            rt, namespace, name, fn, subresource=subresource, field_manager=self.field_manager
        )

    async def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation_policy: str | None = None,
        uid: str | None = None,
        grace_period_seconds: int | None = None,
    ) -> Obj:
        """Delete (``uid`` is a precondition, as controllers use it to avoid races)."""
        opts = DeleteOptions(
            propagation_policy=propagation_policy,
            grace_period_seconds=grace_period_seconds,
            preconditions={"uid": uid} if uid else {},
        )
        out, _ = await self.registry.delete(rt, namespace, name, opts)
        return out
