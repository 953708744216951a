"""Pure generation of the service proxy's nftables ruleset.

Everything lives in one table, ``ip <instance>``, that microkube owns: no rule
outside it is ever read or changed, and two instances never share a table.
The script is applied by ``nft -f`` as one transaction, so packets see either
the old or the new ruleset, never a mix.  Layout (after kube-proxy's nftables
mode)::

    nat-prerouting / nat-output ─► services
        services:  ip daddr . l4proto . dport  vmap @service-ips     (ClusterIP, externalIPs, LB)
                   fib daddr type local  l4proto . dport  vmap @service-nodeports
        svc-…:     mark for masquerade; ClientIP affinity (ip saddr @aff-…  goto ep-…);
                   numgen random mod N vmap { i : goto ep-i }        (even load balancing)
        ep-…:      [update @aff-… { ip saddr }]  dnat to <pod ip>:<port>
    nat-postrouting:  marked ─► masquerade
    filter-input/forward/output:  new connection to a port with no endpoints
                   ─► reject (TCP reset; ICMP port unreachable otherwise)

All service traffic is masqueraded: pods share one Linux bridge and we do not
assume ``br_netfilter``, so without SNAT a pod→ClusterIP→pod reply would go
pod to pod on layer 2 and never be un-NATed.  Localhost NodePorts
(127.0.0.1:<nodePort>) additionally need ``route_localnet`` (see ``apply``);
the input chain then drops non-loopback packets to 127/8 that were not
DNATed, as kube-proxy does.

Updates are partial and keep affinity state: after the first load, only new
or changed chains are written and map/set elements are added or deleted one
by one; chains and sets that disappeared are deleted (:class:`State`
remembers what the last load declared).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from microkube.netproxy.model import ServicePort

MASQ_MARK = 0x4000

BASE_CHAINS = {
    "nat-prerouting": "type nat hook prerouting priority dstnat; policy accept;",
    "nat-output": "type nat hook output priority -100; policy accept;",
    "nat-postrouting": "type nat hook postrouting priority srcnat; policy accept;",
    "filter-input": "type filter hook input priority -1; policy accept;",
    "filter-forward": "type filter hook forward priority -1; policy accept;",
    "filter-output": "type filter hook output priority -1; policy accept;",
}
FIXED_CHAINS = ("services", "mark-for-masquerade", "reject-service")
MAPS = {
    "service-ips": "type ipv4_addr . inet_proto . inet_service : verdict;",
    "service-nodeports": "type inet_proto . inet_service : verdict;",
}
SETS = {
    "no-endpoint-services": "type ipv4_addr . inet_proto . inet_service;",
    "no-endpoint-nodeports": "type inet_proto . inet_service;",
}


def table_name(instance: str) -> str:
    """The nft table of an instance: its name with non-identifier characters replaced."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", instance) or "microkube"
    return name if name[0].isalpha() else f"mk_{name}"


@dataclass(frozen=True)
class ProxyConfig:
    table: str
    localhost_nodeports: bool = True
    """Also answer NodePorts on 127.0.0.1 (needs route_localnet)."""


