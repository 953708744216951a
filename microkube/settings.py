"""Settings of one microkube instance, grouped by component.

Every field documents its unit.  The defaults are microkube's embedded
defaults: ``microkube serve`` with no flags runs a working single-node cluster.
Host resources an instance creates (Podman pods/networks, nft/iptables chains,
DNS and registry ports) are named from ``instance`` so that two instances, or
the test suite beside a running one, never collide.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path


def _default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/microkube")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "microkube"


@dataclass
class StoreSettings:
    retain_revisions: int = 10_000
    """Watch/compaction window, in revisions: older revisions are compacted away."""
    compact_interval: float = 30.0
    """Seconds between background compactions."""
    max_batch: int = 256
    """Largest number of writes committed in one transaction (group commit)."""
    max_object_bytes: int = 1_572_864
    """Largest accepted encoded object, in bytes (apiserver: 1.5 MiB)."""


@dataclass
class ApiSettings:
    bind_address: str = "127.0.0.1"
    """Address the API server listens on."""
    port: int = 16443
    """TCP port of the API server (MicroK8s' port)."""
    authorization: str = "RBAC"
    """Authorization mode: "RBAC" or "AlwaysAllow"."""


@dataclass
class NetworkSettings:
    pod_cidr: str = "10.1.0.0/16"
    """CIDR of the Podman network pods are attached to."""
    service_cidr: str = "10.152.183.0/24"
    """CIDR ClusterIPs are allocated from."""
    node_port_range: tuple[int, int] = (30000, 32767)
    """Inclusive NodePort range."""
    cluster_domain: str = "cluster.local"
    """DNS suffix of in-cluster names."""
    proxy: bool | None = None
    """Run the service proxy (nftables) and the cluster DNS.  ``None``: only when
    the kubelet runs real containers (runtime "podman"), so fake-runtime servers
    never touch the host's nftables or port 53."""
    localhost_nodeports: bool = True
    """NodePorts also answer on 127.0.0.1 (needs route_localnet on the pod bridge only)."""
    dns_address: str = ""
    """Address the cluster DNS listens on (UDP and TCP port 53); empty: the pod
    network's gateway, the first address of ``pod_cidr``, never 0.0.0.0."""


@dataclass
class RegistrySettings:
    enabled: bool = True
    """Serve the built-in OCI registry."""
    bind_address: str = "127.0.0.1"
    """Address of the registry."""
    port: int = 32000
    """TCP port of the registry."""
    quota_bytes: int = 0
    """Largest total blob size in bytes; 0 means unlimited."""
    tls: bool = False
    """Serve HTTPS with a certificate from the instance's CA (``pki/registry.crt``)."""
    username: str = ""
    """With ``password_file``: require HTTP basic authentication as this user."""
    password_file: str = ""
    """File whose first line is the password of ``username`` (kept off the command line)."""

    @property
    def host(self) -> str:
        """``host:port`` clients on this host push to: ``localhost:<port>`` unless bound to one address."""
        if self.bind_address in ("127.0.0.1", "0.0.0.0", "::", "::1", "localhost", ""):
            return f"localhost:{self.port}"
        if ":" in self.bind_address:
            return f"[{self.bind_address}]:{self.port}"
        return f"{self.bind_address}:{self.port}"


@dataclass
class KubeletSettings:
    runtime: str = "podman"
    """Container runtime: "podman", "fake" (simulated containers) or "none" (no node at all)."""
    podman_socket: str = ""
    """Use this Podman API socket instead of starting a private `podman system service`."""
    node_name: str = field(default_factory=lambda: socket.gethostname().split(".")[0].lower())
    """Name of the one Node object."""
    max_pods: int = 110
    """Node pod capacity."""


@dataclass
class Settings:
    state_dir: Path = field(default_factory=_default_state_dir)
    """Directory of the database, certificates, volumes and Podman configuration (mode 0700)."""
    instance: str = "microkube"
    """Prefix of every host resource this instance creates (pods, networks, chains)."""
    store: StoreSettings = field(default_factory=StoreSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    kubelet: KubeletSettings = field(default_factory=KubeletSettings)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"
