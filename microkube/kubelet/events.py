"""A small core/v1 Event recorder for the kubelet and the scheduler.

Mirrors client-go's ``record.EventRecorder`` with its correlator reduced to
the part ``kubectl describe`` shows: the same (object, type, reason, message,
field path) recorded again bumps ``count`` and ``lastTimestamp`` of the
existing Event rather than creating another.  Events are named
``<object>.<hex nanoseconds>`` as upstream does.  Recording never raises:
events are advisory, failures are logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from microkube import errors

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NORMAL = "Normal"
WARNING = "Warning"


def fmt_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Recorder:
    """Emit Events about objects on behalf of ``component`` (``kubelet``, ``default-scheduler``)."""

    def __init__(
        self,
        registry: Any,
        component: str,
        *,
        host: str = "",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.registry = registry
        self.component = component
        self.host = host
        self.now = clock or (lambda: datetime.now(UTC))
        self._rt = registry.catalog.get("", "v1", "events")
        self._seen: dict[tuple[str, ...], str] = {}

    async def event(
        self,
        obj: Obj,
        type_: str,
        reason: str,
        message: str,
        *,
        field_path: str = "",
    ) -> None:
        try:
            await self._record(obj, type_, reason, message, field_path)
        except Exception as exc:  # noqa: BLE001 - events are advisory
            log.debug("event %s %s: %s", reason, message, exc)

    async def _record(
        self, obj: Obj, type_: str, reason: str, message: str, field_path: str
    ) -> None:
        m = obj.get("metadata") or {}
        ns = m.get("namespace") or "default"
        key = (ns, m.get("uid", ""), type_, reason, message, field_path)
        stamp = fmt_time(self.now())
        name = self._seen.get(key)
        if name is not None:

            def bump(ev: Obj) -> Obj:
                ev["count"] = int(ev.get("count") or 1) + 1
                ev["lastTimestamp"] = stamp
                return ev

            try:
                await self.registry.guaranteed_update(
                    self._rt, ns, name, bump, field_manager=self.component
                )
                return
            except errors.NotFound:
                del self._seen[key]
        ref: Obj = {
            "kind": obj.get("kind") or "Pod",
            "namespace": m.get("namespace", ""),
            "name": m.get("name", ""),
            "uid": m.get("uid", ""),
            "apiVersion": obj.get("apiVersion") or "v1",
            "resourceVersion": m.get("resourceVersion", ""),
        }
        if not m.get("namespace"):
            ref.pop("namespace")
        if field_path:
            ref["fieldPath"] = field_path
        name = f"{m.get('name', 'object')}.{time.time_ns():x}"
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        await self.registry.create(self._rt, ns, body)
        self._seen[key] = name
        if len(self._seen) > 4096:
            self._seen.pop(next(iter(self._seen)))
