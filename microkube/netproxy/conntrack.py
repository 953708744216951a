"""Forget UDP conntrack entries that point at endpoints which went away.

A UDP "connection" lives in conntrack for as long as packets keep flowing, so
a client that keeps sending to a ClusterIP would stay pinned to a deleted
endpoint (or to the reject path of a service that had none) forever.  Like
kube-proxy's conntrack cleanup, after each load we delete:

* entries whose original destination is a service address/NodePort and whose
  reply source is an endpoint that was removed;
* entries for a service that had no endpoints and now has some.

TCP needs nothing: a dead endpoint's connections fail and the client
reconnects through the new rules.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

from microkube.netproxy.model import ServicePort

log = logging.getLogger(__name__)


def stale_filters(old: list[ServicePort], new: list[ServicePort]) -> list[list[str]]:
    """``conntrack -D`` arguments removing entries that ``new`` no longer justifies."""
    now = {sp.id: sp for sp in new}
    out: list[list[str]] = []
    for sp in old:
        if sp.protocol != "udp":
            continue
        cur = now.get(sp.id)
        kept = {b.ip for b in cur.backends} if cur else set()
        for ip in sorted({b.ip for b in sp.backends} - kept):
            for addr in sp.addresses:
                out.append(
                    [
                        "-p",
                        "udp",
                        "--orig-dst",
                        addr,
                        "--orig-port-dst",
                        str(sp.port),
                        "--reply-src",
                        ip,
                    ]
                )
            if sp.node_port:
                out.append(["-p", "udp", "--orig-port-dst", str(sp.node_port), "--reply-src", ip])
    before = {sp.id: sp for sp in old}
    for sp in new:
        prev = before.get(sp.id)
        if sp.protocol == "udp" and sp.backends and prev is not None and not prev.backends:
            for addr in sp.addresses:
                out.append(["-p", "udp", "--orig-dst", addr, "--orig-port-dst", str(sp.port)])
    return out


def cleanup(old: list[ServicePort], new: list[ServicePort]) -> int:
    """Run the deletions; returns how many ``conntrack`` calls were made."""
    filters = stale_filters(old, new)
    if not filters or shutil.which("conntrack") is None:
        return 0
    for args in filters:
        # Exit status 1 only means "no entry matched".
        proc = subprocess.run(["conntrack", "-D", *args], capture_output=True, text=True, timeout=5)
        if proc.returncode not in (0, 1):
            log.debug("conntrack -D %s: %s", " ".join(args), proc.stderr.strip())
    return len(filters)
