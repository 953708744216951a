"""Cluster DNS records per the Kubernetes DNS spec (pure resolver over a cache)."""

from __future__ import annotations

from microkube.dns.resolver import Resolver
from tests.dns.fixtures import ep, eslice, populated

Z = "cluster.local"


def r() -> Resolver:
    return Resolver(populated(), domain=Z, reverse_cidrs=("10.152.183.0/24", "10.1.0.0/16"))


def values(name: str, qtype: str) -> list[object]:
    a = r().resolve(name, qtype)
    assert a is not None and a.rcode == "NOERROR"
    return [x.value for x in a.answer]


def rcode(name: str, qtype: str = "A") -> str:
    a = r().resolve(name, qtype)
    assert a is not None
    return a.rcode


def test_cluster_ip_service() -> None:
    assert values("web.default.svc.cluster.local.", "A") == ["10.152.183.20"]
    # Case-insensitive, owner name echoes the question.
    a = r().resolve("WEB.Default.svc.cluster.local.", "A")
    assert a is not None and a.answer[0].name == "WEB.Default.svc.cluster.local."
    # NODATA for other types: NOERROR, empty answer, SOA in authority.
    a = r().resolve("web.default.svc.cluster.local.", "AAAA")
    assert (
        a is not None and a.rcode == "NOERROR" and a.answer == [] and a.authority[0].rtype == "SOA"
    )


def test_nxdomain() -> None:
    assert rcode("nope.default.svc.cluster.local.") == "NXDOMAIN"
    assert rcode("web.nope.svc.cluster.local.") == "NXDOMAIN"
    assert rcode("x.web.default.svc.cluster.local.") == "NXDOMAIN"
    assert rcode("random.cluster.local.") == "NXDOMAIN"
    # Empty non-terminals exist.
    assert rcode("default.svc.cluster.local.") == "NOERROR"
    assert rcode("empty.svc.cluster.local.") == "NOERROR"
    assert rcode("svc.cluster.local.") == "NOERROR"


def test_headless_service_ready_endpoints_only() -> None:
    assert values("db.default.svc.cluster.local.", "A") == ["10.1.0.7", "10.1.0.8"]
    # Headless without ready endpoints: NXDOMAIN (spec as amended by kubernetes/dns#245).
    assert rcode("empty-headless.default.svc.cluster.local.") == "NXDOMAIN"


def test_hostname_and_dashed_endpoint_records() -> None:
    assert values("db-0.db.default.svc.cluster.local.", "A") == ["10.1.0.7"]
    assert values("10-1-0-8.db.default.svc.cluster.local.", "A") == ["10.1.0.8"]
    assert rcode("10-1-0-9.db.default.svc.cluster.local.") == "NXDOMAIN"  # not ready


def test_srv_records() -> None:
    a = r().resolve("_http._tcp.web.default.svc.cluster.local.", "SRV")
    assert a is not None
    assert [x.value for x in a.answer] == [(0, 100, 80, "web.default.svc.cluster.local.")]
    assert [x.value for x in a.additional] == ["10.152.183.20"]
    assert values("_dns._udp.web.default.svc.cluster.local.", "SRV") == [
        (0, 100, 53, "web.default.svc.cluster.local.")
    ]
    assert rcode("_http._udp.web.default.svc.cluster.local.", "SRV") == "NXDOMAIN"
    # Headless: one SRV per ready endpoint, at the endpoint port, targets by hostname.
    assert values("_pg._tcp.db.default.svc.cluster.local.", "SRV") == [
        (0, 50, 15432, "db-0.db.default.svc.cluster.local."),
        (0, 50, 15432, "10-1-0-8.db.default.svc.cluster.local."),
    ]


def test_external_name_is_cname() -> None:
    a = r().resolve("ext.default.svc.cluster.local.", "A")
    assert a is not None and [(x.rtype, x.value) for x in a.answer] == [("CNAME", "example.org.")]


def test_pod_records() -> None:
    assert values("10-1-0-5.default.pod.cluster.local.", "A") == ["10.1.0.5"]
    assert rcode("10-1-0.default.pod.cluster.local.") == "NXDOMAIN"


def test_ptr_records() -> None:
    assert values("20.183.152.10.in-addr.arpa.", "PTR") == ["web.default.svc.cluster.local."]
    assert values("7.0.1.10.in-addr.arpa.", "PTR") == ["db-0.db.default.svc.cluster.local."]
    assert values("8.0.1.10.in-addr.arpa.", "PTR") == ["10-1-0-8.db.default.svc.cluster.local."]
    # Unknown address in a cluster range: authoritative NXDOMAIN; elsewhere: not ours.
    assert rcode("99.183.152.10.in-addr.arpa.", "PTR") == "NXDOMAIN"
    assert r().resolve("1.1.168.192.in-addr.arpa.", "PTR") is None


def test_outside_zone_is_forwarded_and_apex() -> None:
    assert r().resolve("example.org.", "A") is None
    assert r().resolve("cluster.local.org.", "A") is None
    assert values("cluster.local.", "SOA")[0][0] == "ns.dns.cluster.local."  # type: ignore[index]
    assert values("dns-version.cluster.local.", "TXT") == ["1.1.0"]


def test_cache_follows_updates_and_deletes() -> None:
    res = r()
    c = res.cache
    c.apply("EndpointSlice", "MODIFIED", eslice("default", "db", "db-abc", [ep("10.1.0.8")], []))
    assert [x.value for x in res.resolve("db.default.svc.cluster.local.", "A").answer] == [
        "10.1.0.8"
    ]  # type: ignore[union-attr]
    assert res.resolve("7.0.1.10.in-addr.arpa.", "PTR").rcode == "NXDOMAIN"  # type: ignore[union-attr]
    c.apply("Service", "DELETED", {"metadata": {"namespace": "default", "name": "web"}})
    assert res.resolve("web.default.svc.cluster.local.", "A").rcode == "NXDOMAIN"  # type: ignore[union-attr]
    assert res.resolve("20.183.152.10.in-addr.arpa.", "PTR").rcode == "NXDOMAIN"  # type: ignore[union-attr]


def test_cache_keys_per_kind() -> None:
    c = populated()
    assert ("default", "web") in c.keys("Service")
    assert c.keys("EndpointSlice") == {("default", "db-abc")}
    assert c.keys("Namespace") == {("", "default"), ("", "empty")}
