"""Label and field selectors: parsing, errors, matching and rendering."""

from __future__ import annotations

from typing import Any

import pytest

from microkube import errors
from microkube.objects import selectors
from microkube.objects.selectors import FieldSelector, LabelSelector

LABELS = {"app": "web", "tier": "fe", "n": "7", "empty": ""}

# (selector, canonical string, matches LABELS?)
LABEL_CASES: list[tuple[str, str, bool]] = [
    ("", "", True),
    ("app=web", "app=web", True),
    ("app==web", "app==web", True),
    ("app!=web", "app!=web", False),
    ("missing!=x", "missing!=x", True),
    ("app in (web,db)", "app in (db,web)", True),
    ("app notin (web)", "app notin (web)", False),
    ("missing notin (a)", "missing notin (a)", True),
    ("missing in (a)", "missing in (a)", False),
    ("app", "app", True),
    ("!app", "!app", False),
    ("!missing", "!missing", True),
    ("  tier = fe ,  app  in ( web , db ) ", "app in (db,web),tier=fe", True),
    ("tier=fe,app=db", "app=db,tier=fe", False),
    ("empty=", "empty=", True),
    ("empty", "empty", True),
    ("app in ()", "app in ()", False),
    ("app in (,web)", "app in (,web)", True),
    ("app in (web,)", "app in (,web)", True),
    ("n>5", "n>5", True),
    ("n<5", "n<5", False),
    ("app>5", "app>5", False),
    ("in=x", "in=x", False),  # keywords are identifiers where a key is expected
    ("x in (in,notin)", "x in (in,notin)", False),
    ("example.com/role=db,app=web", "app=web,example.com/role=db", False),
    ("a.b_c-d=E.F_g-h", "a.b_c-d=E.F_g-h", False),
]


@pytest.mark.parametrize(("text", "canonical", "matches"), LABEL_CASES)
def test_label_selector_parse_render_match(text: str, canonical: str, matches: bool) -> None:
    selector = LabelSelector.parse(text)
    assert str(selector) == canonical
    assert selector.matches(LABELS) is matches
    # the canonical form parses back to the same selector
    assert LabelSelector.parse(canonical) == selector


QUALIFIED_HINT = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
VALUE_HINT = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)

LABEL_ERRORS: list[tuple[str, str]] = [
    ("-a=b", f'unable to parse requirement: <nil>: Invalid value: "-a": {QUALIFIED_HINT}'),
    ("a=-b", f'unable to parse requirement: values[0][a]: Invalid value: "-b": {VALUE_HINT}'),
    ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
    ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ("a=b,", "found '', expected: identifier after ','"),
    (",a", "found ',', expected: !, identifier, or 'end of string'"),
    ("=a", "found '=', expected: !, identifier, or 'end of string'"),
    ("a in x", "unable to parse requirement: found 'x' expected: '('"),
    ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
    ("a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"),
    ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
    ("a=(", "unable to parse requirement: found '(', expected: identifier"),
    ("!", "unable to parse requirement: found '', expected: identifier"),
    ("!a=b", "found '=', expected: ',' or 'end of string'"),
    (
        "a>x",
        "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer",
    ),
    (
        "a/b/c",
        'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name must consist of',
    ),
    (
        "/a",
        'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty',
    ),
    ("Ex.com/a", "prefix part a lowercase RFC 1123 subdomain must consist of"),
    ("a" * 64, "name part must be no more than 63 characters"),
    ("a=" + "b" * 64, "must be no more than 63 characters"),
]


@pytest.mark.parametrize(("text", "message"), LABEL_ERRORS)
def test_label_selector_errors(text: str, message: str) -> None:
    with pytest.raises(errors.BadRequest) as info:
        LabelSelector.parse(text)
    assert info.value.code == 400
    assert message in info.value.message
    if message.startswith(("unable", "found")):
        assert info.value.message.startswith(message)


