"""GenericStore: create, read, update, patch, delete and watch for any kind.

This is the one path every write takes, whether it comes over HTTP or from an
in-process controller (mirrors apiserver's ``registry/generic/registry.Store``)::

    request ─► decode ─► Registry.create/update/patch/delete
                           │  strategy.default → prepare_for_* → metadata
                           │  managedFields → validate → size check
                           ▼
                         store (revisioned log) ─► watch fan-out

Deletion follows apiserver: an object with finalizers (or a propagation policy
that adds one) gets ``deletionTimestamp`` and stays until its finalizers are
gone; a pod bound to a node is deleted gracefully (the kubelet finishes it);
everything else goes at once.
"""

from __future__ import annotations

import base64
import builtins
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from microkube import errors
from microkube.admission import attributes as admission_attrs
from microkube.admission.chain import Chain
from microkube.objects import meta
from microkube.objects.selectors import FieldSelector, LabelSelector, object_fields
from microkube.resources import conversion
from microkube.resources.catalog import Catalog
from microkube.resources.strategy import Strategy, strategy_for, validate_metadata
from microkube.resources.types import ResourceType
from microkube.store.api import KV, StoreAPI

log = logging.getLogger(__name__)

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"


@dataclass
class ListResult:
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_manager: str = ""
    user_agent: str = ""
    force: bool = False
    subresource: str = ""
    field_validation: str = "Ignore"
    #: Duplicate JSON fields found while decoding (reported per field_validation).
    duplicate_fields: list[str] = field(default_factory=list)
    #: Warnings for the client (``Warning: 299`` headers), filled by the write.
    warnings: list[str] = field(default_factory=list)
    #: The requesting user (admission's userInfo); None for in-process writers.
    user: admission_attrs.UserInfo | None = None


@dataclass
class DeleteOptions:
    propagation_policy: str | None = None
    grace_period_seconds: int | None = None
    preconditions: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    orphan_dependents: bool | None = None
    #: The requesting user (admission's userInfo); None for in-process writers.
    user: admission_attrs.UserInfo | None = None
    #: Warnings for the client (``Warning: 299`` headers), filled by admission.
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_body(cls, body: dict[str, Any] | None, query: dict[str, str]) -> DeleteOptions:
        body = body or {}
        opts = cls()
        opts.propagation_policy = body.get("propagationPolicy") or query.get("propagationPolicy")
        gp = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        if gp is not None:
            try:
                opts.grace_period_seconds = int(gp)
            except (TypeError, ValueError) as exc:
                raise errors.BadRequest(f"invalid gracePeriodSeconds: {gp!r}") from exc
        opts.preconditions = body.get("preconditions") or {}
        dry = body.get("dryRun") or ([query["dryRun"]] if query.get("dryRun") else [])
        opts.dry_run = "All" in dry
        if "orphanDependents" in body:
            opts.orphan_dependents = bool(body["orphanDependents"])
        if opts.propagation_policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.invalid(
                "DeleteOptions",
                "",
                [
                    errors.unsupported_value(
                        "propagationPolicy",
                        opts.propagation_policy,
                        ["Foreground", "Background", "Orphan"],
                    )
                ],
            )
        return opts


