"""Which requests a webhook (or policy) applies to: pure, table-tested.

Mirrors ``k8s.io/apiserver/pkg/admission/plugin/webhook/predicates``:

* :func:`rule_matches`: one RuleWithOperations (``operations``,
  ``apiGroups``, ``apiVersions``, ``resources`` with ``*``, ``*/*``,
  ``pods/status``, ``*/status``, ``pods/*``; ``scope`` ``*``/``Cluster``/
  ``Namespaced``);
* :func:`matching_resource`: ``matchPolicy`` Exact or Equivalent (an
  equivalent served version or group of the same resource matches, and the
  webhook then sees that kind/resource);
* :func:`namespace_selected` / :func:`object_selected`: the label selectors
  (a cluster-scoped object always passes the namespaceSelector, a Namespace
  is matched by its own labels; objectSelector passes if the new or the old
  object matches);
* :func:`exempt`: what is never sent to webhooks (webhook configurations and
  admission policies themselves, kube-system leases and events).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from microkube.admission.attributes import Attributes, GroupVersionResource
from microkube.objects.selectors import LabelSelector

_EXEMPT_GROUP = "admissionregistration.k8s.io"
_EXEMPT_RESOURCES = frozenset(
    {
        "mutatingwebhookconfigurations",
        "validatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "mutatingadmissionpolicies",
        "mutatingadmissionpolicybindings",
    }
)


def exempt(attrs: Attributes) -> bool:
    r = attrs.resource
    if r.group == _EXEMPT_GROUP and r.resource in _EXEMPT_RESOURCES:
        return True
    if attrs.namespace == "kube-system" and (
        (r.group == "coordination.k8s.io" and r.resource == "leases")
        or (r.group in ("", "events.k8s.io") and r.resource == "events")
    ):
        return True
    return False


def _in(values: Iterable[str] | None, value: str) -> bool:
    vs = list(values or [])
    return "*" in vs or value in vs


def _resource_matches(patterns: Iterable[str] | None, resource: str, sub: str) -> bool:
    for p in patterns or []:
        if p == "*/*":
            return True
        res, _, psub = p.partition("/")
        if not psub:
            if not sub and res in ("*", resource):
                return True
            continue
        if res in ("*", resource) and (psub == "*" or psub == sub):
            return True
    return False


def _scope_matches(scope: str | None, attrs: Attributes) -> bool:
    scope = scope or "*"
    if scope == "*":
        return True
    namespaced = bool(attrs.namespace) and attrs.namespaced
    if scope == "Cluster":
        return not namespaced
    if scope == "Namespaced":
        return namespaced
    return False


def rule_matches(
    rule: dict[str, Any], attrs: Attributes, gvr: GroupVersionResource | None = None
) -> bool:
    """Whether one RuleWithOperations matches (against ``gvr`` instead of attrs.resource)."""
    gvr = gvr or attrs.resource
    return (
        _in(rule.get("operations"), attrs.operation)
        and _in(rule.get("apiGroups"), gvr.group)
        and _in(rule.get("apiVersions"), gvr.version)
        and _resource_matches(rule.get("resources"), gvr.resource, attrs.subresource)
        and _scope_matches(rule.get("scope"), attrs)
    )


def matching_resource(
    rules: Iterable[dict[str, Any]],
    attrs: Attributes,
    *,
    match_policy: str = "Equivalent",
    equivalents: Iterable[GroupVersionResource] = (),
) -> GroupVersionResource | None:
    """The resource the webhook matches the request as, or None if it does not."""
    rules = list(rules)
    if any(rule_matches(r, attrs) for r in rules):
        return attrs.resource
    if match_policy != "Equivalent":
        return None
    for gvr in equivalents:
        if gvr != attrs.resource and any(rule_matches(r, attrs, gvr) for r in rules):
            return gvr
    return None


def compile_selector(selector: dict[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector (``{}`` and None select everything)."""
    if not selector:
        return LabelSelector.everything()
    return LabelSelector.from_structured(selector)


def object_selected(selector: LabelSelector, attrs: Attributes) -> bool:
    if selector.empty:
        return True
    for obj in (
        (attrs.old_object,) if attrs.operation == "CONNECT" else (attrs.object, attrs.old_object)
    ):
        if obj is not None and selector.matches((obj.get("metadata") or {}).get("labels")):
            return True
    return False


def needs_namespace_labels(selector: LabelSelector, attrs: Attributes) -> bool:
    """Whether :func:`namespace_selected` needs the labels of attrs.namespace."""
    return (
        not selector.empty
        and bool(attrs.namespace)
        and attrs.namespaced
        and not _is_namespace(attrs)
    )


def _is_namespace(attrs: Attributes) -> bool:
    r = attrs.resource
    return r.group == "" and r.resource == "namespaces" and not attrs.subresource


def namespace_selected(
    selector: LabelSelector,
    attrs: Attributes,
    namespace_labels: dict[str, str] | None,
) -> bool:
    """``namespace_labels``: the labels of attrs.namespace (None when it has none/is absent)."""
    if selector.empty:
        return True
    if _is_namespace(attrs):
        obj = attrs.object if attrs.object is not None else attrs.old_object
        return selector.matches(((obj or {}).get("metadata") or {}).get("labels"))
    if not attrs.namespace or not attrs.namespaced:
        return True
    return selector.matches(namespace_labels)
