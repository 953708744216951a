"""The Podman implementation of :class:`microkube.kubelet.runtime.ContainerRuntime`.

This is the only module importing ``podman`` (podman-py).  podman-py's
``APIClient`` is a blocking ``requests.Session``; control-plane calls (pods,
containers, networks, images) go through it in worker threads
(``anyio.to_thread.run_sync`` with a ``CapacityLimiter``), using the libpod
REST endpoints directly with JSON bodies so that every field Kubernetes needs
is reachable.  Long-lived streams (exec, attach, logs) go through
:mod:`microkube.kubelet.podman_stream`, a native asyncio connection.

Mapping: a sandbox is a Podman pod (infra container = pause process sharing
net/ipc/uts, owning resolv.conf and /etc/hosts), named
``<instance>_<namespace>_<pod>_<uid8>``; a container is named
``<instance>_<namespace>_<pod>_<container>_<attempt>_<uid8>``.  Kubernetes
``command`` becomes the entrypoint, ``args`` the command, which gives
Kubernetes' override rules (Podman drops the image CMD when the entrypoint is
given).  All objects carry the ``io.microkube.*`` labels of :mod:`runtime`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import podman
import podman.errors

from microkube.kubelet import runtime as rt
from microkube.kubelet.oomwatch import OomWatch
from microkube.kubelet.podman_containers import ContainerOps, label_filter, parse_time

T = TypeVar("T")


class PodmanRuntime(ContainerOps):
    """Real containers through a Podman API socket (see module docstring)."""

    simulated_network = False

    def __init__(self, socket_path: str | Path, instance: str, *, max_threads: int = 8) -> None:
        self.instance = instance
        self.socket_path = Path(str(socket_path).removeprefix("unix://"))
        self._client = podman.PodmanClient(base_url=f"unix://{self.socket_path}")
        self._limiter = anyio.CapacityLimiter(max_threads)
        self._inspected: dict[str, tuple[tuple[Any, ...], rt.ContainerStatus]] = {}
        self._sandbox_labels: dict[str, tuple[str, dict[str, str]]] = {}
        self._oom = OomWatch()

    # -- plumbing -------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        def guarded() -> T:
            try:
                return fn()
            except podman.errors.NotFound as exc:
                raise rt.RuntimeNotFound(str(exc)) from exc
            except (podman.errors.APIError, OSError) as exc:
                # requests' ConnectionError is an OSError: the service is down.
                raise rt.ContainerRuntimeError(str(exc)) from exc

        return await anyio.to_thread.run_sync(guarded, limiter=self._limiter)

    @staticmethod
    def _check(resp: Any) -> Any:
        if resp.status_code < 400:
            return resp.json() if resp.content.strip() else None
        try:
            body = resp.json()
            message = body.get("message") or body.get("cause") or resp.text
        except ValueError:
            message = resp.text
        if resp.status_code == 404:
            raise rt.RuntimeNotFound(message.strip())
        raise rt.ContainerRuntimeError(message.strip())

    def _get(self, path: str, **params: Any) -> Any:
        return self._check(self._client.api.get(path, params=params or None))

    def _post(
        self, path: str, body: Any = None, *, http_timeout: float | None = None, **params: Any
    ) -> Any:
        resp = self._client.api.post(
            path,
            params=params or None,
            data=None if body is None else json.dumps(body),
            headers={"content-type": "application/json"},
            timeout=http_timeout,
        )
        if resp.status_code == 304:  # already started/stopped
            return None
        return self._check(resp)

    def _delete(self, path: str, **params: Any) -> None:
        try:
            self._check(self._client.api.delete(path, params=params or None))
        except rt.RuntimeNotFound:
            pass

    def _labels(self, config_labels: dict[str, str], **extra: str) -> dict[str, str]:
        return {**config_labels, rt.LABEL_INSTANCE: self.instance, **extra}

    async def version(self) -> str:
        info = await self._run(partial(self._get, "/version"))
        return str(info.get("Version", ""))

    async def close(self) -> None:
        self._oom.close()
        self._client.close()

    # -- networks and images ---------------------------------------------

    async def ensure_network(self, name: str, cidr: str, gateway: str) -> None:
        def go() -> None:
            try:
                info = self._get(f"/networks/{name}/json")
            except rt.RuntimeNotFound:
                info = None
            if info is not None:
                subnets = [s.get("subnet") for s in info.get("subnets") or []]
                if cidr not in subnets:
                    raise rt.ContainerRuntimeError(f"network {name} exists with {subnets}")
                return
            body = {
                "name": name,
                "driver": "bridge",
                "subnets": [{"subnet": cidr, "gateway": gateway}],
                "labels": {rt.LABEL_INSTANCE: self.instance},
                "dns_enabled": False,
            }
            self._post("/networks/create", body)

        await self._run(go)

    async def remove_network(self, name: str) -> None:
        await self._run(partial(self._delete, f"/networks/{name}", force="true"))

    async def image_present(self, ref: str) -> rt.ImageInfo | None:
        name = rt.normalize_image(ref)
        try:
            info = await self._run(partial(self._get, f"/images/{name}/json"))
        except rt.RuntimeNotFound:
            return None
        digests = info.get("RepoDigests") or []
        digest = info.get("Digest") or (digests[0].rpartition("@")[2] if digests else "")
        return rt.ImageInfo(ref=name, id=info["Id"], digest=digest, size=info.get("Size", 0))

    async def pull_image(
        self,
        ref: str,
        policy: rt.PullPolicy = "IfNotPresent",
        *,
        auth: rt.RegistryAuth | None = None,
    ) -> rt.ImageInfo:
        name = rt.normalize_image(ref)
        if policy != "Always":
            present = await self.image_present(name)
            if present is not None:
                return present
            if policy == "Never":
                raise rt.ImagePullError(
                    f'Container image "{ref}" is not present with pull policy of Never',
                    reason="ErrImageNeverPull",
                )

        headers = {}
        if auth is not None:
            # libpod's single-registry auth header: URL-safe base64 of a Docker AuthConfig.
            doc = json.dumps({"username": auth.username, "password": auth.password})
            headers["X-Registry-Auth"] = base64.urlsafe_b64encode(doc.encode()).decode()

        def go() -> None:
            resp = self._client.api.post(
                "/images/pull",
                params={"reference": name, "policy": "always"},
                headers=headers,
                stream=True,
            )
            if resp.status_code >= 400:
                raise rt.ImagePullError(f"pulling {name}: {resp.text.strip()}")
            for line in resp.iter_lines():
                if line.strip() and (err := json.loads(line).get("error")):
                    raise rt.ImagePullError(f"pulling {name}: {err}")

        try:
            await self._run(go)
        except rt.ContainerRuntimeError as exc:
            if isinstance(exc, rt.ImagePullError):
                raise
            raise rt.ImagePullError(str(exc)) from exc
        info = await self.image_present(name)
        if info is None:
            raise rt.ImagePullError(f"pulled {name} but it is not in storage")
        return info

    # -- sandboxes --------------------------------------------------------

    def _sandbox_name(self, c: rt.PodSandboxConfig) -> str:
        return f"{self.instance}_{c.namespace}_{c.name}_{c.uid.replace('-', '')[:8]}"

    async def create_pod_sandbox(self, config: rt.PodSandboxConfig) -> rt.SandboxStatus:
        labels = self._labels(
            config.labels,
            **{
                rt.LABEL_POD_UID: config.uid,
                rt.LABEL_NAMESPACE: config.namespace,
                rt.LABEL_POD_NAME: config.name,
            },
        )
        body: dict[str, Any] = {
            "name": self._sandbox_name(config),
            "hostname": config.hostname or config.name,
            "labels": labels,
            "shared_namespaces": ["ipc", "net", "uts"],
            "dns_server": config.dns_servers,
            "dns_search": config.dns_searches,
            "dns_option": config.dns_options,
            "hostadd": [f"{h}:{a.ip}" for a in config.host_aliases for h in a.hostnames],
            "portmappings": [
                {
                    "container_port": p.container_port,
                    "host_port": p.host_port,
                    "protocol": p.protocol.lower(),
                    "host_ip": p.host_ip,
                }
                for p in config.port_mappings
            ],
        }
        if config.host_network:
            # The host's network and hostname, as upstream (no UTS of our own;
            # Podman takes /etc/resolv.conf from the host and refuses port maps).
            body["netns"] = {"nsmode": "host"}
            body["shared_namespaces"] = ["ipc", "net"]
            del body["hostname"], body["portmappings"]
        elif config.network:
            body["netns"] = {"nsmode": "bridge"}
            body["Networks"] = {config.network: {}}

        # A known infra name lets us read the IP without inspecting the pod first.
        body["infra_name"] = body["name"] + "-infra"

        def go() -> rt.SandboxStatus:
            pod_id = self._post("/pods/create", body)["Id"]
            try:
                self._post(f"/pods/{pod_id}/start")
            except Exception:
                self._delete(f"/pods/{pod_id}", force="true")
                raise
            pod = {"Id": pod_id, "Name": body["name"], "Labels": labels, "State": "Running"}
            return self._sandbox_from_inspect(pod, infra=body["infra_name"])

        return await self._run(go)

    def _sandbox_from_inspect(self, pod: dict[str, Any], *, infra: str = "") -> rt.SandboxStatus:
        labels = pod.get("Labels") or {}
        self._sandbox_labels[pod["Id"]] = (pod["Id"], labels)
        ip = ""
        host_network = False
        infra = infra or pod.get("InfraContainerID") or pod.get("InfraId") or ""
        if infra:
            try:
                info = self._get(f"/containers/{infra}/json")
                pod.setdefault("Created", info.get("Created"))
                host_network = (info.get("HostConfig") or {}).get("NetworkMode") == "host"
                nets = info["NetworkSettings"]
                ip = nets.get("IPAddress") or ""
                for net in (nets.get("Networks") or {}).values():
                    ip = ip or net.get("IPAddress", "")
            except rt.RuntimeNotFound:
                pass
        state = pod.get("State") or pod.get("Status") or ""
        return rt.SandboxStatus(
            id=pod["Id"],
            name=pod["Name"],
            uid=labels.get(rt.LABEL_POD_UID, ""),
            namespace=labels.get(rt.LABEL_NAMESPACE, ""),
            pod_name=labels.get(rt.LABEL_POD_NAME, ""),
            labels=labels,
            state="ready" if state in ("Running", "Degraded") else "notready",
            ip=ip,
            created_at=parse_time(pod.get("Created")),
            host_network=host_network,
        )

    async def sandbox_status(self, sandbox_id: str) -> rt.SandboxStatus:
        return await self._run(
            lambda: self._sandbox_from_inspect(self._get(f"/pods/{sandbox_id}/json"))
        )

    async def list_sandboxes(self, labels: dict[str, str] | None = None) -> list[rt.SandboxStatus]:
        filters = json.dumps({"label": label_filter(self.instance, labels)})

        def go() -> list[rt.SandboxStatus]:
            out = []
            for pod in self._get("/pods/json", filters=filters):
                try:
                    out.append(self._sandbox_from_inspect(self._get(f"/pods/{pod['Id']}/json")))
                except rt.RuntimeNotFound:
                    continue
            return out

        return await self._run(go)

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop everything in the sandbox, the infra container last: its network is torn down.

        Container by container: Podman 4.3's pod stop does nothing (304) unless
        every container of the pod runs, and a finished pod's have exited.
        """

        def go() -> None:
            pod = self._get(f"/pods/{sandbox_id}/json")
            infra = pod.get("InfraContainerID") or ""
            ids = [c["Id"] for c in pod.get("Containers") or [] if c.get("Id") != infra]
            for cid in [*ids, infra] if infra else ids:
                path = f"/containers/{cid}/stop"
                try:
                    self._post(path, http_timeout=60, timeout=0)
                except rt.RuntimeNotFound:
                    continue

        await self._run(go)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Kill whatever still runs in the sandbox and remove it (stop containers first)."""
        await self._run(partial(self._force_remove_pod, sandbox_id))
        self._sandbox_labels.pop(sandbox_id, None)

    async def open_port(
        self, sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sandbox = await self.sandbox_status(sandbox_id)
        ip = sandbox.ip or ("127.0.0.1" if sandbox.host_network else "")
        if not ip:
            raise rt.ContainerRuntimeError(f"sandbox {sandbox_id} has no IP")
        return await asyncio.open_connection(ip, port)


def cleanup_host(settings: Any) -> None:
    """``microkube reset``: remove every pod, container and network of the instance.

    Starts the instance's private Podman service (or uses the configured
    socket) just long enough to run :meth:`PodmanRuntime.cleanup_all`; does
    nothing when Podman is not installed.
    """
    import shutil

    from microkube.kubelet.podman_service import PodmanService

    if not settings.kubelet.podman_socket and shutil.which("podman") is None:
        return
    service = PodmanService(
        settings.state_dir,
        settings.instance,
        pod_cidr=settings.network.pod_cidr,
        existing_socket=settings.kubelet.podman_socket or None,
    )
    service.start()
    try:

        async def go() -> None:
            runtime = PodmanRuntime(service.socket_path, settings.instance)
            try:
                await runtime.cleanup_all()
            finally:
                await runtime.close()

        asyncio.run(go())
    finally:
        service.close()


__all__ = ["PodmanRuntime", "cleanup_host", "parse_time"]
