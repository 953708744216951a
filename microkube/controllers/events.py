"""Recording core/v1 Events for controllers, with aggregation and a TTL.

Mirrors client-go's ``record.EventRecorder`` + ``EventCorrelator``: an event
is identified by (source component, involved object, type, reason, message);
recording the same one again bumps ``count`` and ``lastTimestamp`` on the
existing Event instead of creating a new object, which is what ``kubectl
describe`` shows as ``(x3 over 2m)``.  New events are named
``<object>.<hex nanoseconds>`` as upstream does.

The apiserver keeps events for ``--event-ttl`` (1 h); here :class:`EventTTL`
does that job: a periodic sweep deleting Events whose last occurrence is older
than the TTL.

Recording never fails the caller: an event is advisory, so errors are logged.
The kubelet, the scheduler and the storage controller record through the same
recorder (:meth:`EventRecorder.for_registry`), with ``field_path`` naming the
container an event is about (``spec.containers{web}``), as the kubelet does.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from microkube import errors
from microkube.client.local import LocalClient
from microkube.controllers.base import Clock, fmt_time, parse_time, utcnow

if TYPE_CHECKING:
    from microkube.resources.registry import Registry

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NORMAL = "Normal"
WARNING = "Warning"


class EventRecorder:
    """Emits Events about objects on behalf of one component."""

    def __init__(
        self, client: LocalClient, component: str, *, clock: Clock | None = None, host: str = ""
    ) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.now = clock or utcnow
        self._rt = client.resource("", "events")
        # correlation key -> (namespace, name) of the Event holding it
        self._seen: dict[tuple[str, ...], tuple[str, str]] = {}

    @classmethod
    def for_registry(
        cls, registry: Registry, component: str, *, clock: Clock | None = None, host: str = ""
    ) -> EventRecorder:
        """A recorder writing as ``component`` (its field manager too) straight to ``registry``."""
        return cls(LocalClient(registry, field_manager=component), component, clock=clock, host=host)

    def _ref(self, obj: Obj) -> Obj:
        m = obj.get("metadata", {})
        ref = {
            "kind": obj.get("kind", ""),
            "namespace": m.get("namespace", ""),
            "name": m.get("name", ""),
            "uid": m.get("uid", ""),
            "apiVersion": obj.get("apiVersion", ""),
            "resourceVersion": m.get("resourceVersion", ""),
        }
        return {k: v for k, v in ref.items() if v}

    async def event(
        self, obj: Obj, type_: str, reason: str, message: str, *, field_path: str = ""
    ) -> None:
        """Record ``reason``/``message`` about ``obj`` (``type_`` Normal or Warning)."""
        try:
            await self._record(obj, type_, reason, message, field_path)
        except Exception as exc:  # noqa: BLE001 - events are best effort
            log.debug("%s: could not record event %s: %s", self.component, reason, exc)

    async def _record(
        self, obj: Obj, type_: str, reason: str, message: str, field_path: str
    ) -> None:
        ref = self._ref(obj)
        if field_path:
            ref["fieldPath"] = field_path
        ns = ref.get("namespace") or "default"
        key: tuple[str, ...] = (self.component, ref.get("kind", ""), ns, ref.get("name", ""))
        key += (ref.get("uid", ""), field_path, type_, reason, message)
        now = self.now()
        stamp = fmt_time(now)
        existing = self._seen.get(key)
        if existing is not None:

            def bump(ev: Obj) -> Obj:
                ev["count"] = int(ev.get("count") or 1) + 1
                ev["lastTimestamp"] = stamp
                ev["involvedObject"] = ref
                return ev

            try:
                await self.client.mutate(self._rt, existing[0], existing[1], bump)
                return
            except errors.NotFound:
                self._seen.pop(key, None)
        name = f"{ref.get('name', 'unknown')}.{int(now.timestamp() * 1e9):x}"
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        try:
            created = await self.client.create(self._rt, ns, body)
        except errors.AlreadyExists:
            body["metadata"]["name"] = f"{name}{len(self._seen):x}"
            created = await self.client.create(self._rt, ns, body)
        self._seen[key] = (ns, created["metadata"]["name"])
        if len(self._seen) > 4096:  # bound the correlator like upstream's LRU
            self._seen.pop(next(iter(self._seen)))


class EventTTL:
    """Deletes Events older than ``ttl`` (the apiserver's ``--event-ttl``, 1 h)."""

    def __init__(
        self,
        client: LocalClient,
        *,
        ttl: timedelta = timedelta(hours=1),
        interval: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.interval = interval
        self.now = clock or utcnow

    async def sweep(self) -> int:
        """Delete expired events once; returns how many went."""
        rt = self.client.resource("", "events")
        cutoff = self.now() - self.ttl
        deleted = 0
        for ev in self.client.list(rt).items:
            m = ev["metadata"]
            last = parse_time(
                ev.get("lastTimestamp") or ev.get("eventTime") or m.get("creationTimestamp")
            )
            if last is None or last >= cutoff:
                continue
            try:
                await self.client.delete(rt, m.get("namespace", ""), m["name"])
                deleted += 1
            except errors.NotFound:
                pass
        return deleted

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001
                log.exception("event TTL sweep failed")
            await asyncio.sleep(self.interval)
