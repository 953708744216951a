"""Every built-in kind microkube serves, as data.

Custom resources are added at run time by :meth:`Catalog.register` when a
CustomResourceDefinition becomes established; built-in kinds are listed here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from microkube.resources.types import ResourceType

R = ResourceType
_CORE = "io.k8s.api.core.v1."

BUILTIN: tuple[ResourceType, ...] = (
    # core/v1
    R(
        "",
        "v1",
        "Namespace",
        "namespaces",
        namespaced=False,
        short_names=("ns",),
        subresources=("status", "finalize"),
        definition=_CORE + "Namespace",
    ),
    R(
        "",
        "v1",
        "Node",
        "nodes",
        namespaced=False,
        short_names=("no",),
        subresources=("status", "proxy"),
        definition=_CORE + "Node",
    ),
    R(
        "",
        "v1",
        "Pod",
        "pods",
        short_names=("po",),
        categories=("all",),
        subresources=(
            "status",
            "log",
            "exec",
            "attach",
            "portforward",
            "binding",
            "eviction",
            "ephemeralcontainers",
            "proxy",
        ),
        definition=_CORE + "Pod",
    ),
    R(
        "",
        "v1",
        "Service",
        "services",
        short_names=("svc",),
        categories=("all",),
        subresources=("status", "proxy"),
        definition=_CORE + "Service",
    ),
    R(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        short_names=("ep",),
        singular="endpoints",
        definition=_CORE + "Endpoints",
    ),
    R("", "v1", "ConfigMap", "configmaps", short_names=("cm",), definition=_CORE + "ConfigMap"),
    R("", "v1", "Secret", "secrets", definition=_CORE + "Secret"),
    R(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        short_names=("sa",),
        subresources=("token",),
        definition=_CORE + "ServiceAccount",
    ),
    R("", "v1", "Event", "events", short_names=("ev",), definition=_CORE + "Event"),
    R(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        namespaced=False,
        short_names=("pv",),
        subresources=("status",),
        definition=_CORE + "PersistentVolume",
    ),
    R(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        short_names=("pvc",),
        subresources=("status",),
        definition=_CORE + "PersistentVolumeClaim",
    ),
    R(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        short_names=("quota",),
        subresources=("status",),
        definition=_CORE + "ResourceQuota",
    ),
    R(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        short_names=("limits",),
        definition=_CORE + "LimitRange",
    ),
    R(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        short_names=("rc",),
        categories=("all",),
        subresources=("status", "scale"),
        definition=_CORE + "ReplicationController",
    ),
    R("", "v1", "PodTemplate", "podtemplates", definition=_CORE + "PodTemplate"),
    # apps/v1
    R(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        short_names=("deploy",),
        categories=("all",),
        subresources=("status", "scale"),
        definition="io.k8s.api.apps.v1.Deployment",
    ),
    R(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        short_names=("rs",),
        categories=("all",),
        subresources=("status", "scale"),
        definition="io.k8s.api.apps.v1.ReplicaSet",
    ),
    R(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        short_names=("sts",),
        categories=("all",),
        subresources=("status", "scale"),
        definition="io.k8s.api.apps.v1.StatefulSet",
    ),
    R(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        short_names=("ds",),
        categories=("all",),
        subresources=("status",),
        definition="io.k8s.api.apps.v1.DaemonSet",
    ),
    R(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        definition="io.k8s.api.apps.v1.ControllerRevision",
    ),
    # batch/v1
    R(
        "batch",
        "v1",
        "Job",
        "jobs",
        categories=("all",),
        subresources=("status",),
        definition="io.k8s.api.batch.v1.Job",
    ),
    R(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        short_names=("cj",),
        categories=("all",),
        subresources=("status",),
        definition="io.k8s.api.batch.v1.CronJob",
    ),
    # autoscaling/v2
    R(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        short_names=("hpa",),
        categories=("all",),
        subresources=("status",),
        definition="io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
    ),
    # autoscaling/v1: kubectl <= 1.32 `autoscale` writes it (converted to v2 storage)
    R(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        short_names=("hpa",),
        categories=("all",),
        subresources=("status",),
        definition="io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler",
    ),
    # discovery.k8s.io/v1
    R(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        definition="io.k8s.api.discovery.v1.EndpointSlice",
    ),
    # events.k8s.io/v1 (same storage as core/v1 events)
    R(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        short_names=("ev",),
        definition="io.k8s.api.events.v1.Event",
    ),
    # admissionregistration.k8s.io/v1 (the webhook admission plugins read these)
    R(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        namespaced=False,
        definition="io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration",
    ),
    R(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        namespaced=False,
        definition="io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration",
    ),
    # coordination.k8s.io/v1
    R(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        definition="io.k8s.api.coordination.v1.Lease",
    ),
    # storage.k8s.io/v1
    R(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        namespaced=False,
        short_names=("sc",),
        definition="io.k8s.api.storage.v1.StorageClass",
    ),
    R(
        "storage.k8s.io",
        "v1",
        "CSIDriver",
        "csidrivers",
        namespaced=False,
        definition="io.k8s.api.storage.v1.CSIDriver",
    ),
    # networking.k8s.io/v1
    R(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        short_names=("ing",),
        subresources=("status",),
        definition="io.k8s.api.networking.v1.Ingress",
    ),
    R(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        namespaced=False,
        definition="io.k8s.api.networking.v1.IngressClass",
    ),
    R(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        short_names=("netpol",),
        definition="io.k8s.api.networking.v1.NetworkPolicy",
    ),
    # policy/v1
    R(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        short_names=("pdb",),
        subresources=("status",),
        definition="io.k8s.api.policy.v1.PodDisruptionBudget",
    ),
    # scheduling.k8s.io/v1
    R(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        namespaced=False,
        short_names=("pc",),
        definition="io.k8s.api.scheduling.v1.PriorityClass",
    ),
    # rbac.authorization.k8s.io/v1
    R("rbac.authorization.k8s.io", "v1", "Role", "roles", definition="io.k8s.api.rbac.v1.Role"),
    R(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        definition="io.k8s.api.rbac.v1.RoleBinding",
    ),
    R(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        namespaced=False,
        definition="io.k8s.api.rbac.v1.ClusterRole",
    ),
    R(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        namespaced=False,
        definition="io.k8s.api.rbac.v1.ClusterRoleBinding",
    ),
    # apiextensions.k8s.io/v1
    R(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=("status",),
        definition="io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
    ),
    # metrics.k8s.io: read-only, computed from the kubelet's stats (resources/metrics.py)
    R(
        "metrics.k8s.io",
        "v1beta1",
        "NodeMetrics",
        "nodes",
        namespaced=False,
        verbs=("get", "list"),
    ),
    R("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", verbs=("get", "list")),
    # Virtual (create-only) review kinds.
    R(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        namespaced=False,
        verbs=("create",),
        definition="io.k8s.api.authentication.v1.TokenReview",
    ),
    R(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        namespaced=False,
        verbs=("create",),
        definition="io.k8s.api.authentication.v1.SelfSubjectReview",
    ),
    R(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        namespaced=False,
        verbs=("create",),
        definition="io.k8s.api.authorization.v1.SelfSubjectAccessReview",
    ),
    R(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        namespaced=False,
        verbs=("create",),
        definition="io.k8s.api.authorization.v1.SelfSubjectRulesReview",
    ),
    R(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        namespaced=False,
        verbs=("create",),
        definition="io.k8s.api.authorization.v1.SubjectAccessReview",
    ),
    R(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        verbs=("create",),
        definition="io.k8s.api.authorization.v1.LocalSubjectAccessReview",
    ),
)

# Group order in discovery, as the apiserver reports it (kubectl prefers earlier
# groups when a short name or plural is ambiguous, e.g. events).
GROUP_ORDER = (
    "",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "admissionregistration.k8s.io",
)


class Catalog:
    """The served kinds, looked up by group/version/plural, kind or short name.

    Thread safe: CRDs register and unregister from the controller task while
    request handlers read.
    """

    def __init__(self, types: Iterable[ResourceType] = BUILTIN) -> None:
        self._lock = threading.Lock()
        self._types: list[ResourceType] = list(types)
        self._generation = 0

    @property
    def generation(self) -> int:
        """Bumped on every change, so discovery/OpenAPI caches know when to rebuild."""
        return self._generation

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._types))

    def register(self, rt: ResourceType) -> None:
        with self._lock:
            self._types = [t for t in self._types if not _same_gvr(t, rt)] + [rt]
            self._generation += 1

    def unregister(self, group: str, plural: str) -> None:
        with self._lock:
            self._types = [t for t in self._types if not (t.group == group and t.plural == plural)]
            self._generation += 1

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        for t in self._types:
            if t.group == group and t.version == version and t.plural == plural:
                return t
        return None

    def by_kind(self, group: str, kind: str, version: str | None = None) -> ResourceType | None:
        for t in self._types:
            if t.group == group and t.kind == kind and (version is None or t.version == version):
                return t
        return None

    def by_api_version(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return self.by_kind(group, kind, version)

    def group_versions(self) -> dict[str, list[str]]:
        """``{group: [versions…]}`` in discovery order (preferred version first)."""
        out: dict[str, list[str]] = {}
        order = {g: i for i, g in enumerate(GROUP_ORDER)}
        for t in sorted(self._types, key=lambda t: (order.get(t.group, len(order)), t.group)):
            versions = out.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self._types if t.group == group and t.version == version]


def _same_gvr(a: ResourceType, b: ResourceType) -> bool:
    return a.group == b.group and a.version == b.version and a.plural == b.plural


def default_catalog() -> Catalog:
    return Catalog(BUILTIN)
