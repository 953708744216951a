"""Conversion between the served versions of a kind that share one storage version.

Mirrors apiserver's versioned storage: a built-in kind served at several
versions (autoscaling/v1 and v2 HorizontalPodAutoscalers) is stored at one
of them and converted on the way in and out.  The
:class:`~microkube.resources.registry.Registry` calls :func:`to_storage` on
every write before defaulting, so strategies, validation and controllers only
ever see the storage shape, and :func:`from_storage` whenever it presents an
object to a client (get, list, watch, write responses), so a client sees the
version it asked for::

    v1 body ─► to_storage ─► strategy/validate ─► store (v2) ─► from_storage ─► v1 answer

Kinds without a registered converter pass through unchanged (custom
resources: apiextensions' "None" conversion, only apiVersion is rewritten).
Kind modules register their converters with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from microkube.resources.types import ResourceType

Obj = dict[str, Any]
#: ``convert(obj, to_api_version)`` → the object in that version (may reuse ``obj``).
Convert = Callable[[Obj, str], Obj]

_CONVERTERS: dict[tuple[str, str], tuple[str, Convert]] = {}
_loaded = False


def register(group: str, kind: str, storage_api_version: str, convert: Convert) -> None:
    """``group``/``kind`` is stored at ``storage_api_version`` and converted by ``convert``."""
    _CONVERTERS[(group, kind)] = (storage_api_version, convert)


def _entry(rt: ResourceType) -> tuple[str, Convert] | None:
    global _loaded
    if not _loaded:
        from microkube.resources import kinds  # noqa: F401  (registers the converters)

        _loaded = True
    return _CONVERTERS.get((rt.group, rt.kind))


def storage_version(rt: ResourceType) -> str:
    """The apiVersion objects of ``rt`` are stored at."""
    entry = _entry(rt)
    return entry[0] if entry else rt.api_version


def to_storage(rt: ResourceType, obj: Obj) -> Obj:
    """``obj`` (in ``rt``'s version or already stored shape) in the storage version."""
    entry = _entry(rt)
    if entry is None or obj.get("apiVersion") == entry[0]:
        return obj
    return entry[1](obj, entry[0])


def from_storage(rt: ResourceType, obj: Obj) -> Obj:
    """A stored object as served under ``rt``."""
    entry = _entry(rt)
    if entry is None or obj.get("apiVersion") == rt.api_version:
        return obj
    return entry[1](obj, rt.api_version)
