"""Pure model building and ruleset rendering."""

from __future__ import annotations

from typing import Any

from microkube.netproxy import model, rules


def svc(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("clusterIP", "10.152.183.20")
    spec.setdefault("ports", [{"name": "http", "port": 80, "protocol": "TCP"}])
    return {"metadata": {"namespace": "default", "name": name}, "spec": spec}


def eslice(
    service: str,
    endpoints: list[dict[str, Any]],
    ports: list[dict[str, Any]] | None = None,
    name: str = "",
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "default",
            "name": name or f"{service}-x",
            "labels": {"kubernetes.io/service-name": service},
        },
        "ports": ports
        if ports is not None
        else [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def ep(
    ip: str, ready: bool = True, serving: bool | None = None, terminating: bool = False
) -> dict[str, Any]:
    return {
        "addresses": [ip],
        "conditions": {
            "ready": ready,
            "serving": ready if serving is None else serving,
            "terminating": terminating,
        },
    }


def test_model_backends_and_skips() -> None:
    ports = model.build(
        [
            svc("web"),
            svc("headless", clusterIP="None"),
            {
                "metadata": {"namespace": "default", "name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "x.org"},
            },
        ],
        [
            eslice("web", [ep("10.1.0.6"), ep("10.1.0.5"), ep("10.1.0.7", ready=False)]),
            eslice("headless", [ep("10.1.0.9")]),
        ],
    )
    (sp,) = ports
    assert sp.id == "default/web/tcp/http"
    assert [(b.ip, b.port) for b in sp.backends] == [("10.1.0.5", 8080), ("10.1.0.6", 8080)]
    assert sp.addresses == ("10.152.183.20",)


def test_model_terminating_fallback_and_port_matching() -> None:
    (sp,) = model.build(
        [svc("web")], [eslice("web", [ep("10.1.0.5", ready=False, serving=True, terminating=True)])]
    )
    assert [b.ip for b in sp.backends] == ["10.1.0.5"]
    # A slice whose port name differs does not feed the service port.
    (sp,) = model.build(
        [svc("web")], [eslice("web", [ep("10.1.0.5")], ports=[{"name": "other", "port": 1}])]
    )
    assert sp.backends == ()


def test_model_load_balancer_affinity_and_node_port() -> None:
    s = svc(
        "lb",
        type="LoadBalancer",
        externalIPs=["198.51.100.7"],
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}},
        ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
    )
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}]}}
    (sp,) = model.build([s], [])
    assert sp.addresses == ("10.152.183.20", "198.51.100.7", "192.0.2.2")
    assert sp.node_port == 30080 and sp.affinity_seconds == 30
    # ClusterIP type never gets a node port, default affinity timeout is 3 hours.
    (sp,) = model.build(
        [svc("c", sessionAffinity="ClientIP", ports=[{"port": 81, "nodePort": 30081}])], []
    )
    assert sp.node_port == 0 and sp.affinity_seconds == 10800 and sp.id == "default/c/tcp/81"


def test_render_first_load_recreates_table() -> None:
    cfg = rules.ProxyConfig("mk1")
    ports = model.build(
        [svc("web")], [eslice("web", [ep("10.1.0.5"), ep("10.1.0.6"), ep("10.1.0.7")])]
    )
    script, state = rules.render(cfg, ports, None)
    lines = script.splitlines()
    assert lines[:3] == ["add table ip mk1", "delete table ip mk1", "add table ip mk1"]
    assert any("numgen random mod 3 vmap { 0 : goto ep-" in line for line in lines)
    assert "add element ip mk1 service-ips { 10.152.183.20 . tcp . 80 : goto svc-" in script
    assert "dnat to 10.1.0.6:8080" in script
    assert len([c for c in state.chains if c.startswith("ep-")]) == 3
    # Every table reference is ours.
    assert all(" ip mk1 " in line or line.endswith(" ip mk1") for line in lines)


