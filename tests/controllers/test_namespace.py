"""Namespace controller: deleting a namespace empties it, then removes it; pods wake it up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers import namespace
from microkube.controllers.namespace import NamespaceController
from microkube.resources.registry import DeleteOptions

pytestmark = pytest.mark.anyio


@pytest.fixture
async def running(client: LocalClient, informers: InformerFactory) -> AsyncIterator[None]:
    ctl = NamespaceController(client, informers)
    tasks = [*informers.start(), asyncio.create_task(ctl.run())]
    yield
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await informers.stop()


async def until(pred, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_namespace_emptied_then_removed_when_its_pods_go(
    client: LocalClient, running: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No fallback recheck: only events may move the deletion forward.
    monkeypatch.setattr(namespace, "RECHECK", 3600.0)
    ns_rt, cm_rt, pod_rt = (client.resource("", p) for p in ("namespaces", "configmaps", "pods"))
    await client.create(ns_rt, "", {"metadata": {"name": "doomed"}})
    await client.create(cm_rt, "doomed", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    pod = {
        "metadata": {"name": "p"},
        # bound to a node: its deletion is graceful and waits for a kubelet (here: us)
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
    }
    await client.create(pod_rt, "doomed", pod)
    await client.delete(ns_rt, "", "doomed")

    await until(lambda: client.try_get(cm_rt, "doomed", "cfg") is None)
    p = client.try_get(pod_rt, "doomed", "p")
    assert p is not None and p["metadata"].get("deletionTimestamp")
    assert client.get(ns_rt, "", "doomed")["status"]["phase"] == "Terminating"

    # the "kubelet" finishes the pod: its deletion event completes the namespace
    await client.registry.delete(pod_rt, "doomed", "p", DeleteOptions(grace_period_seconds=0))
    await until(lambda: client.try_get(ns_rt, "", "doomed") is None)


async def test_other_namespaces_are_left_alone(client: LocalClient, running: None) -> None:
    ns_rt, cm_rt = client.resource("", "namespaces"), client.resource("", "configmaps")
    for name in ("keep", "drop"):
        await client.create(ns_rt, "", {"metadata": {"name": name}})
        await client.create(cm_rt, name, {"metadata": {"name": "cfg"}})
    await client.delete(ns_rt, "", "drop")
    await until(lambda: client.try_get(ns_rt, "", "drop") is None)
    assert client.try_get(cm_rt, "keep", "cfg") is not None
