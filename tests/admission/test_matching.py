"""Rule, scope, selector and exemption matching (pure, table-driven)."""

from __future__ import annotations

from typing import Any

import pytest

from microkube.admission import matching
from microkube.admission.attributes import (
    LOOPBACK_USER,
    Attributes,
    GroupVersionKind,
    GroupVersionResource,
)


def attrs(
    resource: str = "pods",
    *,
    group: str = "",
    version: str = "v1",
    sub: str = "",
    op: str = "CREATE",
    ns: str = "default",
    namespaced: bool = True,
    labels: dict[str, str] | None = None,
    old_labels: dict[str, str] | None = None,
) -> Attributes:
    obj = {"metadata": {"name": "x", "labels": labels or {}}}
    old = {"metadata": {"name": "x", "labels": old_labels}} if old_labels is not None else None
    return Attributes(
        kind=GroupVersionKind(group, version, "Thing"),
        resource=GroupVersionResource(group, version, resource),
        subresource=sub,
        operation=op,  # type: ignore[arg-type]
        namespace=ns if namespaced else "",
        name="x",
        object=obj,
        old_object=old,
        user_info=LOOPBACK_USER,
        namespaced=namespaced,
    )


def rule(**kw: Any) -> dict[str, Any]:
    return {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], **kw}


@pytest.mark.parametrize(
    ("r", "a", "want"),
    [
        (rule(), attrs(), True),
        (rule(), attrs(sub="status"), False),  # "*" is main resources only
        (rule(resources=["*/*"]), attrs(sub="status"), True),
        (rule(resources=["pods/status"]), attrs(sub="status"), True),
        (rule(resources=["pods/status"]), attrs(), False),
        (rule(resources=["pods"]), attrs(sub="status"), False),
        (rule(resources=["*/status"]), attrs("deployments", sub="status"), True),
        (rule(resources=["pods/*"]), attrs(sub="exec"), True),
        (rule(resources=["pods/*"]), attrs("services", sub="status"), False),
        (rule(operations=["UPDATE"]), attrs(), False),
        (rule(operations=["CREATE", "UPDATE"]), attrs(op="UPDATE"), True),
        (rule(apiGroups=["apps"]), attrs(), False),
        (rule(apiGroups=["apps"]), attrs("deployments", group="apps"), True),
        (rule(apiVersions=["v1beta1"]), attrs(), False),
        (rule(scope="Cluster"), attrs(), False),
        (rule(scope="Cluster"), attrs("nodes", namespaced=False), True),
        (rule(scope="Namespaced"), attrs("nodes", namespaced=False), False),
        (rule(scope="Namespaced"), attrs(), True),
    ],
)
def test_rule_matches(r: dict[str, Any], a: Attributes, want: bool) -> None:
    assert matching.rule_matches(r, a) is want


def test_match_policy_equivalent_and_exact() -> None:
    a = attrs("deployments", group="apps", version="v1")
    rules = [rule(apiGroups=["apps"], apiVersions=["v1beta1"], resources=["deployments"])]
    eq = [GroupVersionResource("apps", "v1beta1", "deployments")]
    assert matching.matching_resource(rules, a, match_policy="Exact", equivalents=eq) is None
    assert matching.matching_resource(rules, a, match_policy="Equivalent", equivalents=eq) == eq[0]
    assert matching.matching_resource([rule()], a) == a.resource


@pytest.mark.parametrize(
    ("selector", "a", "ns_labels", "want"),
    [
        ({}, attrs(), None, True),
        ({"matchLabels": {"team": "a"}}, attrs(), {"team": "a"}, True),
        ({"matchLabels": {"team": "a"}}, attrs(), {"team": "b"}, False),
        ({"matchLabels": {"team": "a"}}, attrs(), None, False),
        ({"matchLabels": {"team": "a"}}, attrs("nodes", namespaced=False), None, True),
        (
            {"matchLabels": {"team": "a"}},
            attrs("namespaces", namespaced=False, labels={"team": "a"}),
            None,
            True,
        ),
        ({"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}, attrs(), {}, True),
    ],
)
def test_namespace_selector(
    selector: dict[str, Any], a: Attributes, ns_labels: Any, want: bool
) -> None:
    assert matching.namespace_selected(matching.compile_selector(selector), a, ns_labels) is want


def test_object_selector_matches_new_or_old() -> None:
    sel = matching.compile_selector({"matchLabels": {"app": "web"}})
    assert matching.object_selected(sel, attrs(labels={"app": "web"}))
    assert matching.object_selected(sel, attrs(op="UPDATE", labels={}, old_labels={"app": "web"}))
    assert not matching.object_selected(sel, attrs(labels={"app": "db"}))
    assert matching.object_selected(matching.compile_selector({}), attrs())


@pytest.mark.parametrize(
    ("a", "want"),
    [
        (
            attrs(
                "validatingwebhookconfigurations",
                group="admissionregistration.k8s.io",
                namespaced=False,
            ),
            True,
        ),
        (
            attrs(
                "mutatingwebhookconfigurations",
                group="admissionregistration.k8s.io",
                namespaced=False,
            ),
            True,
        ),
        (
            attrs(
                "validatingadmissionpolicies",
                group="admissionregistration.k8s.io",
                namespaced=False,
            ),
            True,
        ),
        (attrs("leases", group="coordination.k8s.io", ns="kube-system"), True),
        (attrs("events", ns="kube-system"), True),
        (attrs("events", group="events.k8s.io", ns="kube-system"), True),
        (attrs("leases", group="coordination.k8s.io", ns="default"), False),
        (attrs("configmaps", ns="kube-system"), False),
    ],
)
def test_exempt(a: Attributes, want: bool) -> None:
    assert matching.exempt(a) is want
