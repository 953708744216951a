"""Hairpin mode on the pod bridge's ports, so a pod can reach itself through a Service.

With ``br_netfilter`` loaded (Podman loads it), a frame from a pod to a
ClusterIP is DNATed while it is still being bridged; when the chosen endpoint
is the sending pod, the bridge would have to send the frame back out of the
port it came in on, which Linux bridges refuse unless the port is in hairpin
mode (kubelet's ``--hairpin-mode=hairpin-veth`` does the same).  The bridge is
found by its address, the pod network gateway; ports are switched on after
every ruleset load, which follows pods becoming endpoints.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

SYS_NET = Path("/sys/class/net")


def bridge_with_address(address: str) -> str | None:
    """The interface holding ``address`` (the pod network gateway), if any."""
    try:
        out = subprocess.run(
            ["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, timeout=5
        ).stdout
        links = json.loads(out or "[]")
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    for link in links:
        for a in link.get("addr_info") or []:
            if a.get("local") == address:
                return str(link.get("ifname"))
    return None


def enable(bridge: str, *, sys_net: Path = SYS_NET) -> int:
    """Turn hairpin mode on for every port of ``bridge``; returns how many changed."""
    changed = 0
    for port in sorted((sys_net / bridge / "brif").glob("*")):
        knob = port / "hairpin_mode"
        try:
            if knob.read_text().strip() != "1":
                knob.write_text("1\n")
                changed += 1
        except OSError as exc:
            log.debug("hairpin %s: %s", port.name, exc)
    return changed


def enable_for_gateway(gateway: str) -> int:
    bridge = bridge_with_address(gateway)
    return enable(bridge) if bridge else 0
