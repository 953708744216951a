"""``route_localnet`` on the pod network's interfaces only, never host-wide.

Two proxy paths move packets between 127.0.0.0/8 and pods, which Linux routes
only on interfaces with ``route_localnet=1``:

* a NodePort on 127.0.0.1: the host's packet (source 127.0.0.1) is DNATed to
  a pod and leaves through the pod bridge;
* a backend on 127.0.0.1 (the API server bound to loopback): the pod's packet
  arrives on the bridge and is DNATed to 127.0.0.1.

kube-proxy sets ``net.ipv4.conf.all.route_localnet``; we set it only on the
interfaces that route the pod CIDR (the instance's bridge, found from the
routing table, never the default route), so nothing host-wide changes and the
setting goes away with the bridge on ``microkube reset``.  The ruleset's input
guard drops non-DNATed packets to 127/8 arriving from outside anyway.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

PROC_CONF = Path("/proc/sys/net/ipv4/conf")


def devices_routing(cidrs: tuple[str, ...], routes: list[dict[str, object]]) -> set[str]:
    """Interfaces of the routes (from ``ip -j route``) that cover part of ``cidrs``.

    The default route never counts: before the bridge exists, the pod CIDR
    would otherwise resolve to the host's uplink.
    """
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    out = set()
    for r in routes:
        dst, dev = r.get("dst"), r.get("dev")
        if not isinstance(dst, str) or not isinstance(dev, str) or dst == "default":
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.prefixlen > 0 and any(net.overlaps(n) for n in nets):
            out.add(dev)
    return out


def enable(cidrs: tuple[str, ...], *, proc_conf: Path = PROC_CONF) -> set[str]:
    """Turn route_localnet on for the interfaces routing ``cidrs``; returns them."""
    try:
        raw = subprocess.run(
            ["ip", "-j", "-4", "route", "show", "table", "main"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout
        routes = json.loads(raw or "[]")
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("route_localnet: cannot read routes: %s", exc)
        return set()
    devices = devices_routing(cidrs, routes)
    for dev in sorted(devices):
        knob = proc_conf / dev / "route_localnet"
        try:
            if knob.read_text().strip() != "1":
                knob.write_text("1\n")
        except OSError as exc:
            log.warning("route_localnet on %s: %s", dev, exc)
    return devices
