"""The one Node object and its heartbeat Lease.

Mirrors the kubelet's node status manager (``pkg/kubelet/nodestatus``):

* at start the Node is registered (created, or its status refreshed when it
  exists: a restart keeps labels, taints and ``spec.unschedulable`` set by
  users, e.g. ``kubectl cordon``);
* its status reports capacity/allocatable (cpu, memory, ephemeral-storage,
  pods), addresses, nodeInfo and the four conditions;
* the status is re-posted every ``status_interval`` (10 s, as
  ``nodeStatusUpdateFrequency``), keeping ``lastTransitionTime`` of unchanged
  conditions;
* a Lease ``kube-node-lease/<node>`` owned by the Node is renewed every
  ``lease_interval`` (10 s; duration 40 s), as the node lease controller does.

Labels follow MicroK8s with microkube's names: ``kubernetes.io/hostname``,
``kubernetes.io/os``, ``kubernetes.io/arch`` (and their ``beta.`` twins) and
``node.kubernetes.io/microkube-controlplane``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from microkube import errors
from microkube.objects import meta

log = logging.getLogger(__name__)

Obj = dict[str, Any]
KUBELET_VERSION = "v1.32.4"
RUNTIME_VERSION = "podman://4.3.1"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def host_ip() -> str:
    """The address of the default route's interface (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def _memory_ki() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.system()


def capacity(state_dir: Path, max_pods: int) -> dict[str, str]:
    """Node capacity as Kubernetes quantities (memory in Ki, as the kubelet reports it)."""
    disk = shutil.disk_usage(state_dir if state_dir.exists() else "/")
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{_memory_ki()}Ki",
        "ephemeral-storage": f"{disk.total // 1024}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "pods": str(max_pods),
    }


def _conditions(now: str, old: list[Obj]) -> list[Obj]:
    wanted = [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]
    prev = {c.get("type"): c for c in old}
    out = []
    for type_, status, reason, message in wanted:
        p = prev.get(type_)
        out.append(
            {
                "type": type_,
                "status": status,
                "lastHeartbeatTime": now,
                "lastTransitionTime": p["lastTransitionTime"]
                if p and p.get("status") == status and p.get("lastTransitionTime")
                else now,
                "reason": reason,
                "message": message,
            }
        )
    return out


def node_status(
    name: str,
    *,
    state_dir: Path,
    max_pods: int,
    old: Obj | None = None,
    runtime_version: str = RUNTIME_VERSION,
    ip: str | None = None,
) -> Obj:
    cap = capacity(state_dir, max_pods)
    now = meta.now()
    return {
        "capacity": cap,
        "allocatable": dict(cap),
        "conditions": _conditions(now, ((old or {}).get("conditions")) or []),
        "addresses": [
            {"type": "InternalIP", "address": ip or host_ip()},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": platform.release(),
            "osImage": _os_image(),
            "containerRuntimeVersion": runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": _arch(),
        },
    }


def node_labels(name: str) -> dict[str, str]:
    arch = _arch()
    return {
        "beta.kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "microkube.io/cluster": "true",
        "node.kubernetes.io/microkube-controlplane": "microkube-controlplane",
    }


class NodeAgent:
    """Registers the Node, posts its status and renews its Lease."""

    def __init__(
        self,
        registry: Any,
        name: str,
        *,
        state_dir: Path,
        max_pods: int = 110,
        runtime_version: str = RUNTIME_VERSION,
        status_interval: float = 10.0,
        lease_interval: float = 10.0,
        ip: str | None = None,
    ) -> None:
        self.registry = registry
        self.name = name
        self.state_dir = Path(state_dir)
        self.max_pods = max_pods
        self.runtime_version = runtime_version
        self.status_interval = status_interval
        self.lease_interval = lease_interval
        self.ip = ip or host_ip()
        self.nodes_rt = registry.catalog.get("", "v1", "nodes")
        self.leases_rt = registry.catalog.get("coordination.k8s.io", "v1", "leases")

    def _status(self, old: Obj | None) -> Obj:
        return node_status(
            self.name,
            state_dir=self.state_dir,
            max_pods=self.max_pods,
            old=old,
            runtime_version=self.runtime_version,
            ip=self.ip,
        )

    async def register(self) -> Obj:
        """Create the Node, or refresh the status and our labels of an existing one."""
        existing = self.registry.try_get(self.nodes_rt, "", self.name)
        if existing is None:
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": self.name, "labels": node_labels(self.name)},
                "spec": {},
                "status": self._status(None),
            }
            try:
                return dict(await self.registry.create(self.nodes_rt, "", body))
            except errors.AlreadyExists:
                pass

        def relabel(node: Obj) -> Obj | None:
            labels = node["metadata"].setdefault("labels", {})
            want = node_labels(self.name)
            if all(labels.get(k) == v for k, v in want.items()):
                return None
            labels.update(want)
            return node

        await self.registry.guaranteed_update(
            self.nodes_rt, "", self.name, relabel, field_manager="kubelet"
        )
        return await self.update_status()

    async def update_status(self) -> Obj:
        def mutate(node: Obj) -> Obj:
            old = node.get("status") or {}
            node["status"] = {**old, **self._status(old)}
            return node

        try:
            out = await self.registry.guaranteed_update(
                self.nodes_rt, "", self.name, mutate, subresource="status", field_manager="kubelet"
            )
        except errors.NotFound:
            return await self.register()
        assert out is not None
        return dict(out)

    async def renew_lease(self) -> Obj:
        node = self.registry.try_get(self.nodes_rt, "", self.name)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_DURATION,
            "renewTime": now,
        }
        owner = (
            [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": self.name,
                    "uid": node["metadata"]["uid"],
                }
            ]
            if node
            else []
        )

        def mutate(lease: Obj) -> Obj:
            lease["spec"] = {**(lease.get("spec") or {}), **spec}
            if owner and not lease["metadata"].get("ownerReferences"):
                lease["metadata"]["ownerReferences"] = owner
            return lease

        try:
            out = await self.registry.guaranteed_update(
                self.leases_rt, LEASE_NAMESPACE, self.name, mutate, field_manager="kubelet"
            )
            assert out is not None
            return dict(out)
        except errors.NotFound:
            lease_meta: Obj = {"name": self.name, "namespace": LEASE_NAMESPACE}
            if owner:
                lease_meta["ownerReferences"] = owner
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": lease_meta,
                "spec": spec,
            }
            return dict(await self.registry.create(self.leases_rt, LEASE_NAMESPACE, body))

    async def run(self) -> None:
        """Heartbeat forever (status and lease on their own periods)."""
        await self.register()
        loop = asyncio.get_running_loop()
        next_status = next_lease = loop.time()
        while True:
            now = loop.time()
            try:
                if now >= next_lease:
                    await self.renew_lease()
                    next_lease = now + self.lease_interval
                if now >= next_status:
                    await self.update_status()
                    next_status = now + self.status_interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep beating
                log.warning("node heartbeat: %s", exc)
            await asyncio.sleep(max(0.05, min(next_lease, next_status) - loop.time()))