@dataclass
class State:
    """What a loaded ruleset declared: the base of the next, incremental, load."""

    chains: set[str] = field(default_factory=set)
    """Names of the per-service and per-endpoint chains."""
    sets: dict[str, str] = field(default_factory=dict)
    """Affinity sets: name → definition."""
    rules: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Rules of each dynamic chain."""
    elements: dict[str, frozenset[str]] = field(default_factory=dict)
    """Elements of each fixed map and set (``key : verdict`` in maps)."""


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8].upper()


def svc_chain(sp: ServicePort) -> str:
    return f"svc-{_hash(sp.id)}-{sp.id}"


def ep_chain(sp: ServicePort, ip: str, port: int) -> str:
    return f"ep-{_hash(f'{sp.id}/{ip}/{port}')}-{sp.id}__{ip}/{port}"


def affinity_set(sp: ServicePort, ip: str, port: int) -> str:
    # The timeout is part of the name: a set's definition cannot change in place.
    return f"aff-{_hash(f'{sp.id}/{ip}/{port}/{sp.affinity_seconds}')}"


def _dynamic(ports: list[ServicePort]) -> State:
    """The per-service part of the ruleset: chains, affinity sets, map and set elements."""
    state = State()
    ips_elems: list[str] = []
    np_elems: list[str] = []
    noep_svc: list[str] = []
    noep_np: list[str] = []
    for sp in ports:
        if not sp.backends:
            noep_svc += [f"{a} . {sp.protocol} . {sp.port}" for a in sp.addresses]
            if sp.node_port:
                noep_np.append(f"{sp.protocol} . {sp.node_port}")
            continue
        sc = svc_chain(sp)
        ips_elems += [f"{a} . {sp.protocol} . {sp.port} : goto {sc}" for a in sp.addresses]
        if sp.node_port:
            np_elems.append(f"{sp.protocol} . {sp.node_port} : goto {sc}")
        rules = ["jump mark-for-masquerade"]
        eps = [(b, ep_chain(sp, b.ip, b.port)) for b in sp.backends]
        for b, ec in eps:
            erules = []
            if sp.affinity_seconds:
                aff = affinity_set(sp, b.ip, b.port)
                state.sets[aff] = (
                    f"type ipv4_addr; flags dynamic,timeout; timeout {sp.affinity_seconds}s;"
                )
                rules.append(f"ip saddr @{aff} goto {ec}")
                erules.append(f"update @{aff} {{ ip saddr }}")
            erules.append(f"meta l4proto {sp.protocol} dnat to {b.ip}:{b.port}")
            state.rules[ec] = tuple(erules)
        if len(eps) == 1:
            rules.append(f"goto {eps[0][1]}")
        else:
            vmap = ", ".join(f"{i} : goto {ec}" for i, (_, ec) in enumerate(eps))
            rules.append(f"numgen random mod {len(eps)} vmap {{ {vmap} }}")
        state.rules[sc] = tuple(rules)
    state.chains = set(state.rules)
    state.elements = {
        "service-ips": frozenset(ips_elems),
        "service-nodeports": frozenset(np_elems),
        "no-endpoint-services": frozenset(noep_svc),
        "no-endpoint-nodeports": frozenset(noep_np),
    }
    return state


def _static_rules(cfg: ProxyConfig) -> list[tuple[str, str]]:
    """The rules of the base and fixed chains: the same for every load."""
    mark = f"0x{MASQ_MARK:x}"
    out = [
        ("nat-prerouting", "jump services"),
        ("nat-output", "jump services"),
        (
            "nat-postrouting",
            f"meta mark & {mark} == {mark} meta mark set meta mark ^ {mark} masquerade fully-random",
        ),
        ("mark-for-masquerade", f"meta mark set meta mark | {mark}"),
        ("services", "ip daddr . meta l4proto . th dport vmap @service-ips"),
        ("services", "fib daddr type local meta l4proto . th dport vmap @service-nodeports"),
        ("reject-service", "meta l4proto tcp reject with tcp reset"),
        ("reject-service", "reject"),
    ]
    noep = (
        "ct state new ip daddr . meta l4proto . th dport @no-endpoint-services goto reject-service"
    )
    noep_local = (
        "ct state new fib daddr type local meta l4proto . th dport @no-endpoint-nodeports "
        "goto reject-service"
    )
    for chain in ("filter-input", "filter-forward", "filter-output"):
        out.append((chain, noep))
    out.append(("filter-input", noep_local))
    out.append(("filter-output", noep_local))
    # With route_localnet on, only DNATed traffic may reach 127/8 from outside (kube-proxy).
    # (``ct status != dnat`` would compare the whole bitmask: test the bit.)
    out.append(
        (
            "filter-input",
            'iifname != "lo" ip daddr 127.0.0.0/8 ct state != { established, related } '
            "ct status & dnat == 0 drop",
        )
    )
    return out


def _key(element: str) -> str:
    return element.split(" : ", 1)[0]


def render(cfg: ProxyConfig, ports: list[ServicePort], previous: State | None) -> tuple[str, State]:
    """The ``nft -f`` script turning the table into the one ``ports`` need.

    ``previous`` is the state returned by the last successful load, or None
    for a first load, which recreates the table from scratch.  Otherwise the
    script touches only what changed (as kube-proxy's nftables partial syncs):
    new chains are added, changed ones flushed and refilled, map and set
    elements added or deleted one by one, and chains and sets that
    disappeared deleted last, once nothing refers to them.  A Service change
    thus costs the kernel the same whatever the number of Services.
    """
    t = f"ip {cfg.table}"
    state = _dynamic(ports)
    out: list[str] = []

    def rules_of(chain: str, rules: tuple[str, ...]) -> None:
        out.extend(f"add rule {t} {chain} {r}" for r in rules)

    if previous is None:
        out += [f"add table {t}", f"delete table {t}", f"add table {t}"]
        for name, spec in BASE_CHAINS.items():
            out.append(f"add chain {t} {name} {{ {spec} }}")
        for name in FIXED_CHAINS:
            out.append(f"add chain {t} {name}")
        for name, spec in MAPS.items():
            out.append(f"add map {t} {name} {{ {spec} }}")
        for name, spec in SETS.items():
            out.append(f"add set {t} {name} {{ {spec} }}")
        for name, spec in sorted(state.sets.items()):
            out.append(f"add set {t} {name} {{ {spec} }}")
        for name in sorted(state.chains):
            out.append(f"add chain {t} {name}")
        for chain, rule in _static_rules(cfg):
            out.append(f"add rule {t} {chain} {rule}")
        for name in sorted(state.chains):
            rules_of(name, state.rules[name])
        for name, elems in state.elements.items():
            if elems:
                out.append(f"add element {t} {name} {{ {', '.join(sorted(elems))} }}")
        return "\n".join(out) + "\n", state

    for name, spec in sorted(state.sets.items()):
        if name not in previous.sets:
            out.append(f"add set {t} {name} {{ {spec} }}")
    for name in sorted(state.chains - previous.chains):
        out.append(f"add chain {t} {name}")
    for name in sorted(state.chains):
        old = previous.rules.get(name)
        if old == state.rules[name]:
            continue
        if old is not None:
            out.append(f"flush chain {t} {name}")
        rules_of(name, state.rules[name])
    for name, elems in state.elements.items():
        before = previous.elements.get(name, frozenset())
        gone = before - elems
        if gone:
            out.append(f"delete element {t} {name} {{ {', '.join(sorted(map(_key, gone)))} }}")
        new = elems - before
        if new:
            out.append(f"add element {t} {name} {{ {', '.join(sorted(new))} }}")
    stale_chains = sorted(previous.chains - state.chains)
    for name in stale_chains:
        out.append(f"flush chain {t} {name}")
    for name in stale_chains:
        out.append(f"delete chain {t} {name}")
    for name in sorted(set(previous.sets) - set(state.sets)):
        out.append(f"delete set {t} {name}")
    return "\n".join(out) + "\n", state


def delete_script(table: str) -> str:
    """Removes the table if it exists (``add`` first makes the delete never fail)."""
    return f"add table ip {table}\ndelete table ip {table}\n"
