"""Cluster DNS records, computed from a :class:`~microkube.dns.cache.ClusterCache`.

Pure: no sockets and no dnslib, so every rule of the Kubernetes DNS spec
(kubernetes/dns ``docs/specification.md``, schema 1.1.0) is unit-tested on
plain values.  ``resolve`` answers ``None`` for names outside the cluster zone
and the cluster's reverse zones: the server forwards those upstream.

Names handled (``<zone>`` is the cluster domain)::

    <svc>.<ns>.svc.<zone>              A: ClusterIP; headless: ready endpoint IPs
                                       (no ready endpoint: NXDOMAIN, as CoreDNS)
                                       CNAME: ExternalName services
    <host>.<svc>.<ns>.svc.<zone>       A: headless endpoint by hostname or dashed IP
    _<port>._<proto>.<svc>.<ns>.svc.<zone>  SRV for named ports
    <a-b-c-d>.<ns>.pod.<zone>          A (CoreDNS "pods insecure")
    d.c.b.a.in-addr.arpa               PTR of ClusterIPs and headless endpoints
    dns-version.<zone>                 TXT "1.1.0"

A name that exists with no record of the asked type is NODATA (NOERROR and an
empty answer); a name that does not exist is NXDOMAIN.  Both carry the SOA in
the authority section so resolvers cache the negative answer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from microkube.dns.cache import ClusterCache, Endpoint

TTL = 5
"""Seconds clients may cache cluster records (short: pods come and go)."""
SCHEMA_VERSION = "1.1.0"


@dataclass(frozen=True)
class Record:
    name: str
    rtype: str
    """"A", "SRV", "PTR", "CNAME", "TXT", "SOA" or "NS"."""
    value: str | tuple[int | str, ...]
    """A/PTR/CNAME/TXT/NS: a string; SRV: (priority, weight, port, target); SOA: a tuple."""
    ttl: int = TTL


@dataclass
class Answer:
    rcode: str = "NOERROR"
    """"NOERROR" or "NXDOMAIN"."""
    answer: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)


class Resolver:
    """Answers questions about the cluster zone from a cache."""

    def __init__(
        self,
        cache: ClusterCache,
        *,
        domain: str = "cluster.local",
        reverse_cidrs: tuple[str, ...] = (),
    ) -> None:
        self.cache = cache
        self.zone = domain.strip(".").lower()
        self.reverse_nets = [ipaddress.ip_network(c, strict=False) for c in reverse_cidrs]

    def soa(self) -> Record:
        return Record(
            self.zone + ".",
            "SOA",
            (f"ns.dns.{self.zone}.", f"hostmaster.{self.zone}.", 1, 7200, 1800, 86400, TTL),
        )

    def resolve(self, qname: str, qtype: str) -> Answer | None:
        """The answer for ``qname``/``qtype``, or None when the name is not ours."""
        name = qname.rstrip(".").lower()
        if name.endswith(".in-addr.arpa"):
            return self._reverse(qname, name, qtype)
        if name != self.zone and not name.endswith("." + self.zone):
            return None
        labels = name[: -len(self.zone)].rstrip(".").split(".") if name != self.zone else []
        labels.reverse()
        records = self._lookup(qname, labels, qtype)
        if records is None:
            return Answer("NXDOMAIN", authority=[self.soa()])
        answer = [r for r in records if r.rtype in (qtype, "CNAME") or qtype == "ANY"]
        if not answer:
            return Answer("NOERROR", authority=[self.soa()])
        return Answer("NOERROR", answer=answer, additional=self._glue(answer))

    # --- forward lookups -----------------------------------------------------

    def _lookup(self, qname: str, labels: list[str], qtype: str) -> list[Record] | None:
        """All records owned by the name (None: the name does not exist)."""
        zone = self.zone
        if not labels:
            return [self.soa(), Record(qname, "NS", f"ns.dns.{zone}.")]
        if labels == ["dns-version"]:
            return [Record(qname, "TXT", SCHEMA_VERSION)]
        if labels[0] == "svc":
            return self._service_names(qname, labels[1:])
        if labels[0] == "pod":
            if len(labels) == 1:
                return []
            if len(labels) == 2:
                return [] if self.cache.has_namespace(labels[1]) else None
            if len(labels) == 3:
                ip = labels[2].replace("-", ".")
                try:
                    addr = ipaddress.IPv4Address(ip)
                except ValueError:
                    return None
                return [Record(qname, "A", str(addr))]
        return None

    def _service_names(self, qname: str, labels: list[str]) -> list[Record] | None:
        if not labels:
            return []
        ns = labels[0]
        if len(labels) == 1:
            return [] if self.cache.has_namespace(ns) else None
        svc = self.cache.services.get((ns, labels[1]))
        if svc is None:
            return None
        fqdn = f"{labels[1]}.{ns}.svc.{self.zone}."
        spec = svc.get("spec") or {}
        headless = spec.get("clusterIP") == "None"
        if spec.get("type") == "ExternalName":
            if len(labels) > 2:
                return None
            return [Record(qname, "CNAME", spec.get("externalName", "").rstrip(".") + ".")]
        eps = self.cache.ready_endpoints(ns, labels[1]) if headless else []
        if len(labels) == 2:
            if headless:
                if not eps:
                    return None
                recs = [Record(qname, "A", e.ip) for e in eps]
            else:
                recs = [Record(qname, "A", spec["clusterIP"])] if spec.get("clusterIP") else []
            for port in self._named_ports(svc):
                recs.extend(self._srv(qname, fqdn, eps if headless else None, port))
            return recs
        if len(labels) == 3:
            label = labels[2]
            if label.startswith("_"):
                protos = {p for _, p, _ in self._named_ports(svc)}
                return [] if label[1:] in protos else None
            for e in eps:
                if e.hostname.lower() == label or (not e.hostname and _dashed(e.ip) == label):
                    return [Record(qname, "A", e.ip)]
            return None
        if len(labels) == 4 and labels[2].startswith("_") and labels[3].startswith("_"):
            proto, pname = labels[2][1:], labels[3][1:]
            for port in self._named_ports(svc):
                if port[:2] == (pname, proto):
                    return self._srv(qname, fqdn, eps if headless else None, port)
        return None

    def _named_ports(self, svc: dict[str, object]) -> list[tuple[str, str, int]]:
        """(name, lower-case protocol, port) of the named ports of a service.

        Headless services also take the port names their endpoints carry.
        """
        spec = svc.get("spec") or {}
        m = svc.get("metadata") or {}
        assert isinstance(spec, dict) and isinstance(m, dict)
        out: list[tuple[str, str, int]] = []
        for p in spec.get("ports") or []:
            if p.get("name"):
                out.append((p["name"].lower(), p.get("protocol", "TCP").lower(), int(p["port"])))
        if spec.get("clusterIP") == "None":
            known = {(n, pr) for n, pr, _ in out}
            for e in self.cache.ready_endpoints(m.get("namespace", ""), m.get("name", "")):
                for name, port, proto in e.ports:
                    key = (name.lower(), proto.lower())
                    if name and key not in known:
                        known.add(key)
                        out.append((key[0], key[1], port))
        return out

    def _srv(
        self,
        qname: str,
        fqdn: str,
        eps: list[Endpoint] | None,
        port: tuple[str, str, int],
    ) -> list[Record]:
        """SRV records of one named port; ``eps`` is None for a ClusterIP service."""
        if eps is None:
            return [Record(qname, "SRV", (0, 100, port[2], fqdn))]
        # Headless: one SRV per ready endpoint, at that endpoint's port of the same name.
        found = []
        for e in eps:
            for name, eport, proto in e.ports:
                if name.lower() == port[0] and proto.lower() == port[1]:
                    found.append((eport, f"{e.hostname or _dashed(e.ip)}.{fqdn}"))
                    break
        weight = 100 // max(len(found), 1)
        return [Record(qname, "SRV", (0, weight, p, t)) for p, t in found]

    def _glue(self, answer: list[Record]) -> list[Record]:
        """A records of in-zone SRV targets (the additional section)."""
        extra: list[Record] = []
        for r in answer:
            if r.rtype != "SRV":
                continue
            target = str(r.value[3])
            got = self.resolve(target, "A")
            if got is not None:
                extra.extend(a for a in got.answer if a.rtype == "A" and a not in extra)
        return extra

    # --- reverse lookups -----------------------------------------------------

    def _reverse(self, qname: str, name: str, qtype: str) -> Answer | None:
        parts = name[: -len(".in-addr.arpa")].split(".")
        if len(parts) != 4:
            return None
        try:
            ip = str(ipaddress.IPv4Address(".".join(reversed(parts))))
        except ValueError:
            return None
        target = None
        if ip in self.cache.by_cluster_ip:
            ns, svc = self.cache.by_cluster_ip[ip]
            target = f"{svc}.{ns}.svc.{self.zone}."
        elif ip in self.cache.by_endpoint_ip:
            ns, svc, host = self.cache.by_endpoint_ip[ip]
            target = f"{host or _dashed(ip)}.{svc}.{ns}.svc.{self.zone}."
        if target is None:
            addr = ipaddress.IPv4Address(ip)
            if any(addr in net for net in self.reverse_nets):
                return Answer("NXDOMAIN", authority=[self.soa()])
            return None
        if qtype not in ("PTR", "ANY"):
            return Answer("NOERROR", authority=[self.soa()])
        return Answer("NOERROR", answer=[Record(qname, "PTR", target)])


def _dashed(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")
