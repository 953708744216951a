"""Per-kind behaviour: the strategy layer (mirrors apiserver's ``rest.RESTCreateStrategy``).

A :class:`Strategy` decides what happens to an object on its way into the
store, independent of HTTP and of storage:

- ``default``: fill defaulted fields, on every create and update (the
  apiserver defaults every decoded object);
- ``prepare_for_create``: status cleared (for kinds with a status subresource),
  ``generation`` 1;
- ``prepare_for_update``: status kept from the old object, ``generation``
  bumped when anything outside metadata/status changed;
- ``prepare_for_status_update``: everything but status kept from the old
  object (a ``/status`` write cannot change spec);
- ``validate`` / ``validate_update``: lists of field errors (422).

Kind modules subclass it and register with :func:`register`; kinds without a
strategy get :class:`Strategy` itself, whose behaviour follows from the
``ResourceType`` (status subresource or not).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from microkube import errors
from microkube.objects import meta
from microkube.resources.types import ResourceType

if TYPE_CHECKING:
    from microkube.resources.registry import Registry

_ANNOTATIONS_MAX = 256 * 1024


class Strategy:
    """Default behaviour for any kind; subclasses override what differs."""

    #: Fields outside metadata whose change does not bump generation.
    non_spec_fields: tuple[str, ...] = ("apiVersion", "kind", "metadata", "status")

    def __init__(self, rt: ResourceType) -> None:
        self.rt = rt

    @property
    def has_status(self) -> bool:
        return "status" in self.rt.subresources

    # --- hooks -------------------------------------------------------------

    def default(self, obj: dict[str, Any]) -> None:
        """Fill defaults in place."""

    def prepare_for_create(self, obj: dict[str, Any], reg: Registry) -> None:
        if self.has_status and self.rt.group != "apiextensions.k8s.io":
            obj.pop("status", None)
            initial = self.initial_status(obj)
            if initial is not None:
                obj["status"] = initial
        if self.tracks_generation:
            meta.meta(obj)["generation"] = 1

    def initial_status(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return None

    @property
    def tracks_generation(self) -> bool:
        return self.has_status

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any], reg: Registry) -> None:
        if self.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if self.tracks_generation:
            gen = int(old.get("metadata", {}).get("generation") or 1)
            if self.spec_changed(new, old):
                gen += 1
            meta.meta(new)["generation"] = gen

    def prepare_for_status_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Registry
    ) -> dict[str, Any]:
        """Return the object to store: ``old`` with ``new``'s status (and metadata changes)."""
        out = json.loads(json.dumps(old))
        if "status" in new:
            out["status"] = new["status"]
        else:
            out.pop("status", None)
        # Upstream status strategies keep labels/annotations/finalizers changes too.
        nm, om = new.get("metadata", {}), out["metadata"]
        for f in ("labels", "annotations", "finalizers", "ownerReferences"):
            if f in nm:
                om[f] = nm[f]
            else:
                om.pop(f, None)
        return out

    def spec_changed(self, new: dict[str, Any], old: dict[str, Any]) -> bool:
        for k in set(new) | set(old):
            if k in self.non_spec_fields:
                continue
            if new.get(k) != old.get(k):
                return True
        return False

    def validate(self, obj: dict[str, Any], reg: Registry) -> list[errors.Cause]:
        return []

    def validate_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Registry
    ) -> list[errors.Cause]:
        return self.validate(new, reg)

    def name_errors(self, name: str) -> list[str]:
        """Name rules for this kind: DNS-1123 subdomain by default."""
        return meta.dns1123_subdomain_errors(name)

    async def after_create(self, obj: dict[str, Any], reg: Registry) -> None:
        """Side effects once stored (e.g. allocations)."""

    async def after_delete(self, obj: dict[str, Any], reg: Registry) -> None:
        """Side effects once removed (e.g. releasing allocations)."""

    async def after_update(self, obj: dict[str, Any], reg: Registry) -> None:
        """Side effects once an update is stored (e.g. dropping a cache)."""


def validate_metadata(
    obj: dict[str, Any], strategy: Strategy, *, namespaced: bool
) -> list[errors.Cause]:
    """ObjectMeta validation (mirrors apimachinery ``ValidateObjectMeta``)."""
    causes: list[errors.Cause] = []
    m = obj.get("metadata") or {}
    name = m.get("name") or ""
    if not name:
        causes.append(
            errors.Cause(
                "FieldValueRequired",
                "Required value: name or generateName is required",
                "metadata.name",
            )
        )
    else:
        for e in strategy.name_errors(name):
            causes.append(errors.invalid_value("metadata.name", name, e))
    ns = m.get("namespace")
    if namespaced and not ns:
        causes.append(errors.required("metadata.namespace"))
    for key, value in (m.get("labels") or {}).items():
        for e in meta.qualified_name_errors(str(key)):
            causes.append(errors.invalid_value("metadata.labels", key, e))
        if not isinstance(value, str):
            causes.append(errors.invalid_value(f"metadata.labels.{key}", value, "must be a string"))
        else:
            for e in meta.label_value_errors(value):
                causes.append(errors.invalid_value("metadata.labels", value, e))
    anns = m.get("annotations") or {}
    total = 0
    for key, value in anns.items():
        for e in meta.qualified_name_errors(str(key)):
            causes.append(errors.invalid_value("metadata.annotations", key, e))
        if not isinstance(value, str):
            causes.append(
                errors.invalid_value(f"metadata.annotations.{key}", value, "must be a string")
            )
        else:
            total += len(key) + len(value)
    if total > _ANNOTATIONS_MAX:
        causes.append(
            errors.Cause(
                "FieldValueTooLong",
                f"Too long: must have at most {_ANNOTATIONS_MAX} bytes",
                "metadata.annotations",
            )
        )
    for i, f in enumerate(m.get("finalizers") or []):
        if not isinstance(f, str) or meta.qualified_name_errors(f):
            causes.append(
                errors.invalid_value(
                    f"metadata.finalizers[{i}]", f, "name part must be a valid qualified name"
                )
            )
    for i, ref in enumerate(m.get("ownerReferences") or []):
        for f in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(f):
                causes.append(errors.required(f"metadata.ownerReferences[{i}].{f}"))
    return causes


_STRATEGIES: dict[tuple[str, str], type[Strategy]] = {}


def register(group: str, kind: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: the strategy of ``group``/``kind``."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        _STRATEGIES[(group, kind)] = cls
        return cls

    return deco


def strategy_for(rt: ResourceType) -> Strategy:
    from microkube.resources import kinds  # noqa: F401  (registers the kind strategies)

    cls = _STRATEGIES.get((rt.group, rt.kind), Strategy)
    return cls(rt)