def test_render_no_endpoints_and_node_ports() -> None:
    s = svc(
        "np",
        type="NodePort",
        ports=[{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}],
    )
    script, state = rules.render(rules.ProxyConfig("t"), model.build([s], []), None)
    assert "add element ip t no-endpoint-services { 10.152.183.20 . udp . 53 }" in script
    assert "add element ip t no-endpoint-nodeports { udp . 30053 }" in script
    assert "meta l4proto tcp reject with tcp reset" in script
    assert state.chains == set()


def test_render_incremental_keeps_affinity_and_drops_stale() -> None:
    cfg = rules.ProxyConfig("t")
    sticky = svc(
        "s", sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}
    )
    two = model.build([sticky], [eslice("s", [ep("10.1.0.5"), ep("10.1.0.6")])])
    _, state = rules.render(cfg, two, None)
    assert len(state.sets) == 2
    assert all("timeout 60s" in spec for spec in state.sets.values())
    one = model.build([sticky], [eslice("s", [ep("10.1.0.6")])])
    script, state2 = rules.render(cfg, one, state)
    assert "delete table" not in script
    (gone,) = state.chains - state2.chains
    assert f"delete chain ip t {gone}" in script
    assert f"flush chain ip t {gone}" in script
    (gone_set,) = set(state.sets) - set(state2.sets)
    assert f"delete set ip t {gone_set}" in script
    # Affinity sets that remain are not flushed.
    (kept,) = state2.sets
    assert f"flush set ip t {kept}" not in script


def test_table_name() -> None:
    assert rules.table_name("microkube") == "microkube"
    assert rules.table_name("mk-12.3") == "mk_12_3"
    assert rules.table_name("1x") == "mk_1x"


def test_hairpin_enable_on_bridge_ports(tmp_path) -> None:
    from microkube.netproxy import hairpin

    for port, value in (("veth1", "0"), ("veth2", "1")):
        d = tmp_path / "br0" / "brif" / port
        d.mkdir(parents=True)
        (d / "hairpin_mode").write_text(value + "\n")
    assert hairpin.enable("br0", sys_net=tmp_path) == 1
    assert (tmp_path / "br0/brif/veth1/hairpin_mode").read_text().strip() == "1"
    assert hairpin.enable("missing", sys_net=tmp_path) == 0


def test_localnet_devices_ignore_default_route() -> None:
    from microkube.netproxy import localnet

    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "192.0.2.0/24", "dev": "eth0"},
        {"dst": "10.1.0.0/16", "dev": "podman3"},
        {"dst": "10.1.7.0/24", "dev": "extra"},
    ]
    assert localnet.devices_routing(("10.1.0.0/16",), routes) == {"podman3", "extra"}
    assert localnet.devices_routing(("10.9.0.0/16",), routes) == set()


def test_conntrack_filters_for_udp_only() -> None:
    from microkube.netproxy import conntrack

    def udp(name: str, **spec: Any) -> dict[str, Any]:
        return svc(
            name, ports=[{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}], **spec
        )

    def udp_slice(name: str, ips: list[str]) -> dict[str, Any]:
        return eslice(
            name, [ep(i) for i in ips], ports=[{"name": "dns", "port": 5353, "protocol": "UDP"}]
        )

    old = model.build(
        [udp("d", type="NodePort"), svc("t")],
        [udp_slice("d", ["10.1.0.5", "10.1.0.6"]), eslice("t", [ep("10.1.0.7")])],
    )
    new = model.build([udp("d", type="NodePort"), svc("t")], [udp_slice("d", ["10.1.0.6"])])
    assert conntrack.stale_filters(old, new) == [
        [
            "-p",
            "udp",
            "--orig-dst",
            "10.152.183.20",
            "--orig-port-dst",
            "53",
            "--reply-src",
            "10.1.0.5",
        ],
        ["-p", "udp", "--orig-port-dst", "30053", "--reply-src", "10.1.0.5"],
    ]
    # A UDP service getting its first endpoint forgets the rejected flows.
    empty = model.build([udp("d")], [])
    assert conntrack.stale_filters(
        empty, model.build([udp("d")], [udp_slice("d", ["10.1.0.6"])])
    ) == [["-p", "udp", "--orig-dst", "10.152.183.20", "--orig-port-dst", "53"]]
