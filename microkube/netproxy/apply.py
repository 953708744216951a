"""Loads generated rulesets into the kernel with ``nft -f`` (the only side effect).

Each load is one ``nft`` transaction, so a failed load leaves the previous
ruleset in place; the next load is then a full reload of the table.  Shutdown
and ``microkube reset`` delete the table, which removes every rule, set and
chain microkube made and nothing else.

``route_localnet``: NodePorts on 127.0.0.1 need
``net.ipv4.conf.all.route_localnet=1`` (the kernel otherwise refuses to route a
127.0.0.1-sourced packet DNATed to a pod), and so does a backend on 127/8 (pods
reaching an API server that listens on loopback only).  It is turned on only
when one of those exists; the previous value
is kept in ``<state_dir>/netproxy-route-localnet`` and restored on shutdown and
reset.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

from microkube.netproxy import rules
from microkube.netproxy.model import ServicePort

log = logging.getLogger(__name__)

ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")
_SAVED = "netproxy-route-localnet"


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

    def __init__(self, cfg: rules.ProxyConfig, *, state_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.state_dir = state_dir
        self._state: rules.State | None = None

    def sync(self, ports: list[ServicePort]) -> None:
        script, state = rules.render(self.cfg, ports, self._state)
        try:
            run_nft(script)
        except Exception:
            self._state = None  # unknown kernel state: reload everything next time
            raise
        self._state = state
        if self.state_dir is not None and needs_route_localnet(self.cfg, ports):
            enable_route_localnet(self.state_dir)

    def close(self) -> None:
        """Delete the table and restore route_localnet."""
        try:
            run_nft(rules.delete_script(self.cfg.table))
        finally:
            self._state = None
            if self.state_dir is not None:
                restore_route_localnet(self.state_dir)


def needs_route_localnet(cfg: rules.ProxyConfig, ports: list[ServicePort]) -> bool:
    """Localhost NodePorts, or a backend on 127/8 (the API server bound to loopback)."""
    if cfg.localhost_nodeports and any(sp.node_port for sp in ports):
        return True
    return any(b.ip.startswith("127.") for sp in ports for b in sp.backends)


def enable_route_localnet(state_dir: Path) -> None:
    saved = state_dir / _SAVED
    try:
        current = ROUTE_LOCALNET.read_text().strip()
        if current == "1":
            return
        if not saved.exists():
            saved.write_text(current + "\n")
        ROUTE_LOCALNET.write_text("1\n")
    except OSError as exc:
        log.warning("cannot enable route_localnet (127.0.0.1 NodePorts will not work): %s", exc)


def restore_route_localnet(state_dir: Path) -> None:
    saved = state_dir / _SAVED
    if not saved.exists():
        return
    try:
        ROUTE_LOCALNET.write_text(saved.read_text())
        saved.unlink()
    except OSError as exc:
        log.warning("cannot restore route_localnet: %s", exc)


def cleanup(settings: Any) -> None:
    """Remove everything the proxy of ``settings.instance`` put in the kernel."""
    if nft_available():
        run_nft(rules.delete_script(rules.table_name(settings.instance)))
    restore_route_localnet(Path(settings.state_dir))