def test_structured_selector() -> None:
    selector = LabelSelector.from_structured(
        {
            "matchLabels": {"tier": "fe", "app": "web"},
            "matchExpressions": [
                {"key": "n", "operator": "In", "values": ["7", "8"]},
                {"key": "gone", "operator": "DoesNotExist"},
                {"key": "empty", "operator": "Exists"},
                {"key": "app", "operator": "NotIn", "values": ["db"]},
            ],
        }
    )
    assert str(selector) == "app=web,app notin (db),empty,!gone,n in (7,8),tier=fe"
    assert selector.matches(LABELS)
    assert not selector.matches({**LABELS, "gone": "x"})
    assert not selector.matches({"app": "web"})


def test_structured_empty_and_nil() -> None:
    everything = LabelSelector.from_structured({})
    assert everything.empty and everything.matches({}) and everything.matches(None)
    assert LabelSelector.from_structured({"matchLabels": {}, "matchExpressions": []}).empty
    nothing = LabelSelector.from_structured(None)
    assert not nothing.empty and not nothing.matches({}) and not nothing.matches(LABELS)
    assert str(nothing) == ""
    assert LabelSelector.everything().matches({"a": "b"})
    assert not LabelSelector.none().matches({"a": "b"})


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            '"Gt" is not a valid label selector operator',
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            "for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "values set must be empty for exists and does not exist",
        ),
        ({"matchLabels": {"bad key": "x"}}, 'key: Invalid value: "bad key"'),
        ({"matchLabels": {"a": "b c"}}, 'values[0][a]: Invalid value: "b c"'),
    ],
)
def test_structured_errors(selector: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.BadRequest, match=None) as info:
        LabelSelector.from_structured(selector)
    assert message in info.value.message


def test_requirement_builder_and_helper() -> None:
    req = selectors.requirement("app", selectors.IN, ["b", "a"])
    assert str(req) == "app in (a,b)"
    with pytest.raises(
        errors.BadRequest, match="exact-match compatibility requires one single value"
    ):
        selectors.requirement("app", selectors.EQUALS, ["a", "b"])
    assert selectors.parse_label_selector(None).empty
    assert str(selectors.parse_label_selector("app=web")) == "app=web"


# ---------------------------------------------------------------- fields

POD = {
    "metadata": {"name": "p", "namespace": "default"},
    "spec": {
        "nodeName": "node-1",
        "restartPolicy": "Always",
        "serviceAccountName": "default",
        "hostNetwork": True,
    },
    "status": {
        "phase": "Running",
        "podIP": "10.0.0.5",
        "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
    },
}


@pytest.mark.parametrize(
    ("text", "canonical", "matches"),
    [
        ("", "", True),
        ("metadata.name=p", "metadata.name=p", True),
        ("metadata.name==p", "metadata.name=p", True),
        ("metadata.name!=p", "metadata.name!=p", False),
        (
            "status.phase=Running,spec.nodeName=node-1",
            "spec.nodeName=node-1,status.phase=Running",
            True,
        ),
        ("spec.nodeName=", "spec.nodeName=", False),
        ("status.nominatedNodeName=", "status.nominatedNodeName=", True),
        ("spec.hostNetwork=true", "spec.hostNetwork=true", True),
        ("status.podIP=10.0.0.5", "status.podIP=10.0.0.5", True),
        ("spec.schedulerName!=default-scheduler", "spec.schedulerName!=default-scheduler", True),
        ("metadata.name=a\\,b", "metadata.name=a\\,b", False),
        ("spec.host=node-1", "spec.nodeName=node-1", True),  # legacy alias
    ],
)
def test_field_selector_on_pods(text: str, canonical: str, matches: bool) -> None:
    selector = selectors.parse_field_selector(text, "Pod")
    assert str(selector) == canonical
    assert selector.matches(selectors.object_fields("Pod", POD)) is matches


