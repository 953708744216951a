"""From a Pod spec to runtime configs: sandbox (DNS, hosts, ports) and containers.

Mirrors ``kubelet_pods.go``:

* environment: service links (``<SVC>_SERVICE_HOST`` …; the ``kubernetes``
  service of ``default`` always, the pod's namespace when
  ``enableServiceLinks``), then ``envFrom``, then ``env`` in order with
  ``$(VAR)`` expansion over what came before; ``valueFrom`` supports
  ``configMapKeyRef``, ``secretKeyRef`` (``optional``), ``fieldRef`` and
  ``resourceFieldRef``.  A missing non-optional reference raises
  :class:`ConfigError`, shown as ``CreateContainerConfigError``;
* ``command``/``args`` expanded with that environment;
* ``securityContext`` (container over pod): runAsUser/Group, privileged,
  capabilities, readOnlyRootFilesystem; ``resources.limits`` → cgroup limits;
* DNS: ``ClusterFirst`` points at the cluster DNS Service IP (the 10th
  address of the service CIDR, MicroK8s' ``10.152.183.10``) with the usual
  search path and ``ndots:5``; ``Default`` inherits the host's resolv.conf;
  ``None`` uses only ``dnsConfig``.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from typing import Any

from microkube.kubelet import downward
from microkube.kubelet import runtime as rt
from microkube.objects import quantity

Obj = dict[str, Any]


class ConfigError(Exception):
    """The container cannot be configured (``CreateContainerConfigError``)."""


def _env_name(name: str) -> str:
    """Mirrors envvars.go ``makeEnvVariableName``: upper case, ``-`` → ``_``."""
    return re.sub(r"[^A-Z0-9_]", "_", name.upper().replace("-", "_"))


def _has_cluster_ip(svc: Obj) -> bool:
    """Mirrors ``IsServiceIPSet``: neither empty nor ``None`` (headless, ExternalName)."""
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None" and bool((svc.get("spec") or {}).get("ports"))


def service_vars(svc: Obj) -> dict[str, str]:
    """The Docker-link variables of one Service (mirrors envvars.go ``FromServices``).

    ``<SVC>_SERVICE_HOST``, ``<SVC>_SERVICE_PORT`` (first port) and
    ``<SVC>_SERVICE_PORT_<NAME>`` for each named port; then ``<SVC>_PORT``
    (first port) and, per port, ``<SVC>_PORT_<port>_<PROTO>`` with its
    ``_PROTO``, ``_PORT`` and ``_ADDR``.  IPv6 addresses are bracketed in URLs
    (``net.JoinHostPort``).
    """
    if not _has_cluster_ip(svc):
        return {}
    spec = svc["spec"]
    ip, ports = str(spec["clusterIP"]), spec["ports"]
    name = _env_name(svc["metadata"]["name"])
    host = f"[{ip}]" if ":" in ip else ip
    out = {f"{name}_SERVICE_HOST": ip, f"{name}_SERVICE_PORT": str(ports[0]["port"])}
    for p in ports:
        if p.get("name"):
            out[f"{name}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p["port"])
    for i, p in enumerate(ports):
        proto = str(p.get("protocol") or "TCP")
        url = f"{proto.lower()}://{host}:{p['port']}"
        if i == 0:
            out[f"{name}_PORT"] = url  # Docker special-cases the first port
        base = f"{name}_PORT_{p['port']}_{proto.upper()}"
        out[base] = url
        out[f"{base}_PROTO"] = proto.lower()
        out[f"{base}_PORT"] = str(p["port"])
        out[f"{base}_ADDR"] = ip
    return out


MASTER_SERVICES = ("kubernetes",)
"""Services of ``default`` every pod sees, even with ``enableServiceLinks: false``."""


def service_env(registry: Any, namespace: str, *, links: bool) -> dict[str, str]:
    """Mirrors kubelet_pods.go ``getServiceEnvVarMap``.

    The master services of ``default`` always; with ``links`` every Service of
    the pod's namespace with a ClusterIP, where a Service of the pod's own
    namespace wins over a master service of the same name.
    """
    svc_rt = registry.catalog.get("", "v1", "services")
    chosen: dict[str, Obj] = {}
    for name in MASTER_SERVICES:
        master = registry.try_get(svc_rt, "default", name)
        if master is not None and _has_cluster_ip(master):
            chosen[name] = master
    if links:
        for svc in registry.list(svc_rt, namespace).items:
            if _has_cluster_ip(svc):
                chosen[svc["metadata"]["name"]] = svc
    out: dict[str, str] = {}
    for svc in chosen.values():
        out.update(service_vars(svc))
    return out


def _object(registry: Any, plural: str, ns: str, name: str) -> Obj | None:
    result: Obj | None = registry.try_get(registry.catalog.get("", "v1", plural), ns, name)
    return result


def _data(obj: Obj, secret: bool) -> dict[str, str]:
    if secret:
        return {
            k: base64.b64decode(v).decode(errors="replace")
            for k, v in (obj.get("data") or {}).items()
        }
    return {k: str(v) for k, v in (obj.get("data") or {}).items()}


def build_env(pod: Obj, container: Obj, registry: Any, node: Obj | None) -> dict[str, str]:
    ns = pod["metadata"]["namespace"]
    spec = pod.get("spec") or {}
    env = service_env(registry, ns, links=spec.get("enableServiceLinks", True) is not False)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        ref, secret = (
            (src.get("configMapRef"), False)
            if "configMapRef" in src
            else (
                src.get("secretRef"),
                True,
            )
        )
        ref = ref or {}
        obj = _object(registry, "secrets" if secret else "configmaps", ns, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            raise ConfigError(
                f'{"secret" if secret else "configmap"} "{ref.get("name")}" not found'
            )
        for k, v in _data(obj, secret).items():
            env[prefix + k] = v
    for e in container.get("env") or []:
        name = e["name"]
        if "valueFrom" not in e or e.get("value") is not None:
            env[name] = downward.expand(str(e.get("value") or ""), env)
            continue
        vf = e["valueFrom"] or {}
        if "fieldRef" in vf:
            env[name] = downward.field_value(pod, vf["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in vf:
            env[name] = downward.resource_value(
                pod, vf["resourceFieldRef"], node, container.get("name", "")
            )
        elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
            secret = "secretKeyRef" in vf
            ref = vf["secretKeyRef" if secret else "configMapKeyRef"] or {}
            kind = "Secret" if secret else "ConfigMap"
            obj = _object(registry, "secrets" if secret else "configmaps", ns, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
            data = _data(obj, secret)
            if ref.get("key") not in data:
                if ref.get("optional"):
                    continue
                raise ConfigError(
                    f"couldn't find key {ref.get('key')} in {kind} {ns}/{ref.get('name')}"
                )
            env[name] = data[ref["key"]]
    return env


def container_config(
    pod: Obj,
    container: Obj,
    *,
    env: dict[str, str],
    mounts: list[rt.Mount],
    restart_count: int,
) -> rt.ContainerConfig:
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return csc.get(key, psc.get(key))

    caps = csc.get("capabilities") or {}
    limits = (container.get("resources") or {}).get("limits") or {}
    cpu = quantity.milli(limits["cpu"]) if "cpu" in limits else None
    mem = quantity.value(limits["memory"]) if "memory" in limits else None
    m = pod["metadata"]
    return rt.ContainerConfig(
        name=container["name"],
        image=container["image"],
        command=[downward.expand(str(a), env) for a in container.get("command") or []],
        args=[downward.expand(str(a), env) for a in container.get("args") or []],
        working_dir=container.get("workingDir") or "",
        env=env,
        mounts=mounts,
        tty=bool(container.get("tty")),
        stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        user=pick("runAsUser"),
        group=pick("runAsGroup"),
        privileged=bool(csc.get("privileged")),
        cap_add=list(caps.get("add") or []),
        cap_drop=list(caps.get("drop") or []),
        read_only_rootfs=bool(csc.get("readOnlyRootFilesystem")),
        cpu_limit_millis=cpu,
        memory_limit_bytes=mem,
        labels={
            rt.LABEL_POD_UID: m["uid"],
            rt.LABEL_NAMESPACE: m["namespace"],
            rt.LABEL_POD_NAME: m["name"],
        },
        restart_count=restart_count,
    )


def dns_service_ip(service_cidr: str) -> str:
    net = ipaddress.ip_network(service_cidr, strict=False)
    return str(net.network_address + 10)


def sandbox_config(
    pod: Obj, *, network: str, dns_ip: str, cluster_domain: str
) -> rt.PodSandboxConfig:
    m, spec = pod["metadata"], pod.get("spec") or {}
    ns = m["namespace"]
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if spec.get("hostNetwork") and policy == "ClusterFirst":
        policy = "Default"
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        servers = [dns_ip]
        searches = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
        options = ["ndots:5"]
    cfg = spec.get("dnsConfig") or {}
    servers += [s for s in cfg.get("nameservers") or [] if s not in servers]
    searches += [s for s in cfg.get("searches") or [] if s not in searches]
    for o in cfg.get("options") or []:
        opt = o["name"] + (f":{o['value']}" if o.get("value") else "")
        options = [x for x in options if x.split(":")[0] != o["name"]] + [opt]
    hostname = (spec.get("hostname") or m["name"])[:63]
    ports = [
        rt.PortMapping(
            container_port=int(p["containerPort"]),
            host_port=int(p["hostPort"]),
            protocol=p.get("protocol") or "TCP",
            host_ip=p.get("hostIP") or "",
        )
        for c in spec.get("containers") or []
        for p in c.get("ports") or []
        if p.get("hostPort")
    ]
    return rt.PodSandboxConfig(
        uid=m["uid"],
        namespace=ns,
        name=m["name"],
        hostname=hostname,
        network=network,
        dns_servers=servers,
        dns_searches=searches,
        dns_options=options,
        host_aliases=[
            rt.HostAlias(ip=a["ip"], hostnames=list(a.get("hostnames") or []))
            for a in spec.get("hostAliases") or []
        ],
        port_mappings=ports,
        host_network=bool(spec.get("hostNetwork")),
    )
