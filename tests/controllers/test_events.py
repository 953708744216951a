"""EventRecorder aggregation and the event TTL sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest

from microkube.client.local import LocalClient
from microkube.controllers.base import utcnow
from microkube.controllers.events import EventRecorder, EventTTL

pytestmark = pytest.mark.anyio


async def test_identical_events_aggregate(client: LocalClient) -> None:
    cm = await client.create(
        client.resource("", "configmaps"), "default", {"metadata": {"name": "x"}}
    )
    rec = EventRecorder(client, "test-controller")
    for _ in range(3):
        await rec.event(cm, "Normal", "Poked", "poked it")
    await rec.event(cm, "Warning", "Broke", "broke it")
    evs = client.list(client.resource("", "events"), "default").items
    by_reason = {e["reason"]: e for e in evs}
    assert set(by_reason) == {"Poked", "Broke"}
    assert by_reason["Poked"]["count"] == 3
    assert by_reason["Poked"]["involvedObject"]["uid"] == cm["metadata"]["uid"]
    assert by_reason["Poked"]["source"] == {"component": "test-controller"}
    assert by_reason["Broke"]["type"] == "Warning" and by_reason["Broke"]["count"] == 1


async def test_ttl_sweep(client: LocalClient) -> None:
    cm = await client.create(
        client.resource("", "configmaps"), "default", {"metadata": {"name": "x"}}
    )
    await EventRecorder(client, "c").event(cm, "Normal", "R", "m")
    assert await EventTTL(client).sweep() == 0
    later = EventTTL(client, clock=lambda: utcnow() + timedelta(hours=2))
    assert await later.sweep() == 1
    assert client.list(client.resource("", "events"), "default").items == []