def test_field_selector_escapes_round_trip() -> None:
    selector = FieldSelector.parse(r"metadata.name=a\,b\=c\\d")
    assert selector.requirements[0].value == "a,b=c\\d"
    assert FieldSelector.parse(str(selector)) == selector
    assert selector.matches({"metadata.name": "a,b=c\\d"})
    assert selector.required_value("metadata.name") == "a,b=c\\d"
    assert FieldSelector.parse("metadata.name!=x").required_value("metadata.name") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescaped character in value: ="),
        ("a=b\\x", "invalid field selector: invalid escape sequence: \\x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(errors.BadRequest) as info:
        FieldSelector.parse(text)
    assert info.value.message == message


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("Pod", "spec.containers=x"),
        ("ConfigMap", "status.phase=Running"),
        ("Secret", "data=x"),
        ("Deployment", "spec.replicas=1"),
    ],
)
def test_unsupported_field_label(kind: str, text: str) -> None:
    with pytest.raises(errors.BadRequest) as info:
        selectors.parse_field_selector(text, kind)
    assert info.value.message == f"field label not supported: {text.split('=')[0]}"


def test_every_kind_supports_name_and_namespace() -> None:
    for kind in ("ConfigMap", "Deployment", "Widget", "Node"):
        selector = selectors.parse_field_selector("metadata.name=x,metadata.namespace=ns", kind)
        assert selector.matches(
            selectors.object_fields(kind, {"metadata": {"name": "x", "namespace": "ns"}})
        )


def test_object_fields_per_kind() -> None:
    assert selectors.object_fields("Pod", {"metadata": {"name": "p"}}) == {
        "metadata.name": "p",
        "metadata.namespace": "",
        "spec.nodeName": "",
        "spec.restartPolicy": "",
        "spec.schedulerName": "",
        "spec.serviceAccountName": "",
        "spec.hostNetwork": "false",
        "status.phase": "",
        "status.podIP": "",
        "status.nominatedNodeName": "",
    }
    event = {
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {
            "kind": "Pod",
            "name": "p",
            "namespace": "default",
            "uid": "u1",
            "apiVersion": "v1",
            "fieldPath": "spec.containers{c}",
        },
        "reason": "Pulled",
        "type": "Normal",
        "source": {"component": "kubelet"},
        "reportingComponent": "kubelet",
    }
    fields = selectors.object_fields("Event", event)
    assert fields["involvedObject.uid"] == "u1" and fields["involvedObject.resourceVersion"] == ""
    assert (
        fields["source"] == "kubelet"
        and fields["reason"] == "Pulled"
        and fields["type"] == "Normal"
    )
    describe = selectors.parse_field_selector(
        "involvedObject.uid=u1,involvedObject.name=p,involvedObject.namespace=default", "Event"
    )
    assert describe.matches(fields)
    new_style = {
        "metadata": {"name": "e"},
        "regarding": {"kind": "Node", "name": "n"},
        "reportingController": "ctl",
    }
    fields = selectors.object_fields("Event", new_style)
    assert (fields["involvedObject.kind"], fields["source"], fields["reportingComponent"]) == (
        "Node",
        "ctl",
        "ctl",
    )
    assert selectors.object_fields("Secret", {"type": "Opaque"})["type"] == "Opaque"
    assert (
        selectors.object_fields("Namespace", {"status": {"phase": "Active"}})["status.phase"]
        == "Active"
    )
    assert (
        selectors.object_fields("Node", {"spec": {"unschedulable": True}})["spec.unschedulable"]
        == "true"
    )
    assert selectors.object_fields("Node", {})["spec.unschedulable"] == "false"
    assert (
        selectors.object_fields("ReplicaSet", {"status": {"replicas": 3}})["status.replicas"] == "3"
    )
    assert selectors.object_fields("ReplicationController", {})["status.replicas"] == "0"
    assert selectors.object_fields("Job", {"status": {"succeeded": 1}})["status.successful"] == "1"
    assert set(selectors.object_fields("ConfigMap", {})) == {"metadata.name", "metadata.namespace"}


def test_supported_fields_match_object_fields() -> None:
    for kind in (
        "Pod",
        "Event",
        "Secret",
        "Namespace",
        "Node",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "ConfigMap",
    ):
        assert set(selectors.object_fields(kind, {})) == selectors.supported_fields(kind)
