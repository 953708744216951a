"""The ordered plugin list and its two phases.

A plugin is anything with ``name`` and ``handles(attrs)``, plus ``mutate``
(:class:`MutationPlugin`) and/or ``validate`` (:class:`ValidationPlugin`).
Plugins raise :class:`microkube.errors.ApiError` subclasses to reject; the
first rejection stops the phase, as ``admission.chainAdmissionHandler`` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from microkube.admission.attributes import Attributes


@runtime_checkable
class Plugin(Protocol):
    name: str

    def handles(self, attrs: Attributes) -> bool:
        """Cheap check whether the plugin cares about this request at all."""


@runtime_checkable
class MutationPlugin(Plugin, Protocol):
    async def mutate(self, attrs: Attributes) -> None:
        """Change ``attrs.object`` in place (or raise to reject)."""


@runtime_checkable
class ValidationPlugin(Plugin, Protocol):
    async def validate(self, attrs: Attributes) -> None:
        """Raise to reject; must not change ``attrs.object``."""


class Chain:
    """Ordered plugins; mutating ones run (in order) before validating ones."""

    def __init__(self, plugins: Iterable[Plugin] = ()) -> None:
        self._plugins: list[Plugin] = []
        self._mutators: list[MutationPlugin] = []
        self._validators: list[ValidationPlugin] = []
        for p in plugins:
            self.add(p)

    def add(self, plugin: Plugin, *, before: str | None = None) -> None:
        """Append ``plugin`` (or insert it before the plugin named ``before``)."""
        names = [p.name for p in self._plugins]
        if plugin.name in names:
            raise ValueError(f"admission plugin {plugin.name!r} is already registered")
        if before is not None and before in names:
            self._plugins.insert(names.index(before), plugin)
        else:
            self._plugins.append(plugin)
        self._mutators = [p for p in self._plugins if isinstance(p, MutationPlugin)]
        self._validators = [p for p in self._plugins if isinstance(p, ValidationPlugin)]

    @property
    def plugins(self) -> list[Plugin]:
        return list(self._plugins)

    def get(self, name: str) -> Plugin | None:
        return next((p for p in self._plugins if p.name == name), None)

    async def mutate(self, attrs: Attributes) -> bool:
        """Run the mutating plugins in order; whether any of them handled the request."""
        ran = False
        for p in self._mutators:
            if p.handles(attrs):
                ran = True
                await p.mutate(attrs)
        return ran

    async def validate(self, attrs: Attributes) -> None:
        for p in self._validators:
            if p.handles(attrs):
                await p.validate(attrs)