class Registry:
    """Kind-generic object storage with Kubernetes semantics."""

    def __init__(
        self, store: StoreAPI, catalog: Catalog, *, max_object_bytes: int = 1_572_864
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.max_object_bytes = max_object_bytes
        self._strategies: dict[tuple[str, str, str], Strategy] = {}
        #: Hooks run on every write of a kind (schema validation of CRDs, etc.).
        self.validators: list[Callable[[ResourceType, dict[str, Any]], list[errors.Cause]]] = []
        #: Extra state strategies may use (allocators); set by the composition root.
        self.services: dict[str, Any] = {}
        #: Patch/apply schema handles of custom resources, by (group, kind).
        self.crd_schemas: dict[tuple[str, str], Any] = {}
        #: Structural schemas of custom resources for field validation, by "group/version/Kind".
        self.crd_openapi: dict[str, Any] = {}
        #: managedFields type information of custom resources, by (group, kind).
        self.crd_field_schemas: dict[tuple[str, str], Any] = {}
        #: Read-only kinds computed on request instead of stored, by (group, plural):
        #: objects with ``get``/``list`` like :class:`~microkube.resources.metrics.ResourceMetrics`.
        self.virtual: dict[tuple[str, str], Any] = {}
        self._type_schema: Any = None
        #: The admission chain every write passes (plugins added by the composition root).
        self.admission = Chain()

    # --- lookup ------------------------------------------------------------

    def strategy(self, rt: ResourceType) -> Strategy:
        k = (rt.group, rt.version, rt.plural)
        s = self._strategies.get(k)
        if s is None or s.rt is not rt:
            s = strategy_for(rt)
            self._strategies[k] = s
        return s

    def rt(self, api_version: str, kind: str) -> ResourceType:
        rt = self.catalog.by_api_version(api_version, kind)
        if rt is None:
            raise errors.NotFound(
                f"the server could not find the requested resource ({kind} {api_version})"
            )
        return rt

    @staticmethod
    def _not_found(rt: ResourceType, name: str) -> errors.NotFound:
        res = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
        return errors.NotFound(
            f'{res} "{name}" not found', name=name, group=rt.group, kind=rt.plural
        )

    def get_kv(self, rt: ResourceType, namespace: str, name: str) -> KV:
        kv = self.store.get(rt.key(namespace, name))
        if kv is None:
            raise self._not_found(rt, name)
        return kv

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        virtual = self.virtual.get((rt.group, rt.plural))
        if virtual is not None:
            return dict(virtual.get(rt, namespace, name))
        return self._present(rt, self.get_kv(rt, namespace, name).value)

    def try_get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        if (rt.group, rt.plural) in self.virtual:
            try:
                return self.get(rt, namespace, name)
            except errors.NotFound:
                return None
        kv = self.store.get(rt.key(namespace, name))
        return self._present(rt, kv.value) if kv else None

    @staticmethod
    def _present(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as served under ``rt`` (converted from its storage version)."""
        obj = conversion.from_storage(rt, obj)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        return obj

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
        limit: int | None = None,
        continue_token: str = "",
    ) -> ListResult:
        virtual = self.virtual.get((rt.group, rt.plural))
        if virtual is not None:
            found = virtual.list(
                rt, namespace, label_selector=label_selector, field_selector=field_selector
            )
            return ListResult(list(found), str(self.store.revision))
        start_after = None
        if continue_token:
            start_after = _decode_continue(continue_token, self.store.compacted_revision)
        prefix = rt.prefix(namespace)
        filtering = bool(label_selector and not label_selector.empty) or bool(
            field_selector and not field_selector.empty
        )
        items: list[dict[str, Any]] = []
        revision = self.store.revision
        last_key = None
        more = False
        cursor = start_after
        while True:
            batch_limit = (
                None if limit is None else max(limit - len(items), 1) * (4 if filtering else 1)
            )
            revision, kvs, more = self.store.list(prefix, start_after=cursor, limit=batch_limit)
            for kv in kvs:
                obj = kv.value
                cursor = kv.key
                if filtering and not self._matches(rt, obj, label_selector, field_selector):
                    continue
                items.append(self._present(rt, obj))
                last_key = kv.key
                if limit is not None and len(items) >= limit:
                    break
            if limit is None or len(items) >= limit or not more:
                break
        token = ""
        remaining = None
        if limit is not None and len(items) >= limit and last_key is not None:
            _, rest, _ = self.store.list(prefix, start_after=last_key)
            if rest:
                token = _encode_continue(revision, last_key)
                if not filtering:
                    remaining = len(rest)
        return ListResult(items, str(revision), token, remaining)

    def _matches(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        ls: LabelSelector | None,
        fs: FieldSelector | None,
    ) -> bool:
        if ls is not None and not ls.matches(obj.get("metadata", {}).get("labels") or {}):
            return False
        if fs is not None and not fs.empty and not fs.matches(object_fields(rt.kind, obj)):
            return False
        return True

    # --- create ------------------------------------------------------------

    async def create(
        self,
        rt: ResourceType,
        namespace: str,
        obj: dict[str, Any],
        opts: WriteOptions | None = None,
    ) -> dict[str, Any]:
        opts = opts or WriteOptions()
        strategy = self.strategy(rt)
        obj = self._check_type(rt, obj)
        self.check_fields(rt, obj, opts)
        obj = conversion.to_storage(rt, obj)
        m = meta.meta(obj)
        if rt.namespaced:
            body_ns = m.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            m["namespace"] = namespace or body_ns or "default"
            self._check_namespace(m["namespace"])
        else:
            m.pop("namespace", None)
        if not m.get("name") and m.get("generateName"):
            m["name"] = meta.generate_name(m["generateName"])
        for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            m.pop(f, None)
        m["uid"] = meta.new_uid()
        m["creationTimestamp"] = meta.now()
        strategy.default(obj)
        strategy.prepare_for_create(obj, self)
        attrs = self._attributes(rt, "CREATE", obj, None, opts)
        m = await self._admit_create(rt, strategy, attrs, m)
        self._update_managed_fields(rt, None, obj, opts, "Update")
        self._validate(rt, strategy, obj, None)
        self._check_size(rt, obj)
        await self._admit_validate(attrs, opts)
        if opts.dry_run:
            return self._present(rt, obj)
        try:
            kv = await self.store.create(rt.key(m.get("namespace", ""), m["name"]), obj)
        except errors.AlreadyExists as exc:
            res = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
            raise errors.AlreadyExists(
                f'{res} "{m["name"]}" already exists',
                name=m["name"],
                group=rt.group,
                kind=rt.plural,
            ) from exc
        out = self._present(rt, kv.value)
        await strategy.after_create(out, self)
        return out

    # --- admission ---------------------------------------------------------

    def _attributes(
        self,
        rt: ResourceType,
        operation: admission_attrs.Operation,
        obj: dict[str, Any] | None,
        old: dict[str, Any] | None,
        opts: WriteOptions | DeleteOptions,
        *,
        subresource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> admission_attrs.Attributes:
        m = (obj if obj is not None else old or {}).get("metadata") or {}
        if options is None:
            options = _options_object(operation, opts)
        return admission_attrs.Attributes(
            kind=admission_attrs.GroupVersionKind(rt.group, rt.version, rt.kind),
            resource=admission_attrs.GroupVersionResource(rt.group, rt.version, rt.plural),
            subresource=(
                subresource
                if subresource is not None
                else getattr(opts, "subresource", "").split("/")[0]
            ),
            operation=operation,
            namespace=namespace if namespace is not None else m.get("namespace", ""),
            name=name if name is not None else m.get("name", ""),
            object=obj,
            old_object=old,
            user_info=opts.user or admission_attrs.LOOPBACK_USER,
            dry_run=opts.dry_run,
            options=options,
            namespaced=rt.namespaced,
        )

    async def _admit(self, strategy: Strategy, attrs: admission_attrs.Attributes) -> None:
        """The mutating phase; what plugins changed is defaulted again (as upstream decodes)."""
        if not self.admission.plugins:
            return
        if await self.admission.mutate(attrs) and attrs.object is not None:
            strategy.default(attrs.object)

    async def _admit_create(
        self,
        rt: ResourceType,
        strategy: Strategy,
        attrs: admission_attrs.Attributes,
        before: dict[str, Any],
    ) -> dict[str, Any]:
        """The mutating phase of a create; admission may not rename or move the object."""
        pinned = {f: before.get(f) for f in ("name", "namespace", "uid", "creationTimestamp")}
        await self._admit(strategy, attrs)
        assert attrs.object is not None
        m = meta.meta(attrs.object)
        for f in ("name", "namespace"):
            if m.get(f) != pinned[f]:
                raise errors.invalid(
                    rt.kind,
                    str(pinned["name"] or ""),
                    [errors.immutable(f"metadata.{f}")],
                    group=rt.group,
                )
        for f in ("uid", "creationTimestamp"):
            m[f] = pinned[f]
        if not rt.namespaced:
            m.pop("namespace", None)
        return m

    async def _admit_validate(
        self, attrs: admission_attrs.Attributes, opts: WriteOptions | DeleteOptions
    ) -> None:
        if not self.admission.plugins:
            return
        await self.admission.validate(attrs)
        opts.warnings.extend(attrs.warnings)

    async def admit_connect(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        subresource: str,
        options: dict[str, Any],
        user: admission_attrs.UserInfo | None,
    ) -> builtins.list[str]:
        """CONNECT admission (exec, attach, portforward, proxy); returns the warnings."""
        if not self.admission.plugins:
            return []
        opts = WriteOptions(user=user)
        attrs = self._attributes(
            rt,
            "CONNECT",
            options,
            None,
            opts,
            subresource=subresource,
            namespace=namespace,
            name=name,
            options=options,
        )
        await self.admission.mutate(attrs)
        await self.admission.validate(attrs)
        return attrs.warnings

    def _check_type(self, rt: ResourceType, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise errors.BadRequest("the object provided is not a JSON object")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if kind and kind != rt.kind:
            raise errors.BadRequest(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rt.api_version})"
                if api_version and api_version != rt.api_version
                else f"Object kind {kind!r} does not match the expected kind {rt.kind!r}"
            )
        if api_version and api_version != rt.api_version:
            other = self.catalog.by_api_version(api_version, rt.kind)
            if other is None or other.group != rt.group:
                raise errors.BadRequest(
                    f"the API version in the data ({api_version}) does not match the expected API version "
                    f"({rt.api_version})"
                )
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        if "metadata" in obj and not isinstance(obj["metadata"], dict):
            raise errors.BadRequest("metadata must be an object")
        return obj

    def _check_namespace(self, namespace: str) -> None:
        ns_rt = self.catalog.get("", "v1", "namespaces")
        assert ns_rt is not None
        kv = self.store.get(ns_rt.key("", namespace))
        if kv is None:
            raise errors.NotFound(
                f'namespaces "{namespace}" not found', name=namespace, kind="namespaces"
            )
        if kv.value.get("metadata", {}).get("deletionTimestamp"):
            raise errors.Forbidden(
                f"unable to create new content in namespace {namespace} because it is being terminated",
                name=namespace,
                kind="namespaces",
            )

    def _validate(
        self, rt: ResourceType, strategy: Strategy, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        causes = validate_metadata(obj, strategy, namespaced=rt.namespaced)
        if old is None:
            causes += strategy.validate(obj, self)
        else:
            causes += self._validate_meta_update(obj, old)
            causes += strategy.validate_update(obj, old, self)
        for v in self.validators:
            causes += v(rt, obj)
        if causes:
            name = obj.get("metadata", {}).get("name", "")
            raise errors.invalid(rt.kind, name, causes, group=rt.group)

    @staticmethod
    def _validate_meta_update(
        new: dict[str, Any], old: dict[str, Any]
    ) -> builtins.list[errors.Cause]:
        causes = []
        nm, om = new["metadata"], old["metadata"]
        for f in ("name", "namespace", "uid", "creationTimestamp"):
            if nm.get(f) != om.get(f):
                causes.append(errors.immutable(f"metadata.{f}"))
        return causes

    def check_fields(self, rt: ResourceType, obj: dict[str, Any], opts: WriteOptions) -> None:
        """Server-side field validation (``fieldValidation`` Strict/Warn/Ignore).

        Type errors are always 400 (the Go decoder fails); unknown and duplicate
        fields are errors under Strict and warnings under Warn, as upstream.
        """
        from microkube.resources import schema

        if rt.definition:
            problem = schema.decode_error(obj, rt.definition)
            if problem:
                raise errors.BadRequest(
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {problem}'
                )
        if opts.field_validation == "Ignore":
            return
        name = rt.definition or f"{rt.group}/{rt.version}/{rt.kind}"
        unknown = schema.unknown_fields(obj, name, extra_schemas=self.crd_openapi)
        msgs = [f'duplicate field "{d}"' for d in opts.duplicate_fields]
        msgs += [f'unknown field "{p}"' for p in unknown]
        if not msgs:
            return
        if opts.field_validation == "Strict":
            raise errors.BadRequest("strict decoding error: " + ", ".join(msgs))
        opts.warnings.extend(msgs)

    def _check_size(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        size = len(json.dumps(obj, separators=(",", ":")))
        if size > self.max_object_bytes:
            raise errors.RequestEntityTooLarge(
                f"Request entity too large: limit is {self.max_object_bytes}",
            )

    def _update_managed_fields(
        self,
        rt: ResourceType,
        old: dict[str, Any] | None,
        new: dict[str, Any],
        opts: WriteOptions,
        operation: str,
    ) -> None:
        try:
            from microkube.objects import fieldmanager
        except ImportError:  # pragma: no cover - during bring-up
            return
        manager = opts.field_manager or fieldmanager.default_manager(opts.user_agent)
        updated = fieldmanager.update_managed_fields(
            old,
            new,
            manager=manager,
            operation=operation,
            subresource=opts.subresource,
            now=meta.now(),
            schema=self.field_schema(rt),
        )
        new["metadata"]["managedFields"] = updated["metadata"].get("managedFields", [])
        if not new["metadata"]["managedFields"]:
            new["metadata"].pop("managedFields")

    def field_schema(self, rt: ResourceType) -> Any:
        """Type information for managedFields/server-side apply (a cached TypeSchema)."""
        if not rt.definition:
            return self.crd_field_schemas.get((rt.group, rt.kind))
        if self._type_schema is None:
            from microkube.objects.typeschema import TypeSchema
            from microkube.resources import schema

            self._type_schema = TypeSchema(schema.definitions())
        return self._type_schema

    def schema_for(self, rt: ResourceType) -> Any:
        """Schema handle for patch/apply: (definitions, root name) or None."""
        if not rt.definition:
            return self.crd_schemas.get((rt.group, rt.kind))
        from microkube.objects.strategicmerge import SchemaResolver
        from microkube.resources import schema

        if schema.definition(rt.definition) is None:
            return None
        return SchemaResolver(schema.definitions(), rt.definition)

    # --- update ------------------------------------------------------------

    async def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        obj: dict[str, Any],
        opts: WriteOptions | None = None,
        *,
        create_if_missing: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """PUT semantics. Returns (object, created)."""
        opts = opts or WriteOptions()
        obj = self._check_type(rt, obj)
        m = meta.meta(obj)
        if m.get("name") and m["name"] != name:
            raise errors.BadRequest(
                f"the name of the object ({m['name']}) does not match the name on the URL ({name})"
            )
        m["name"] = name
        if rt.namespaced:
            if m.get("namespace") and m["namespace"] != namespace:
                raise errors.BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            m["namespace"] = namespace
        kv = self.store.get(rt.key(namespace, name))
        if kv is None:
            if opts.subresource or not create_if_missing:
                raise self._not_found(rt, name)
            return await self.create(rt, namespace, obj, opts), True
        rv = m.get("resourceVersion")
        if rv and str(rv) != str(kv.revision):
            raise self._conflict(rt, name)
        for _ in range(5):
            try:
                return await self._write_update(rt, kv, copy.deepcopy(obj), opts), False
            except errors.Conflict:
                # An unconditional update (no resourceVersion) retries like apiserver's.
                latest = self.store.get(rt.key(namespace, name))
                if rv or latest is None:
                    raise
                kv = latest
        raise self._conflict(rt, name)

    def _conflict(self, rt: ResourceType, name: str) -> errors.Conflict:
        res = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
        return errors.Conflict(
            f'Operation cannot be fulfilled on {res} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            name=name,
            group=rt.group,
            kind=rt.plural,
        )

    async def _write_update(
        self,
        rt: ResourceType,
        kv: KV,
        obj: dict[str, Any],
        opts: WriteOptions,
        *,
        operation: str = "Update",
    ) -> dict[str, Any]:
        strategy = self.strategy(rt)
        old = kv.value
        self.check_fields(rt, obj, opts)
        obj = conversion.to_storage(rt, obj)
        m = obj["metadata"]
        # Fields the client may not change: keep the stored ones.
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if f in old["metadata"]:
                m[f] = old["metadata"][f]
            else:
                m.pop(f, None)
        m.pop("resourceVersion", None)
        if opts.subresource == "status":
            obj = strategy.prepare_for_status_update(obj, old, self)
            m = obj["metadata"]
        else:
            strategy.default(obj)
            strategy.prepare_for_update(obj, old, self)
        attrs = self._attributes(rt, "UPDATE", obj, old, opts)
        await self._admit(strategy, attrs)
        m = obj["metadata"]
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            # Admission may not change what the client may not change either.
            if f in old["metadata"]:
                m[f] = old["metadata"][f]
            else:
                m.pop(f, None)
        if operation != "Apply":
            self._update_managed_fields(rt, old, obj, opts, operation)
        self._validate(rt, strategy, obj, old)
        self._check_size(rt, obj)
        await self._admit_validate(attrs, opts)
        if (
            m.get("deletionTimestamp")
            and not m.get("finalizers")
            and not self._graceful_pending(rt, obj)
        ):
            # The last finalizer went away: the object is gone (mirrors apiserver).
            if opts.dry_run:
                return self._present(rt, obj)
            gone = await self.store.delete(kv.key, expected_revision=kv.revision)
            out = self._present(rt, gone.value)
            await strategy.after_delete(out, self)
            return out
        if opts.dry_run:
            obj["metadata"]["resourceVersion"] = str(kv.revision)
            return self._present(rt, obj)
        if _same_object(obj, old):
            return self._present(rt, old)
        try:
            new_kv = await self.store.update(kv.key, obj, expected_revision=kv.revision)
        except errors.Conflict as exc:
            raise self._conflict(rt, m["name"]) from exc
        except errors.NotFound as exc:
            raise self._not_found(rt, m["name"]) from exc
        out = self._present(rt, new_kv.value)
        await strategy.after_update(out, self)
        return out

    @staticmethod
    def _graceful_pending(rt: ResourceType, obj: dict[str, Any]) -> bool:
        """A gracefully deleting pod stays until the kubelet confirms (grace 0)."""
        if rt.kind != "Pod" or rt.group:
            return False
        grace = obj["metadata"].get("deletionGracePeriodSeconds")
        return bool(obj.get("spec", {}).get("nodeName")) and grace not in (None, 0)

    async def guaranteed_update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        mutate: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        subresource: str = "",
        field_manager: str = "",
        attempts: int = 10,
        user: admission_attrs.UserInfo | None = None,
    ) -> dict[str, Any] | None:
        """Read-modify-write with retries on conflict (for in-process controllers).

        ``mutate`` gets a fresh copy; returning None means "no change".
        """
        for _ in range(attempts):
            kv = self.store.get(rt.key(namespace, name))
            if kv is None:
                raise self._not_found(rt, name)
            obj = self._present(rt, kv.value)
            new = mutate(copy.deepcopy(obj))
            if new is None:
                return obj
            try:
                return await self._write_update(
                    rt,
                    kv,
                    new,
                    WriteOptions(field_manager=field_manager, subresource=subresource, user=user),
                )
            except errors.Conflict:
                continue
        raise self._conflict(rt, name)

    # --- patch -------------------------------------------------------------

    async def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        body: Any,
        opts: WriteOptions | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Apply a patch; returns (object, created). Server-side apply may create.

        Mirrors apiserver's patcher: the patch is re-applied to the latest object
        when a concurrent write wins the race, unless the patch itself carries a
        ``metadata.resourceVersion`` precondition.
        """
        opts = opts or WriteOptions()
        for attempt in range(5):
            opts.warnings.clear()
            try:
                return await self._patch_once(rt, namespace, name, patch_type, body, opts)
            except _StoreRace:
                if attempt == 4:
                    raise self._conflict(rt, name) from None
        raise self._conflict(rt, name)

    async def _patch_once(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        body: Any,
        opts: WriteOptions,
    ) -> tuple[dict[str, Any], bool]:
        from microkube.objects import patch as patches

        kv = self.store.get(rt.key(namespace, name))
        if patch_type == "apply":
            return await self._apply(rt, namespace, name, body, kv, opts)
        if kv is None:
            raise self._not_found(rt, name)
        original = self._present(rt, kv.value)
        if opts.subresource == "scale":
            raise errors.MethodNotAllowed("use the scale helpers")
        if patch_type == "json":
            if not isinstance(body, list):
                raise errors.BadRequest("json patch must be a list of operations")
            new = patches.json_patch(original, body)
        elif patch_type == "merge":
            if not isinstance(body, dict):
                raise errors.BadRequest("merge patch must be a JSON object")
            new = patches.merge_patch(original, body)
        elif patch_type == "strategic":
            if not isinstance(body, dict):
                raise errors.BadRequest("strategic merge patch must be a JSON object")
            resolver = self.schema_for(rt)
            if resolver is None:
                raise errors.UnsupportedMediaType(
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
                )
            new = patches.strategic_merge_patch(original, body, resolver)
        else:
            raise errors.UnsupportedMediaType(f"unsupported patch type {patch_type}")
        if not isinstance(new, dict):
            raise errors.BadRequest("the patch result is not an object")
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if rv is not None and str(rv) != str(kv.revision):
            raise self._conflict(rt, name)
        new = self._check_type(rt, new)
        meta.meta(new)["name"] = name
        if rt.namespaced:
            new["metadata"]["namespace"] = namespace
        try:
            return await self._write_update(rt, kv, new, opts), False
        except errors.Conflict as exc:
            # Re-applying the patch to the latest object re-checks any resourceVersion
            # the patch itself carries (it then no longer matches), as apiserver does.
            if self.store.get(kv.key) is not None:
                raise _StoreRace() from exc
            raise

    async def _apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        kv: KV | None,
        opts: WriteOptions,
    ) -> tuple[dict[str, Any], bool]:
        from microkube.objects import fieldmanager

        if not isinstance(body, dict):
            raise errors.BadRequest("apply patch must be an object")
        body = self._check_type(rt, body)
        self.check_fields(rt, body, opts)
        bm = meta.meta(body)
        if bm.get("name") and bm["name"] != name:
            raise errors.BadRequest(
                f"the name of the object ({bm['name']}) does not match the name on the URL ({name})"
            )
        if not opts.field_manager:
            raise errors.BadRequest("PATCH requests with apply must specify a fieldManager")
        live = self._present(rt, kv.value) if kv else None
        new = fieldmanager.apply(
            live,
            body,
            manager=opts.field_manager,
            force=opts.force,
            schema=self.field_schema(rt),
            now=meta.now(),
        )
        meta.meta(new)["name"] = name
        if rt.namespaced:
            new["metadata"]["namespace"] = namespace
        if kv is None:
            created_opts = WriteOptions(
                opts.dry_run,
                opts.field_manager,
                opts.user_agent,
                opts.force,
                opts.subresource,
                warnings=opts.warnings,
                user=opts.user,
            )
            mf = new["metadata"].get("managedFields")
            out = await self._create_with_fields(rt, namespace, new, created_opts, mf)
            return out, True
        try:
            return await self._write_update(rt, kv, new, opts, operation="Apply"), False
        except errors.Conflict as exc:
            if "Apply failed" not in exc.message:
                raise _StoreRace() from exc
            raise

    async def _create_with_fields(
        self, rt: ResourceType, namespace: str, obj: dict[str, Any], opts: WriteOptions, mf: Any
    ) -> dict[str, Any]:
        # Create, then keep the Apply managedFields computed by the field manager.
        strategy = self.strategy(rt)
        obj = conversion.to_storage(rt, self._check_type(rt, obj))
        m = meta.meta(obj)
        if rt.namespaced:
            m["namespace"] = namespace
            self._check_namespace(namespace)
        m["uid"] = meta.new_uid()
        m["creationTimestamp"] = meta.now()
        m.pop("resourceVersion", None)
        strategy.default(obj)
        strategy.prepare_for_create(obj, self)
        if mf:
            m["managedFields"] = mf
        attrs = self._attributes(rt, "CREATE", obj, None, opts)
        m = await self._admit_create(rt, strategy, attrs, m)
        self._validate(rt, strategy, obj, None)
        self._check_size(rt, obj)
        await self._admit_validate(attrs, opts)
        if opts.dry_run:
            return self._present(rt, obj)
        try:
            kv = await self.store.create(rt.key(m.get("namespace", ""), m["name"]), obj)
        except errors.AlreadyExists as exc:
            raise self._conflict(rt, m["name"]) from exc
        out = self._present(rt, kv.value)
        await strategy.after_create(out, self)
        return out

    # --- delete ------------------------------------------------------------

    async def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        opts: DeleteOptions | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Returns (object, deleted_now). Not deleted now means 202 with the object."""
        opts = opts or DeleteOptions()
        for attempt in range(10):
            kv = self.get_kv(rt, namespace, name)
            obj = self._present(rt, kv.value)
            if attempt == 0 and self.admission.plugins:
                # Mirrors the store's deleteValidation: both phases, the stored object as old.
                attrs = self._attributes(rt, "DELETE", None, copy.deepcopy(obj), opts)
                await self.admission.mutate(attrs)
                await self.admission.validate(attrs)
                opts.warnings.extend(attrs.warnings)
            m = obj["metadata"]
            pre = opts.preconditions
            if pre.get("uid") and pre["uid"] != m.get("uid"):
                raise errors.Conflict(
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {m.get('uid')}",
                    name=name,
                    kind=rt.plural,
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != m.get("resourceVersion"):
                raise errors.Conflict(
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {m.get('resourceVersion')}",
                    name=name,
                    kind=rt.plural,
                )
            try:
                return await self._delete_once(rt, kv, obj, opts)
            except errors.Conflict:
                continue
        raise self._conflict(rt, name)

    async def _delete_once(
        self, rt: ResourceType, kv: KV, obj: dict[str, Any], opts: DeleteOptions
    ) -> tuple[dict[str, Any], bool]:
        strategy = self.strategy(rt)
        m = obj["metadata"]
        finalizers = list(m.get("finalizers") or [])
        policy = opts.propagation_policy
        if policy is None and opts.orphan_dependents is not None:
            policy = "Orphan" if opts.orphan_dependents else "Background"
        if policy is None:
            policy = self.default_propagation(rt)
        changed = False
        if policy == "Orphan" and ORPHAN not in finalizers and self._has_dependents(obj):
            finalizers.append(ORPHAN)
            changed = True
        elif policy == "Foreground" and FOREGROUND not in finalizers and self._has_dependents(obj):
            finalizers.append(FOREGROUND)
            changed = True
        grace = self._grace_period(rt, obj, opts)
        graceful = grace is not None and grace > 0
        if not finalizers and not graceful:
            if opts.dry_run:
                return obj, True
            if rt.kind == "Namespace" and not rt.group:
                pass  # namespaces always go through the namespace controller
            else:
                try:
                    gone = await self.store.delete(kv.key, expected_revision=kv.revision)
                except errors.NotFound as exc:
                    raise self._not_found(rt, m["name"]) from exc
                out = self._present(rt, gone.value)
                await strategy.after_delete(out, self)
                return out, True
        # Deferred deletion: set deletionTimestamp (once) and store.
        if m.get("deletionTimestamp") and not changed:
            if graceful and rt.kind == "Pod" and not rt.group:
                current = m.get("deletionGracePeriodSeconds")
                if current is not None and grace is not None and grace < current:
                    m["deletionGracePeriodSeconds"] = grace
                    if not opts.dry_run:
                        kv2 = await self.store.update(kv.key, obj, expected_revision=kv.revision)
                        return self._present(rt, kv2.value), False
            return obj, False
        m["finalizers"] = finalizers
        if not finalizers:
            m.pop("finalizers")
        if not m.get("deletionTimestamp"):
            m["deletionTimestamp"] = meta.now()
            m["deletionGracePeriodSeconds"] = grace if graceful else 0
            if strategy.tracks_generation:
                m["generation"] = int(m.get("generation") or 0) + 1
        if rt.kind == "Namespace" and not rt.group:
            obj.setdefault("status", {})["phase"] = "Terminating"
        if opts.dry_run:
            return obj, False
        try:
            new_kv = await self.store.update(kv.key, obj, expected_revision=kv.revision)
        except errors.NotFound as exc:
            raise self._not_found(rt, m["name"]) from exc
        return self._present(rt, new_kv.value), False

    async def finalize_namespace(
        self, name: str, mutate: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """Write a namespace's ``spec.finalizers`` (the ``finalize`` subresource).

        A terminating namespace whose last finalizer goes away is deleted.
        """
        rt = self.catalog.get("", "v1", "namespaces")
        assert rt is not None
        kv = self.get_kv(rt, "", name)
        obj = mutate(kv.value)
        if (
            meta.is_deleting(obj)
            and not obj.get("spec", {}).get("finalizers")
            and not obj["metadata"].get("finalizers")
        ):
            gone = await self.store.delete(kv.key, expected_revision=kv.revision)
            return self._present(rt, gone.value)
        new = await self.store.update(kv.key, obj, expected_revision=kv.revision)
        return self._present(rt, new.value)

    def default_propagation(self, rt: ResourceType) -> str:
        # Mirrors apiserver: the default is Background, except for a few legacy
        # kinds whose default GC policy is orphan (extensions/v1beta1 etc.).
        return "Background"

    @staticmethod
    def _has_dependents(obj: dict[str, Any]) -> bool:
        return True

    @staticmethod
    def _grace_period(rt: ResourceType, obj: dict[str, Any], opts: DeleteOptions) -> int | None:
        if rt.kind != "Pod" or rt.group:
            return None
        if opts.grace_period_seconds is not None:
            grace = opts.grace_period_seconds
        else:
            grace = int(obj.get("spec", {}).get("terminationGracePeriodSeconds", 30))
        if not obj.get("spec", {}).get("nodeName"):
            return 0  # never scheduled: nothing to stop
        phase = obj.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            return 0
        return max(grace, 0)

    async def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        opts: DeleteOptions,
        *,
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
    ) -> builtins.list[dict[str, Any]]:
        result = self.list(
            rt, namespace, label_selector=label_selector, field_selector=field_selector
        )
        out = []
        for item in result.items:
            m = item["metadata"]
            try:
                obj, _ = await self.delete(rt, m.get("namespace", ""), m["name"], opts)
                out.append(obj)
            except errors.NotFound:
                continue
        return out

    # --- watch -------------------------------------------------------------

    async def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        resource_version: str = "",
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
        send_initial: bool | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield ``(type, object)``; type ADDED/MODIFIED/DELETED, or BOOKMARK-INITIAL.

        RV "" or "0" (or ``send_initial``) starts with synthetic ADDED events for
        the current state, as the apiserver watch cache does.
        """
        prefix = rt.prefix(namespace)
        if send_initial is None:
            send_initial = resource_version in ("", "0")
        if send_initial:
            revision, kvs, _ = self.store.list(prefix)
            w = self.store.watch(prefix, revision)
            try:
                for kv in kvs:
                    obj = kv.value
                    if self._matches(rt, obj, label_selector, field_selector):
                        yield "ADDED", self._present(rt, obj)
                yield "INITIAL-END", {"metadata": {"resourceVersion": str(revision)}}
                async for ev in w:
                    for item in self._filter_event(rt, ev, label_selector, field_selector):
                        yield item
            finally:
                w.close()
            return
        try:
            since = int(resource_version)
        except ValueError as exc:
            raise errors.BadRequest(f"invalid resource version: {resource_version!r}") from exc
        w = self.store.watch(prefix, since)
        try:
            async for ev in w:
                for item in self._filter_event(rt, ev, label_selector, field_selector):
                    yield item
        finally:
            w.close()

    def _filter_event(
        self, rt: ResourceType, ev: Any, ls: LabelSelector | None, fs: FieldSelector | None
    ) -> builtins.list[tuple[str, dict[str, Any]]]:
        obj = self._present(rt, ev.kv.value)
        if (ls is None or ls.empty) and (fs is None or fs.empty):
            return [(ev.type, obj)]
        now_match = self._matches(rt, obj, ls, fs)
        prev_match = False
        if ev.prev is not None:
            prev_match = self._matches(rt, ev.prev.value, ls, fs)
        if ev.type == "ADDED":
            return [("ADDED", obj)] if now_match else []
        if ev.type == "DELETED":
            return [("DELETED", obj)] if (now_match or prev_match) else []
        if now_match and prev_match:
            return [("MODIFIED", obj)]
        if now_match:
            return [("ADDED", obj)]
        if prev_match:
            return [("DELETED", obj)]
        return []


def _options_object(
    operation: admission_attrs.Operation, opts: WriteOptions | DeleteOptions
) -> dict[str, Any]:
    """CreateOptions / UpdateOptions / DeleteOptions as AdmissionReview's ``options``."""
    kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions"}.get(operation, "DeleteOptions")
    out: dict[str, Any] = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if opts.dry_run:
        out["dryRun"] = ["All"]
    if isinstance(opts, WriteOptions):
        if opts.field_manager:
            out["fieldManager"] = opts.field_manager
        if opts.field_validation:
            out["fieldValidation"] = opts.field_validation
    else:
        if opts.propagation_policy:
            out["propagationPolicy"] = opts.propagation_policy
        if opts.grace_period_seconds is not None:
            out["gracePeriodSeconds"] = opts.grace_period_seconds
    return out


class _StoreRace(Exception):
    """A concurrent write changed the object between read and write: try again."""


def _same_object(new: dict[str, Any], old: dict[str, Any]) -> bool:
    a = dict(new)
    b = dict(old)
    am, bm = dict(a.get("metadata", {})), dict(b.get("metadata", {}))
    for m in (am, bm):
        m.pop("resourceVersion", None)
        m.pop("managedFields", None)
    a["metadata"], b["metadata"] = am, bm
    return a == b


def _encode_continue(revision: int, key: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str, compacted: int) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        key = data["start"]
        rv = int(data["rv"])
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.BadRequest("continue key is not valid: illegal base64 data") from exc
    if rv < compacted:
        raise errors.Gone(
            "The provided continue parameter is too old to display a consistent list result. "
            "You can start a new list without the continue parameter."
        )
    return str(key)
