"""The Node object and its Lease, over a real Store + Registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from microkube.kubelet.node import KUBELET_VERSION, NodeAgent
from microkube.resources.registry import Registry

pytestmark = pytest.mark.anyio


async def test_register_status_and_lease(registry: Registry, tmp_path: Path) -> None:
    agent = NodeAgent(registry, "node1", state_dir=tmp_path, ip="192.0.2.7")
    node = await agent.register()
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "node1" and labels["kubernetes.io/os"] == "linux"
    assert labels["node.kubernetes.io/microkube-controlplane"] == "microkube-controlplane"
    st = node["status"]
    assert st["capacity"]["pods"] == "110" and st["allocatable"]["pods"] == "110"
    assert st["capacity"]["memory"].endswith("Ki") and int(st["capacity"]["cpu"]) >= 1
    assert "ephemeral-storage" in st["allocatable"]
    assert {"type": "InternalIP", "address": "192.0.2.7"} in st["addresses"]
    assert st["nodeInfo"]["kubeletVersion"] == KUBELET_VERSION
    assert st["nodeInfo"]["containerRuntimeVersion"] == "podman://4.3.1"
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"
    assert {conds[t]["status"] for t in ("MemoryPressure", "DiskPressure", "PIDPressure")} == {
        "False"
    }
    lease = await agent.renew_lease()
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert (
        lease["spec"]["holderIdentity"] == "node1" and lease["spec"]["leaseDurationSeconds"] == 40
    )
    assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    renewed = await agent.renew_lease()
    assert renewed["spec"]["renewTime"] >= lease["spec"]["renewTime"]
    assert renewed["metadata"]["uid"] == lease["metadata"]["uid"]


async def test_reregister_keeps_user_changes_and_transition_times(
    registry: Registry, tmp_path: Path
) -> None:
    agent = NodeAgent(registry, "node1", state_dir=tmp_path, ip="192.0.2.7")
    first = await agent.register()
    nodes = registry.catalog.get("", "v1", "nodes")

    def cordon(n: dict[str, Any]) -> dict[str, Any]:
        n["spec"]["unschedulable"] = True
        n["metadata"]["labels"]["team"] = "a"
        return n

    await registry.guaranteed_update(nodes, "", "node1", cordon)
    again = await NodeAgent(registry, "node1", state_dir=tmp_path, ip="192.0.2.7").register()
    assert again["spec"]["unschedulable"] is True and again["metadata"]["labels"]["team"] == "a"
    ready = lambda n: next(c for c in n["status"]["conditions"] if c["type"] == "Ready")  # noqa: E731
    assert ready(again)["lastTransitionTime"] == ready(first)["lastTransitionTime"]
