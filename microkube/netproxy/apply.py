"""Loads generated rulesets into the kernel with ``nft -f`` (the only side effect).

Each load is one ``nft`` transaction, so a failed load leaves the previous
ruleset in place; the next load is then a full reload of the table.  Shutdown
and ``microkube reset`` delete the table, which removes every rule, set and
chain microkube made and nothing else.

``route_localnet`` is needed by localhost NodePorts and by backends on 127/8;
:mod:`.localnet` sets it on the pod network's interfaces only, when needed.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from typing import Any

from microkube.netproxy import localnet, rules
from microkube.netproxy.model import ServicePort

log = logging.getLogger(__name__)


class NftError(RuntimeError):
    """``nft`` rejected a ruleset (the message carries its stderr)."""


def nft_available() -> bool:
    return shutil.which("nft") is not None


def run_nft(script: str, *, timeout: float = 10.0) -> None:
    """Load ``script`` as one transaction."""
    proc = subprocess.run(
        ["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise NftError(proc.stderr.strip() or f"nft exited with {proc.returncode}")


class Applier:
    """Keeps the instance's table equal to the latest generated ruleset."""

    def __init__(self, cfg: rules.ProxyConfig, *, localnet_cidrs: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        #: Pod networks whose interfaces get route_localnet when needed.
        self.localnet_cidrs = localnet_cidrs
        self._state: rules.State | None = None

    def sync(self, ports: list[ServicePort]) -> None:
        script, state = rules.render(self.cfg, ports, self._state)
        try:
            run_nft(script)
        except Exception:
            self._state = None  # unknown kernel state: reload everything next time
            raise
        self._state = state
        self.refresh_host(ports)

    def refresh_host(self, ports: list[ServicePort]) -> None:
        """Re-apply the per-interface knobs (a pod bridge may appear after the last load)."""
        if self.localnet_cidrs and needs_route_localnet(self.cfg, ports):
            localnet.enable(self.localnet_cidrs)

    def close(self) -> None:
        """Delete the table."""
        self._state = None
        run_nft(rules.delete_script(self.cfg.table))


def needs_route_localnet(cfg: rules.ProxyConfig, ports: list[ServicePort]) -> bool:
    """Localhost NodePorts, or a backend on 127/8 (the API server bound to loopback)."""
    if cfg.localhost_nodeports and any(sp.node_port for sp in ports):
        return True
    return any(b.ip.startswith("127.") for sp in ports for b in sp.backends)


def cleanup(settings: Any) -> None:
    """Remove everything the proxy of ``settings.instance`` put in the kernel.

    (route_localnet was only set on the pod bridge, which the kubelet's cleanup removes.)
    """
    if nft_available():
        run_nft(rules.delete_script(rules.table_name(settings.instance)))
