"""Server-side Table printing (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``).

``kubectl get`` prints whatever the server puts in a ``meta.k8s.io/v1`` Table:
column definitions (priority 1 = only with ``-o wide``) and pre-formatted cells,
Age included. So the columns and cell formats here mirror upstream
``pkg/printers/internalversion/printers.go`` kind by kind; like the apiserver
(which always prints with ``Wide: true``), every row carries the cells of every
column and kubectl drops the priority-1 ones itself.

Custom resources use their CRD's ``additionalPrinterColumns`` (a JSONPath subset
is evaluated here); anything without a printer gets Name and Age.

``row.object`` carries a PartialObjectMetadata (``includeObject=Metadata``, the
default: kubectl needs it for ``-A`` and ``--show-labels``), the whole object
(``Object``, used by ``--sort-by``) or nothing (``None``). The caller sets the
Table's ``metadata`` (resourceVersion, continue).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from microkube.resources.types import ResourceType

Obj = dict[str, Any]
Cells = list[Any]
RowFn = Callable[[Obj, datetime], Cells]


# --- formatting helpers (mirror apimachinery duration / labels helpers) ----------------


def human_duration(seconds: float) -> str:
    """Mirrors apimachinery ``duration.HumanDuration``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def age(value: Any, now: datetime) -> str:
    """Mirrors ``translateTimestampSince``: ``<unknown>`` for a missing time."""
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def format_labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def format_selector(selector: Obj | None) -> str:
    """Mirrors ``metav1.FormatLabelSelector`` (requirements sorted by key)."""
    if not selector:
        return "<none>"
    reqs: list[tuple[str, str]] = []
    for k, v in (selector.get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key", ""), e.get("operator", ""), e.get("values") or []
        vals = ",".join(sorted(values))
        text = {
            "In": f"{key} in ({vals})",
            "NotIn": f"{key} notin ({vals})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(op, "<error>")
        reqs.append((key, text))
    out = ",".join(t for _, t in sorted(reqs, key=lambda r: r[0]))
    return out or "<none>"


def _containers(template_spec: Obj | None) -> tuple[str, str]:
    cs = (template_spec or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for p in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(p)
    return default if obj is None else obj


def _bool_ptr(value: Any) -> str:
    return "<unset>" if value is None else ("True" if value else "False")


def _col(
    name: str, typ: str = "string", desc: str = "", *, fmt: str = "", priority: int = 0
) -> Obj:
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


_NAME_DESC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_AGE_DESC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. "
    "It is not guaranteed to be set in happens-before order across separate operations. Clients "
    "may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the "
    "system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
NAME = _col("Name", fmt="name", desc=_NAME_DESC)
AGE = _col("Age", desc=_AGE_DESC)
CREATED_AT = _col("Created At", "date", _AGE_DESC)
_TEMPLATE_WIDE = [
    _col("Containers", desc="Names of each container in the template.", priority=1),
    _col("Images", desc="Images referenced by each container in the template.", priority=1),
]
SELECTOR_WIDE = _col("Selector", desc="Label selector.", priority=1)


# --- pods ------------------------------------------------------------------------------


def _restartable(container: Obj | None) -> bool:
    return bool(container) and container.get("restartPolicy") == "Always"  # type: ignore[union-attr]


def _pod_row(pod: Obj, now: datetime) -> Cells:
    """Mirrors upstream ``printPod``."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    restarts = restartable_restarts = 0
    total = len(spec.get("containers") or [])
    ready = 0
    last_restart: datetime | None = None
    last_restartable: datetime | None = None
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    conditions = status.get("conditions") or []
    for c in conditions:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total += sum(1 for c in init_specs.values() if _restartable(c))

    def later(a: datetime | None, finished: Any) -> datetime | None:
        t = parse_time(finished)
        return t if t and (a is None or t > a) else a

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += int(cs.get("restartCount") or 0)
        last_term = _get(cs, "lastState", "terminated")
        if last_term:
            last_restart = later(last_restart, last_term.get("finishedAt"))
        is_restartable = _restartable(init_specs.get(cs.get("name")))
        if is_restartable:
            restartable_restarts += int(cs.get("restartCount") or 0)
            if last_term:
                last_restartable = later(last_restartable, last_term.get("finishedAt"))
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term and term.get("exitCode", 0) == 0:
            continue
        if is_restartable and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if term:
            if not term.get("reason"):
                if term.get("signal"):
                    reason = f"Init:Signal:{term['signal']}"
                else:
                    reason = f"Init:ExitCode:{term.get('exitCode', 0)}"
            else:
                reason = "Init:" + term["reason"]
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break

    initialized = any(
        c.get("type") == "Initialized" and c.get("status") == "True" for c in conditions
    )
    if not initializing or initialized:
        restarts, last_restart = restartable_restarts, last_restartable
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            last_term = _get(cs, "lastState", "terminated")
            if last_term:
                last_restart = later(last_restart, last_term.get("finishedAt"))
            state = cs.get("state") or {}
            waiting, term = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                if term.get("signal"):
                    reason = f"Signal:{term['signal']}"
                else:
                    reason = f"ExitCode:{term.get('exitCode', 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
            )
            reason = "Running" if pod_ready else "NotReady"

    deleting = _get(pod, "metadata", "deletionTimestamp")
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_str = str(restarts)
    if restarts and last_restart is not None:
        restarts_str = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"

    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0].get("ip") if pod_ips else status.get("podIP")) or "<none>"
    gates = spec.get("readinessGates") or []
    gates_str = "<none>"
    if gates:
        by_type = {c.get("type"): c.get("status") for c in conditions}
        true_count = sum(1 for g in gates if by_type.get(g.get("conditionType")) == "True")
        gates_str = f"{true_count}/{len(gates)}"
    return [
        _get(pod, "metadata", "name", default=""),
        f"{ready}/{total}",
        reason,
        restarts_str,
        age(_get(pod, "metadata", "creationTimestamp"), now),
        pod_ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_str,
    ]


POD_COLUMNS = [
    NAME,
    _col("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", desc="The aggregate status of the containers in this pod."),
    _col(
        "Restarts",
        desc="The number of times the containers in this pod have been restarted and when the "
        "last container in this pod has restarted.",
    ),
    AGE,
    _col("IP", priority=1, desc="IP address allocated to the pod."),
    _col("Node", priority=1, desc="NodeName of the node the pod is bound to."),
    _col("Nominated Node", priority=1, desc="nominatedNodeName of the pod."),
    _col("Readiness Gates", priority=1, desc="Readiness gates of the pod."),
]


# --- workloads -------------------------------------------------------------------------


def _name(o: Obj) -> str:
    return str(_get(o, "metadata", "name", default=""))


def _created(o: Obj, now: datetime) -> str:
    return age(_get(o, "metadata", "creationTimestamp"), now)


def _template_cells(o: Obj, *path: str) -> list[str]:
    return list(_containers(_get(o, *path)))


def _deployment_row(o: Obj, now: datetime) -> Cells:
    st = o.get("status") or {}
    desired = _get(o, "spec", "replicas", default=0)
    return [
        _name(o),
        f"{st.get('readyReplicas', 0)}/{desired}",
        int(st.get("updatedReplicas", 0)),
        int(st.get("availableReplicas", 0)),
        _created(o, now),
        *_template_cells(o, "spec", "template", "spec"),
        format_selector(_get(o, "spec", "selector")),
    ]


def _replicaset_row(o: Obj, now: datetime) -> Cells:
    st = o.get("status") or {}
    return [
        _name(o),
        int(_get(o, "spec", "replicas", default=0)),
        int(st.get("replicas", 0)),
        int(st.get("readyReplicas", 0)),
        _created(o, now),
        *_template_cells(o, "spec", "template", "spec"),
        format_selector(_get(o, "spec", "selector")),
    ]


def _rc_row(o: Obj, now: datetime) -> Cells:
    row = _replicaset_row(o, now)
    row[-1] = format_labels(_get(o, "spec", "selector"))
    return row


def _statefulset_row(o: Obj, now: datetime) -> Cells:
    ready = _get(o, "status", "readyReplicas", default=0)
    desired = _get(o, "spec", "replicas", default=0)
    return [
        _name(o),
        f"{ready}/{desired}",
        _created(o, now),
        *_template_cells(o, "spec", "template", "spec"),
    ]


def _daemonset_row(o: Obj, now: datetime) -> Cells:
    st = o.get("status") or {}
    return [
        _name(o),
        int(st.get("desiredNumberScheduled", 0)),
        int(st.get("currentNumberScheduled", 0)),
        int(st.get("numberReady", 0)),
        int(st.get("updatedNumberScheduled", 0)),
        int(st.get("numberAvailable", 0)),
        format_labels(_get(o, "spec", "template", "spec", "nodeSelector")),
        _created(o, now),
        *_template_cells(o, "spec", "template", "spec"),
        format_selector(_get(o, "spec", "selector")),
    ]


def _has_condition(o: Obj, ctype: str) -> bool:
    for c in _get(o, "status", "conditions", default=[]):
        if c.get("type") == ctype:
            return bool(c.get("status") == "True")
    return False


def _job_row(o: Obj, now: datetime) -> Cells:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    succeeded = st.get("succeeded", 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif (spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_time(st.get("startTime")), parse_time(st.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration(((end or now) - start).total_seconds())
    if _has_condition(o, "Complete"):
        status = "Complete"
    elif _has_condition(o, "Failed"):
        status = "Failed"
    elif _get(o, "metadata", "deletionTimestamp"):
        status = "Terminating"
    elif _has_condition(o, "Suspended"):
        status = "Suspended"
    elif _has_condition(o, "FailureTarget"):
        status = "FailureTarget"
    else:
        status = "Running"
    return [
        _name(o),
        status,
        completions,
        duration,
        _created(o, now),
        *_template_cells(o, "spec", "template", "spec"),
        format_selector(spec.get("selector")),
    ]


def _cronjob_row(o: Obj, now: datetime) -> Cells:
    spec = o.get("spec") or {}
    last = _get(o, "status", "lastScheduleTime")
    return [
        _name(o),
        spec.get("schedule", ""),
        spec.get("timeZone") or "<none>",
        _bool_ptr(spec.get("suspend")),
        len(_get(o, "status", "active", default=[])),
        age(last, now) if last else "<none>",
        _created(o, now),
        *_template_cells(o, "spec", "jobTemplate", "spec", "template", "spec"),
        format_selector(_get(o, "spec", "jobTemplate", "spec", "selector")),
    ]


def _controllerrevision_row(o: Obj, now: datetime) -> Cells:
    controller = "<none>"
    for ref in _get(o, "metadata", "ownerReferences", default=[]):
        if ref.get("controller"):
            group = ref.get("apiVersion", "").rpartition("/")[0]
            kind = ref.get("kind", "").lower() + (f".{group}" if group else "")
            controller = f"{kind}/{ref.get('name', '')}"
    return [_name(o), controller, int(o.get("revision", 0)), _created(o, now)]


# --- networking ------------------------------------------------------------------------


def _lb_ingress(status: Obj | None) -> str:
    ips = sorted(
        {i.get("ip") or i.get("hostname") for i in _get(status, "ingress", default=[])} - {None, ""}
    )
    return ",".join(ips)


def _service_external_ip(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    typ = spec.get("type", "ClusterIP")
    external = spec.get("externalIPs") or []
    if typ in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if typ == "LoadBalancer":
        lb = _lb_ingress(_get(svc, "status", "loadBalancer"))
        if external:
            return ",".join([*(lb.split(",") if lb else []), *external])
        return lb or "<pending>"
    if typ == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def service_ports(ports: list[Obj]) -> str:
    pieces = []
    for p in ports:
        proto = p.get("protocol", "TCP")
        if p.get("nodePort"):
            pieces.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            pieces.append(f"{p.get('port')}/{proto}")
    return ",".join(pieces)


def _service_row(o: Obj, now: datetime) -> Cells:
    spec = o.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [
        _name(o),
        spec.get("type", "ClusterIP"),
        ips[0] if ips else "<none>",
        _service_external_ip(o),
        service_ports(spec.get("ports") or []) or "<none>",
        _created(o, now),
        format_labels(spec.get("selector")),
    ]


def _more(items: list[str], count: int, limit: int = 3, empty: str = "<none>") -> str:
    shown = ",".join(items[:limit])
    if count > limit:
        return f"{shown} + {count - limit} more..."
    return shown or empty


def _endpoints_row(o: Obj, now: datetime) -> Cells:
    subsets = o.get("subsets") or []
    items: list[str] = []
    count = 0
    for ss in subsets:
        addrs = [a.get("ip", "") for a in ss.get("addresses") or []]
        ports = ss.get("ports") or []
        if not ports:
            count += len(addrs)
            items.extend(addrs)
            continue
        for port in ports:
            count += len(addrs)
            for ip in addrs:
                host = f"[{ip}]" if ":" in ip else ip
                items.append(f"{host}:{port.get('port')}")
    return [_name(o), _more(items, count) if subsets else "<none>", _created(o, now)]


def _endpointslice_row(o: Obj, now: datetime) -> Cells:
    ports = o.get("ports") or []
    port_items = [
        str(p["port"]) if p.get("port") is not None else (p.get("name") or "*") for p in ports
    ]
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    return [
        _name(o),
        o.get("addressType", ""),
        _more(port_items, len(port_items), empty="<unset>"),
        _more(addrs, len(addrs), empty="<unset>"),
        _created(o, now),
    ]


def _ingress_row(o: Obj, now: datetime) -> Cells:
    spec = o.get("spec") or {}
    rules = spec.get("rules") or []
    hosts = [r["host"] for r in rules if r.get("host")]
    if not hosts:
        host_str = "*"
    elif len(hosts) > 3:
        host_str = ",".join(hosts[:3]) + f" + {len(rules) - 3} more..."
    else:
        host_str = ",".join(hosts)
    return [
        _name(o),
        spec.get("ingressClassName") or "<none>",
        host_str,
        _lb_ingress(_get(o, "status", "loadBalancer")),
        "80, 443" if spec.get("tls") else "80",
        _created(o, now),
    ]


def _ingressclass_row(o: Obj, now: datetime) -> Cells:
    params = _get(o, "spec", "parameters")
    text = "<none>"
    if params:
        text = params.get("kind", "")
        if params.get("apiGroup"):
            text += "." + params["apiGroup"]
        text += "/" + params.get("name", "")
    return [_name(o), _get(o, "spec", "controller", default=""), text, _created(o, now)]


def _networkpolicy_row(o: Obj, now: datetime) -> Cells:
    return [_name(o), format_selector(_get(o, "spec", "podSelector")), _created(o, now)]


# --- cluster / config ------------------------------------------------------------------


def _namespace_row(o: Obj, now: datetime) -> Cells:
    return [_name(o), _get(o, "status", "phase", default=""), _created(o, now)]


def _node_row(o: Obj, now: datetime) -> Cells:
    conds = {c.get("type"): c for c in _get(o, "status", "conditions", default=[])}
    status: list[str] = []
    if "Ready" in conds:
        status.append("Ready" if conds["Ready"].get("status") == "True" else "NotReady")
    if not status:
        status.append("Unknown")
    if _get(o, "spec", "unschedulable"):
        status.append("SchedulingDisabled")
    roles = set()
    for k, v in (_get(o, "metadata", "labels", default={})).items():
        if k.startswith("node-role.kubernetes.io/") and k[len("node-role.kubernetes.io/") :]:
            roles.add(k[len("node-role.kubernetes.io/") :])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = _get(o, "status", "nodeInfo", default={})
    addresses = _get(o, "status", "addresses", default=[])

    def addr(kind: str) -> str:
        return next((a.get("address", "") for a in addresses if a.get("type") == kind), "<none>")

    return [
        _name(o),
        ",".join(status),
        ",".join(sorted(roles)) or "<none>",
        _created(o, now),
        info.get("kubeletVersion", ""),
        addr("InternalIP"),
        addr("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _as_core_event(o: Obj) -> Obj:
    """events.k8s.io/v1 → the core/v1 field names the event printer reads."""
    if o.get("apiVersion") != "events.k8s.io/v1":
        return o
    return {
        "metadata": o.get("metadata") or {},
        "involvedObject": o.get("regarding") or {},
        "reason": o.get("reason", ""),
        "message": o.get("note", ""),
        "type": o.get("type", ""),
        "firstTimestamp": o.get("deprecatedFirstTimestamp"),
        "lastTimestamp": o.get("deprecatedLastTimestamp"),
        "count": o.get("deprecatedCount", 0),
        "source": o.get("deprecatedSource") or {},
        "eventTime": o.get("eventTime"),
        "series": o.get("series"),
        "reportingComponent": o.get("reportingController", ""),
        "reportingInstance": o.get("reportingInstance", ""),
    }


def _event_row(o: Obj, now: datetime) -> Cells:
    e = _as_core_event(o)
    first = (
        age(e.get("firstTimestamp"), now)
        if e.get("firstTimestamp")
        else age(e.get("eventTime"), now)
    )
    last = age(e.get("lastTimestamp"), now) if e.get("lastTimestamp") else first
    count = e.get("count") or 0
    if e.get("series"):
        last = age(e["series"].get("lastObservedTime"), now)
        count = e["series"].get("count", 0)
    elif not count:
        count = 1
    inv = e.get("involvedObject") or {}
    kind = str(inv.get("kind", "")).lower()
    target = f"{kind}/{inv['name']}" if inv.get("name") else kind
    source = e.get("source") or {}
    component = source.get("component") or e.get("reportingComponent", "")
    host = source.get("host") if source.get("component") else e.get("reportingInstance", "")
    source_str = f"{component}, {host}" if host else component
    return [
        last,
        e.get("type", ""),
        e.get("reason", ""),
        target,
        inv.get("fieldPath", ""),
        source_str,
        str(e.get("message", "")).strip(),
        first,
        int(count),
        _name(e),
    ]


def _configmap_row(o: Obj, now: datetime) -> Cells:
    return [_name(o), len(o.get("data") or {}) + len(o.get("binaryData") or {}), _created(o, now)]


def _secret_row(o: Obj, now: datetime) -> Cells:
    return [_name(o), o.get("type", "Opaque"), len(o.get("data") or {}), _created(o, now)]


def _serviceaccount_row(o: Obj, now: datetime) -> Cells:
    return [_name(o), len(o.get("secrets") or []), _created(o, now)]


def _lease_row(o: Obj, now: datetime) -> Cells:
    return [_name(o), _get(o, "spec", "holderIdentity", default=""), _created(o, now)]


def _webhookconfiguration_row(o: Obj, now: datetime) -> Cells:
    return [_name(o), len(o.get("webhooks") or []), _created(o, now)]


_WEBHOOK_COLS = [
    NAME,
    _col("Webhooks", "integer", "Webhooks indicates the number of webhooks."),
    AGE,
]


def _created_at(o: Obj) -> str:
    t = parse_time(_get(o, "metadata", "creationTimestamp"))
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else ""


def _role_row(o: Obj, now: datetime) -> Cells:
    return [_name(o), _created_at(o)]


def _binding_row(o: Obj, now: datetime) -> Cells:
    ref = o.get("roleRef") or {}
    users, groups, sas = [], [], []
    for s in o.get("subjects") or []:
        if s.get("kind") == "User":
            users.append(s.get("name", ""))
        elif s.get("kind") == "Group":
            groups.append(s.get("name", ""))
        elif s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}:{s.get('name', '')}")
    return [
        _name(o),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _created(o, now),
        ", ".join(users),
        ", ".join(groups),
        ", ".join(sas),
    ]


def _priorityclass_row(o: Obj, now: datetime) -> Cells:
    return [
        _name(o),
        int(o.get("value", 0)),
        bool(o.get("globalDefault", False)),
        _created(o, now),
        o.get("preemptionPolicy") or "PreemptLowerPriority",
    ]


def _resourcequota_row(o: Obj, now: datetime) -> Cells:
    hard = _get(o, "status", "hard", default={}) or _get(o, "spec", "hard", default={})
    used = _get(o, "status", "used", default={})
    requests: list[str] = []
    limits: list[str] = []
    for k in sorted(hard):
        text = f"{k}: {used.get(k, '0')}/{hard[k]}"
        (limits if k.startswith("limits.") else requests).append(text)
    return [_name(o), _created(o, now), ", ".join(requests), ", ".join(limits)]


def _pdb_row(o: Obj, now: datetime) -> Cells:
    spec = o.get("spec") or {}
    min_a = spec.get("minAvailable")
    max_u = spec.get("maxUnavailable")
    return [
        _name(o),
        "N/A" if min_a is None else str(min_a),
        "N/A" if max_u is None else str(max_u),
        int(_get(o, "status", "disruptionsAllowed", default=0)),
        _created(o, now),
    ]


def _hpa_targets(o: Obj) -> str:
    specs = _get(o, "spec", "metrics", default=[])
    current = _get(o, "status", "currentMetrics", default=[])
    if not specs:
        return "<none>"
    parts = []
    for i, m in enumerate(specs):
        kind = m.get("type", "")
        key = {"Resource": "resource", "ContainerResource": "containerResource"}.get(kind)
        if key:
            target = _get(m, key, "target", default={})
            cur = current[i] if i < len(current) else {}
            cur_t = _get(cur, key, "current", default={})
            name = _get(m, key, "name", default="")
            if target.get("averageUtilization") is not None:
                got = cur_t.get("averageUtilization")
                got_s = f"{got}%" if got is not None else "<unknown>"
                parts.append(f"{name}: {got_s}/{target['averageUtilization']}%")
            else:
                want = target.get("averageValue", target.get("value", ""))
                got = cur_t.get("averageValue", cur_t.get("value"))
                parts.append(f"{name}: {got if got is not None else '<unknown>'}/{want}")
        else:
            parts.append("<unknown>/<unknown>")
    if len(parts) > 2:
        return ", ".join(parts[:2]) + f" + {len(parts) - 2} more..."
    return ", ".join(parts)


def _hpa_row(o: Obj, now: datetime) -> Cells:
    if o.get("apiVersion") == "autoscaling/v1":
        from microkube.resources.kinds import autoscaling

        o = autoscaling.convert(o, "autoscaling/v2")  # the same columns for both versions
    ref = _get(o, "spec", "scaleTargetRef", default={})
    return [
        _name(o),
        f"{ref.get('kind', '')}/{ref.get('name', '')}",
        _hpa_targets(o),
        str(_get(o, "spec", "minReplicas", default="<unset>")),
        int(_get(o, "spec", "maxReplicas", default=0)),
        int(_get(o, "status", "currentReplicas", default=0)),
        _created(o, now),
    ]


# --- metrics.k8s.io (metrics-server's addNodeMetricsToTable/addPodMetricsToTable) -------


def _metrics_row(o: Obj, now: datetime) -> Cells:
    from microkube.objects import quantity

    usages = (
        [o.get("usage") or {}]
        if "usage" in o
        else [c.get("usage") or {} for c in o.get("containers") or []]
    )
    cpu = sum(quantity.parse(u.get("cpu", 0)) for u in usages)
    memory = sum(quantity.parse(u.get("memory", 0)) for u in usages)
    return [
        _name(o),
        quantity.format_decimal(int(cpu * 10**9), -9),
        quantity.format_binary(int(memory)),
        o.get("window", ""),
    ]


_METRICS_COLS = [
    NAME,
    _col("cpu", fmt="quantity"),
    _col("memory", fmt="quantity"),
    _col("Window", fmt="duration"),
]


# --- storage ---------------------------------------------------------------------------

_ACCESS = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def _modes(modes: list[str] | None) -> str:
    return ",".join(_ACCESS.get(m, m) for m in modes or [])


def _storage_class_of(o: Obj) -> str:
    ann = _get(o, "metadata", "annotations", default={})
    return str(
        ann.get("volume.beta.kubernetes.io/storage-class")
        or _get(o, "spec", "storageClassName", default="")
    )


def _pv_row(o: Obj, now: datetime) -> Cells:
    spec = o.get("spec") or {}
    claim = spec.get("claimRef")
    return [
        _name(o),
        _get(spec, "capacity", "storage", default=""),
        _modes(spec.get("accessModes")),
        spec.get("persistentVolumeReclaimPolicy", ""),
        _get(o, "status", "phase", default=""),
        f"{claim.get('namespace', '')}/{claim.get('name', '')}" if claim else "",
        _storage_class_of(o),
        spec.get("volumeAttributesClassName") or "<unset>",
        _get(o, "status", "reason", default=""),
        _created(o, now),
        spec.get("volumeMode") or "<unset>",
    ]


def _pvc_row(o: Obj, now: datetime) -> Cells:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    bound = bool(spec.get("volumeName"))
    return [
        _name(o),
        "Terminating" if _get(o, "metadata", "deletionTimestamp") else st.get("phase", ""),
        spec.get("volumeName", ""),
        _get(st, "capacity", "storage", default="") if bound else "",
        _modes(st.get("accessModes")) if bound else "",
        _storage_class_of(o),
        st.get("currentVolumeAttributesClassName") or "<unset>",
        _created(o, now),
        spec.get("volumeMode") or "<unset>",
    ]


def _storageclass_row(o: Obj, now: datetime) -> Cells:
    ann = _get(o, "metadata", "annotations", default={})
    name = _name(o)
    if "true" in (
        ann.get("storageclass.kubernetes.io/is-default-class"),
        ann.get("storageclass.beta.kubernetes.io/is-default-class"),
    ):
        name += " (default)"
    return [
        name,
        o.get("provisioner", ""),
        o.get("reclaimPolicy") or "Delete",
        o.get("volumeBindingMode") or "Immediate",
        bool(o.get("allowVolumeExpansion", False)),
        _created(o, now),
    ]


def _podtemplate_row(o: Obj, now: datetime) -> Cells:
    names, images = _containers(_get(o, "template", "spec"))
    return [_name(o), names, images, format_labels(_get(o, "template", "metadata", "labels"))]


def _default_row(o: Obj, now: datetime) -> Cells:
    return [_name(o), _created(o, now)]


# --- registry --------------------------------------------------------------------------


def _c(name: str, typ: str = "string", desc: str = "", priority: int = 0) -> Obj:
    return _col(name, typ, desc, priority=priority)


_W = _TEMPLATE_WIDE
_RS_COLS = [
    NAME,
    _c("Desired", "integer", "Number of desired pods."),
    _c("Current", "integer", "Number of actual replicas."),
    _c("Ready", "integer", "Number of ready replicas."),
    AGE,
    *_W,
    SELECTOR_WIDE,
]
_EVENT_COLS = [
    _c(
        "Last Seen", desc="The time at which the most recent occurrence of this event was recorded."
    ),
    _c("Type", desc="Type of this event (Normal, Warning)."),
    _c(
        "Reason",
        desc="Short, machine understandable string that gives the reason for the transition.",
    ),
    _c("Object", desc="The object that this event is about."),
    _c("Subobject", desc="The field path of the object.", priority=1),
    _c("Source", desc="The component reporting this event.", priority=1),
    _c("Message", desc="A human-readable description of the status of this operation."),
    _c("First Seen", desc="The time at which the event was first recorded.", priority=1),
    _c("Count", desc="The number of times this event has occurred.", priority=1),
    _col("Name", fmt="name", desc=_NAME_DESC, priority=1),
]
_BINDING_COLS = [
    NAME,
    _c("Role", desc="RoleRef can reference a Role in the current namespace or a ClusterRole."),
    AGE,
    _c("Users", desc="Users in the binding", priority=1),
    _c("Groups", desc="Groups in the binding", priority=1),
    _c("ServiceAccounts", desc="ServiceAccounts in the binding", priority=1),
]

PRINTERS: dict[tuple[str, str], tuple[list[Obj], RowFn]] = {
    ("", "Pod"): (POD_COLUMNS, _pod_row),
    ("apps", "Deployment"): (
        [
            NAME,
            _c("Ready", desc="Number of the pod with ready state"),
            _c(
                "Up-to-date",
                desc="Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            _c(
                "Available",
                desc="Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            *_W,
            SELECTOR_WIDE,
        ],
        _deployment_row,
    ),
    ("apps", "ReplicaSet"): (_RS_COLS, _replicaset_row),
    ("", "ReplicationController"): (_RS_COLS, _rc_row),
    ("apps", "StatefulSet"): (
        [NAME, _c("Ready", desc="Number of the pod with ready state"), AGE, *_W],
        _statefulset_row,
    ),
    ("apps", "DaemonSet"): (
        [
            NAME,
            _c(
                "Desired",
                "integer",
                "The total number of nodes that should be running the daemon pod.",
            ),
            _c("Current", "integer", "The number of nodes that are running at least 1 daemon pod."),
            _c("Ready", "integer", "The number of nodes that have the daemon pod ready."),
            _c("Up-to-date", "integer", "The total number of nodes running updated daemon pods."),
            _c("Available", "integer", "The number of nodes that have the daemon pod available."),
            _c("Node Selector", desc="NodeSelector of the pod template."),
            AGE,
            *_W,
            SELECTOR_WIDE,
        ],
        _daemonset_row,
    ),
    ("apps", "ControllerRevision"): (
        [
            NAME,
            _c("Controller", desc="Controller of the object"),
            _c(
                "Revision", desc="Revision indicates the revision of the state represented by Data."
            ),
            AGE,
        ],
        _controllerrevision_row,
    ),
    ("batch", "Job"): (
        [
            NAME,
            _c("Status", desc="Status of the job."),
            _c("Completions", desc="The number of pods which reached phase Succeeded."),
            _c("Duration", desc="Time required to complete the job."),
            AGE,
            *_W,
            SELECTOR_WIDE,
        ],
        _job_row,
    ),
    ("batch", "CronJob"): (
        [
            NAME,
            _c("Schedule", desc="The schedule in Cron format."),
            _c("Timezone", desc="The time zone name for the given schedule."),
            _c("Suspend", "boolean", "Whether subsequent executions are suspended."),
            _c("Active", "integer", "A list of pointers to currently running jobs."),
            _c(
                "Last Schedule",
                desc="Information when was the last time the job was successfully scheduled.",
            ),
            AGE,
            *_W,
            SELECTOR_WIDE,
        ],
        _cronjob_row,
    ),
    ("", "Service"): (
        [
            NAME,
            _c("Type", desc="type determines how the Service is exposed."),
            _c("Cluster-IP", desc="clusterIP is the IP address of the service."),
            _c(
                "External-IP",
                desc="externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            _c("Port(s)", desc="The list of ports that are exposed by this service."),
            AGE,
            _c(
                "Selector",
                desc="Route service traffic to pods with label keys and values matching this selector.",
                priority=1,
            ),
        ],
        _service_row,
    ),
    ("", "Endpoints"): (
        [NAME, _c("Endpoints", desc="The set of all endpoints is the union of all subsets."), AGE],
        _endpoints_row,
    ),
    ("discovery.k8s.io", "EndpointSlice"): (
        [
            NAME,
            _c(
                "AddressType",
                desc="addressType specifies the type of address carried by this EndpointSlice.",
            ),
            _c("Ports", desc="ports specifies the list of network ports exposed by each endpoint."),
            _c("Endpoints", desc="endpoints is a list of unique endpoints in this slice."),
            AGE,
        ],
        _endpointslice_row,
    ),
    ("networking.k8s.io", "Ingress"): (
        [
            NAME,
            _c(
                "Class",
                desc="The name of the IngressClass resource that should be used for additional configuration",
            ),
            _c(
                "Hosts",
                desc="Hosts that incoming requests are matched against before the ingress rule",
            ),
            _c("Address", desc="Address is a list containing ingress points for the load-balancer"),
            _c("Ports", desc="Ports of TLS configurations that open"),
            AGE,
        ],
        _ingress_row,
    ),
    ("networking.k8s.io", "IngressClass"): (
        [
            NAME,
            _c("Controller", desc="Controller that is responsible for handling this class"),
            _c("Parameters", desc="A reference to a resource with additional parameters"),
            AGE,
        ],
        _ingressclass_row,
    ),
    ("networking.k8s.io", "NetworkPolicy"): (
        [
            NAME,
            _c("Pod-Selector", desc="Selects the pods to which this NetworkPolicy object applies."),
            AGE,
        ],
        _networkpolicy_row,
    ),
    ("", "Namespace"): (
        [NAME, _c("Status", desc="The status of the namespace"), AGE],
        _namespace_row,
    ),
    ("", "Node"): (
        [
            NAME,
            _c("Status", desc="The status of the node"),
            _c("Roles", desc="The roles of the node"),
            AGE,
            _c("Version", desc="Kubelet Version reported by the node."),
            _c("Internal-IP", desc="List of addresses reachable to the node.", priority=1),
            _c("External-IP", desc="List of addresses reachable to the node.", priority=1),
            _c("OS-Image", desc="OS Image reported by the node.", priority=1),
            _c("Kernel-Version", desc="Kernel Version reported by the node.", priority=1),
            _c(
                "Container-Runtime",
                desc="ContainerRuntime Version reported by the node.",
                priority=1,
            ),
        ],
        _node_row,
    ),
    ("", "Event"): (_EVENT_COLS, _event_row),
    ("events.k8s.io", "Event"): (_EVENT_COLS, _event_row),
    ("", "ConfigMap"): (
        [NAME, _c("Data", desc="Data contains the configuration data."), AGE],
        _configmap_row,
    ),
    ("", "Secret"): (
        [
            NAME,
            _c("Type", desc="Used to facilitate programmatic handling of secret data."),
            _c("Data", desc="Data contains the secret data."),
            AGE,
        ],
        _secret_row,
    ),
    ("", "ServiceAccount"): (
        [NAME, _c("Secrets", desc="Secrets is a list of the secrets in the same namespace."), AGE],
        _serviceaccount_row,
    ),
    ("", "PersistentVolume"): (
        [
            NAME,
            _c(
                "Capacity",
                desc="capacity is the description of the persistent volume's resources and capacity.",
            ),
            _c("Access Modes", desc="accessModes contains all ways the volume can be mounted."),
            _c(
                "Reclaim Policy",
                desc="persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.",
            ),
            _c(
                "Status",
                desc="phase indicates if a volume is available, bound to a claim, or released by a claim.",
            ),
            _c(
                "Claim",
                desc="claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            ),
            _c("StorageClass", desc="StorageClass of the pv"),
            _c("VolumeAttributesClass", desc="VolumeAttributesClass of the pv"),
            _c("Reason", desc="reason is a brief CamelCase string that describes any failure."),
            AGE,
            _c(
                "VolumeMode",
                desc="volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
                priority=1,
            ),
        ],
        _pv_row,
    ),
    ("", "PersistentVolumeClaim"): (
        [
            NAME,
            _c("Status", desc="phase represents the current phase of PersistentVolumeClaim."),
            _c(
                "Volume",
                desc="volumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            _c(
                "Capacity",
                desc="capacity represents the actual resources of the underlying volume.",
            ),
            _c(
                "Access Modes",
                desc="accessModes contains the actual access modes the volume backing the PVC has.",
            ),
            _c("StorageClass", desc="StorageClass of the pvc"),
            _c("VolumeAttributesClass", desc="VolumeAttributesClass of the pvc"),
            AGE,
            _c(
                "VolumeMode",
                desc="volumeMode defines what type of volume is required by the claim.",
                priority=1,
            ),
        ],
        _pvc_row,
    ),
    ("storage.k8s.io", "StorageClass"): (
        [
            NAME,
            _c("Provisioner", desc="provisioner indicates the type of the provisioner."),
            _c(
                "ReclaimPolicy",
                desc="reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes.",
            ),
            _c(
                "VolumeBindingMode",
                desc="volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
            ),
            _c(
                "AllowVolumeExpansion",
                desc="allowVolumeExpansion shows whether the storage class allow volume expand.",
            ),
            AGE,
        ],
        _storageclass_row,
    ),
    ("coordination.k8s.io", "Lease"): (
        [
            NAME,
            _c(
                "Holder",
                desc="holderIdentity contains the identity of the holder of a current lease.",
            ),
            AGE,
        ],
        _lease_row,
    ),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): (
        _WEBHOOK_COLS,
        _webhookconfiguration_row,
    ),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): (
        _WEBHOOK_COLS,
        _webhookconfiguration_row,
    ),
    ("rbac.authorization.k8s.io", "Role"): ([NAME, CREATED_AT], _role_row),
    ("rbac.authorization.k8s.io", "ClusterRole"): ([NAME, CREATED_AT], _role_row),
    ("rbac.authorization.k8s.io", "RoleBinding"): (_BINDING_COLS, _binding_row),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (_BINDING_COLS, _binding_row),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): ([NAME, CREATED_AT], _role_row),
    ("metrics.k8s.io", "NodeMetrics"): (_METRICS_COLS, _metrics_row),
    ("metrics.k8s.io", "PodMetrics"): (_METRICS_COLS, _metrics_row),
    ("autoscaling", "HorizontalPodAutoscaler"): (
        [
            NAME,
            _c("Reference", desc="The target resource to scale."),
            _c("Targets", desc="The metrics used to calculate the desired replica count."),
            _c("MinPods", desc="The lower limit for the number of pods."),
            _c("MaxPods", desc="The upper limit for the number of pods."),
            _c("Replicas", desc="Current number of replicas of pods managed by this autoscaler."),
            AGE,
        ],
        _hpa_row,
    ),
    ("policy", "PodDisruptionBudget"): (
        [
            NAME,
            _c("Min Available", desc="The minimum number of pods that must be available."),
            _c("Max Unavailable", desc="The maximum number of pods that may be unavailable."),
            _c(
                "Allowed Disruptions",
                "integer",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            AGE,
        ],
        _pdb_row,
    ),
    ("scheduling.k8s.io", "PriorityClass"): (
        [
            NAME,
            _c("Value", "integer", "The value of this priority class."),
            _c(
                "Global-Default",
                "boolean",
                "globalDefault specifies whether this PriorityClass should be considered as the default priority.",
            ),
            AGE,
            _c(
                "PreemptionPolicy",
                desc="PreemptionPolicy is the Policy for preempting pods with lower priority.",
            ),
        ],
        _priorityclass_row,
    ),
    ("", "ResourceQuota"): (
        [
            NAME,
            AGE,
            _c(
                "Request",
                desc="Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            _c(
                "Limit",
                desc="Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ],
        _resourcequota_row,
    ),
    ("", "PodTemplate"): (
        [
            NAME,
            _c("Containers", desc="Names of each container in the template."),
            _c("Images", desc="Images referenced by each container in the template."),
            _c("Pod Labels", desc="The labels for the pod template."),
        ],
        _podtemplate_row,
    ),
}
DEFAULT_PRINTER: tuple[list[Obj], RowFn] = ([NAME, AGE], _default_row)


# --- custom resources: additionalPrinterColumns -----------------------------------------

_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-$]+)
      | \[\s*'(?P<quoted>[^']*)'\s*\]
      | \[\s*"(?P<dquoted>[^"]*)"\s*\]
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<star>\*)\s*\]
      | \[\s*\?\(\s*@(?P<fpath>(?:\.[A-Za-z0-9_\-]+)+)\s*(?:(?P<op>==|!=)\s*(?P<lit>"[^"]*"|'[^']*'|-?[\d.]+|true|false))?\s*\)\s*\]
    """,
    re.VERBOSE,
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Evaluate the JSONPath subset CRD printer columns use; returns all matches.

    Supports ``.a.b``, ``['a.b']``, ``[0]``, ``[*]`` and filters
    ``[?(@.type=="Ready")]`` (also ``!=`` and bare existence ``[?(@.x)]``).
    """
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    values = [obj]
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath {path!r} at {text[pos:]!r}")
        pos = m.end()
        nxt: list[Any] = []
        for v in values:
            nxt.extend(_step(v, m))
        values = nxt
    return values


def _step(v: Any, m: re.Match[str]) -> list[Any]:
    key = m.group("field") or m.group("quoted") or m.group("dquoted")
    if key is not None:
        return [v[key]] if isinstance(v, dict) and key in v else []
    if m.group("index") is not None:
        i = int(m.group("index"))
        return [v[i]] if isinstance(v, list) and -len(v) <= i < len(v) else []
    if m.group("star"):
        if isinstance(v, list):
            return list(v)
        return list(v.values()) if isinstance(v, dict) else []
    items = v if isinstance(v, list) else []
    out = []
    for item in items:
        found = jsonpath(item, m.group("fpath"))
        if m.group("op") is None:
            if found:
                out.append(item)
            continue
        lit = m.group("lit")
        want: Any
        if lit[0] in "\"'":
            want = lit[1:-1]
        elif lit in ("true", "false"):
            want = lit == "true"
        else:
            want = float(lit)
        got = found[0] if found else None
        if isinstance(want, float) and isinstance(got, int | float) and not isinstance(got, bool):
            got = float(got)
        if (got == want) == (m.group("op") == "=="):
            out.append(item)
    return out


def crd_columns(columns: list[Obj]) -> list[Obj]:
    """Column definitions for a CR: Name, then the CRD version's printer columns."""
    out = [NAME]
    for c in columns:
        desc = c.get("description") or (
            "Custom resource definition column (in JSONPath format): " + c.get("jsonPath", "")
        )
        out.append(
            _col(
                c.get("name", ""),
                c.get("type", "string"),
                desc,
                fmt=c.get("format", ""),
                priority=int(c.get("priority", 0)),
            )
        )
    return out


def _crd_cell(value: Any, typ: str, now: datetime) -> Any:
    if typ == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"))
        return str(value)
    if typ == "integer":
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if typ == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if typ == "boolean":
        return value if isinstance(value, bool) else None
    if typ == "date":
        t = parse_time(value)
        return human_duration((now - t).total_seconds()) if t else None
    return None


def crd_row(obj: Obj, columns: list[Obj], now: datetime) -> Cells:
    cells: Cells = [_name(obj)]
    for c in columns:
        try:
            found = jsonpath(obj, c.get("jsonPath", ""))
        except ValueError:
            found = []
        cells.append(_crd_cell(found[0], c.get("type", "string"), now) if found else None)
    return cells


DEFAULT_CRD_COLUMNS = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


# --- the Table -------------------------------------------------------------------------

_POD_DONE = {
    "Succeeded": [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ],
    "Failed": [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Failed",
            "message": "The pod failed.",
        }
    ],
}


def table_for(
    rt: ResourceType,
    objects: list[Obj],
    *,
    include_object: str = "Metadata",
    now: datetime | None = None,
    columns: list[Obj] | None = None,
) -> Obj:
    """A ``meta.k8s.io/v1`` Table of ``objects`` of kind ``rt``.

    Args:
        rt: the kind printed.
        objects: the objects, in order.
        include_object: ``Metadata`` (PartialObjectMetadata), ``Object`` or ``None``.
        now: the clock for Age cells (defaults to the current UTC time).
        columns: a CRD version's ``additionalPrinterColumns``; when given (custom
            resources), they replace the built-in printer. An empty list means
            the CRD default (Age).
    """
    now = now or datetime.now(UTC)
    if columns is not None or (not rt.definition and (rt.group, rt.kind) not in PRINTERS):
        cols = columns if columns else DEFAULT_CRD_COLUMNS
        definitions = crd_columns(cols)

        def crd_row_fn(o: Obj, t: datetime) -> Cells:
            return crd_row(o, cols, t)

        row_fn: RowFn = crd_row_fn
    else:
        definitions, row_fn = PRINTERS.get((rt.group, rt.kind), DEFAULT_PRINTER)
    rows = []
    for obj in objects:
        row: Obj = {"cells": row_fn(obj, now)}
        if rt.group == "" and rt.kind == "Pod":
            conds = _POD_DONE.get(_get(obj, "status", "phase", default=""))
            if conds:
                row["conditions"] = conds
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {},
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [dict(c) for c in definitions],
        "rows": rows,
    }
