"""metrics.k8s.io/v1beta1: NodeMetrics and PodMetrics, computed on request, never stored.

Serves what metrics-server's aggregated API serves (``kubectl top``, the HPA
controller): a read-only view joining the Nodes and Pods in the store with the
usage a :class:`UsageProvider` (the kubelet's stats collector) last sampled::

    GET /apis/metrics.k8s.io/v1beta1/namespaces/ns/pods
        └─► Registry.list ─► ResourceMetrics.list ─► pods in the store (label and
            field selectors) ─► Running ones ─► provider.pod_usage(uid) ─► PodMetrics

The shape mirrors ``sigs.k8s.io/metrics-server/pkg/api``: ``timestamp`` (when
the usage was sampled), ``window`` (the interval the CPU rate covers, a Go
duration), ``usage`` with CPU in nanocores (``12345678n``) and memory as the
working set in bytes (``1234Ki``); pods list one entry per container.  A pod
or node without usage yet (not sampled twice) is left out of lists and is
NotFound on get, as upstream.  Only get and list are served (the catalog's
verbs); anything else is 405.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from microkube import errors
from microkube.objects import quantity
from microkube.objects.selectors import FieldSelector, LabelSelector, object_fields
from microkube.resources.types import ResourceType

Obj = dict[str, Any]
GROUP = "metrics.k8s.io"


class Usage(Protocol):
    """One sampled usage: CPU rate over ``window`` seconds ending at ``timestamp``."""

    timestamp: datetime
    window: float
    cpu_nanocores: int
    memory_bytes: int


class ContainerUsage(Usage, Protocol):
    name: str


class UsageProvider(Protocol):
    """What the kubelet's stats collector offers (None: no usage known yet)."""

    def node_usage(self, name: str) -> Usage | None: ...

    def pod_usage(self, uid: str) -> Sequence[ContainerUsage] | None: ...


def go_duration(seconds: float) -> str:
    """``metav1.Duration`` JSON, millisecond precision (``10.04s``, ``1m0.5s``, ``500ms``)."""
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def usage_of(u: Usage) -> Obj:
    return {
        "cpu": quantity.format_decimal(u.cpu_nanocores, -9),
        "memory": quantity.format_binary(u.memory_bytes),
    }


class ResourceMetrics:
    """The virtual store of both kinds (installed with :func:`install`)."""

    def __init__(self, registry: Any, provider: UsageProvider) -> None:
        self.registry = registry
        self.provider = provider
        self._nodes = registry.catalog.get("", "v1", "nodes")
        self._pods = registry.catalog.get("", "v1", "pods")

    def _metadata(self, obj: Obj, created: str) -> Obj:
        m = obj["metadata"]
        out = {"name": m["name"], "creationTimestamp": created}
        if m.get("namespace"):
            out["namespace"] = m["namespace"]
        if m.get("labels"):
            out["labels"] = m["labels"]
        return out

    def _node_metrics(self, rt: ResourceType, node: Obj, created: str) -> Obj | None:
        u = self.provider.node_usage(node["metadata"]["name"])
        if u is None:
            return None
        return {
            "kind": rt.kind,
            "apiVersion": rt.api_version,
            "metadata": self._metadata(node, created),
            "timestamp": _time(u.timestamp),
            "window": go_duration(u.window),
            "usage": usage_of(u),
        }

    def _pod_metrics(self, rt: ResourceType, pod: Obj, created: str) -> Obj | None:
        if (pod.get("status") or {}).get("phase") != "Running":
            return None
        containers = self.provider.pod_usage(pod["metadata"]["uid"])
        if not containers:
            return None
        order = {
            c.get("name"): i for i, c in enumerate((pod.get("spec") or {}).get("containers") or [])
        }
        containers = sorted(containers, key=lambda c: order.get(c.name, len(order)))
        # The pod's sample is as old as its oldest container's (metrics-server's earliest TimeInfo).
        first = min(containers, key=lambda c: c.timestamp)
        return {
            "kind": rt.kind,
            "apiVersion": rt.api_version,
            "metadata": self._metadata(pod, created),
            "timestamp": _time(first.timestamp),
            "window": go_duration(first.window),
            "containers": [{"name": c.name, "usage": usage_of(c)} for c in containers],
        }

    def _build(self, rt: ResourceType, obj: Obj, created: str) -> Obj | None:
        """The metrics object of ``obj``; ``created`` (now) is its creationTimestamp, as upstream."""
        if rt.kind == "NodeMetrics":
            return self._node_metrics(rt, obj, created)
        return self._pod_metrics(rt, obj, created)

    def _source(self, rt: ResourceType) -> ResourceType:
        return self._nodes if rt.kind == "NodeMetrics" else self._pods

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.registry.get(self._source(rt), namespace, name)
        out = self._build(rt, obj, _time(datetime.now(UTC)))
        if out is None:
            key = f"{namespace}/{name}" if rt.namespaced else name
            raise errors.NotFound(
                f'{rt.kind.lower()}.{GROUP} "{key}" not found',
                name=key,
                group=GROUP,
                kind=rt.kind.lower(),
            )
        return out

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: LabelSelector | None = None,
        field_selector: FieldSelector | None = None,
    ) -> list[Obj]:
        source = self.registry.list(self._source(rt), namespace, label_selector=label_selector)
        created = _time(datetime.now(UTC))
        out = []
        for obj in source.items:
            if field_selector is not None and not field_selector.matches(
                object_fields(rt.kind, obj)
            ):
                continue
            metrics = self._build(rt, obj, created)
            if metrics is not None:
                out.append(metrics)
        return out


def install(registry: Any, provider: UsageProvider) -> None:
    """Serve both kinds from ``provider`` (the kubelet calls this when it starts)."""
    source = ResourceMetrics(registry, provider)
    for plural in ("nodes", "pods"):
        registry.virtual[(GROUP, plural)] = source
