"""Label and field selectors: parse, validate, match, render.

Label selectors mirror apimachinery ``pkg/labels/selector.go``: a small lexer
(identifiers, ``in``/``notin`` keywords, the symbols ``= == != ! ( ) , < >``)
feeds a recursive-descent parser; requirements are validated as
``labels.NewRequirement`` does and kept sorted by key, so ``str()`` gives the
canonical form apiserver prints (``Scale.status.selector``). Errors are
:class:`microkube.errors.BadRequest` with upstream's wording, e.g.
``unable to parse requirement: <nil>: Invalid value: "-a": ...``.

The structured ``metav1.LabelSelector`` converts as
``LabelSelectorAsSelector``: ``None`` selects nothing, ``{}`` everything.

Field selectors (``a=b,c!=d`` with ``\\,`` ``\\=`` ``\\\\`` escapes) mirror
``pkg/fields/selector.go``. Which fields a kind can be selected on is data:
:func:`object_fields` computes them for an object (as each registry
strategy's ``GetAttrs``), and :meth:`FieldSelector.for_kind` refuses the
rest with ``field label not supported: X``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from microkube import errors

# ---------------------------------------------------------------- labels

EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "in", "notin", "exists", "!"
GREATER_THAN, LESS_THAN = "gt", "lt"

_STRUCTURED_OPERATORS = {
    "In": IN,
    "NotIn": NOT_IN,
    "Exists": EXISTS,
    "DoesNotExist": DOES_NOT_EXIST,
}
_RENDER = {
    EQUALS: "=",
    DOUBLE_EQUALS: "==",
    NOT_EQUALS: "!=",
    IN: " in ",
    NOT_IN: " notin ",
    GREATER_THAN: ">",
    LESS_THAN: "<",
}


@dataclass(frozen=True)
class Requirement:
    """One ``key op values`` term; build with :func:`requirement` to validate."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Mirrors ``Requirement.Matches``."""
        present = self.key in labels
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if op == EXISTS:
            return present
        if op == DOES_NOT_EXIST:
            return not present
        if op in (GREATER_THAN, LESS_THAN) and present and len(self.values) == 1:
            have, want = _int64(labels[self.key]), _int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        prefix = "!" if self.operator == DOES_NOT_EXIST else ""
        if self.operator in (EXISTS, DOES_NOT_EXIST):
            return prefix + self.key
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if self.operator in (IN, NOT_IN):
            values = f"({values})"
        return f"{self.key}{_RENDER[self.operator]}{values}"


class _ParseError(Exception):
    """A requirement-level problem; callers add their own prefix."""


def requirement(key: str, operator: str, values: list[str] | tuple[str, ...] = ()) -> Requirement:
    """Validate and build a requirement (``labels.NewRequirement``).

    Raises:
        errors.BadRequest: invalid key, value, or value count for the operator.
    """
    try:
        return _new_requirement(key, operator, list(values))
    except _ParseError as exc:
        raise errors.BadRequest(str(exc)) from None


_COUNT_RULES = {
    IN: (lambda n: n == 0, "for 'in', 'notin' operators, values set can't be empty"),
    NOT_IN: (lambda n: n == 0, "for 'in', 'notin' operators, values set can't be empty"),
    EQUALS: (lambda n: n != 1, "exact-match compatibility requires one single value"),
    DOUBLE_EQUALS: (lambda n: n != 1, "exact-match compatibility requires one single value"),
    NOT_EQUALS: (lambda n: n != 1, "exact-match compatibility requires one single value"),
    EXISTS: (lambda n: n != 0, "values set must be empty for exists and does not exist"),
    DOES_NOT_EXIST: (lambda n: n != 0, "values set must be empty for exists and does not exist"),
    GREATER_THAN: (lambda n: n != 1, "for 'Gt', 'Lt' operators, exactly one value is required"),
    LESS_THAN: (lambda n: n != 1, "for 'Gt', 'Lt' operators, exactly one value is required"),
}


def _new_requirement(key: str, operator: str, values: list[str]) -> Requirement:
    problems: list[str] = []
    key_errors = _qualified_name_errors(key)
    if key_errors:
        problems.append(_invalid("key", key, "; ".join(key_errors)))
    rule = _COUNT_RULES.get(operator)
    if rule is None:
        problems.append(f'operator: Unsupported value: "{operator}"')
    elif rule[0](len(values)):
        problems.append(_invalid("values", values, rule[1]))
    if operator in (GREATER_THAN, LESS_THAN):
        for i, v in enumerate(values):
            if _int64(v) is None:
                detail = "for 'Gt', 'Lt' operators, the value must be an integer"
                problems.append(_invalid(f"values[{i}]", v, detail))
    for i, v in enumerate(values):
        value_errors = _label_value_errors(v)
        if value_errors:
            problems.append(_invalid(f"values[{i}][{key}]", v, "; ".join(value_errors)))
    if problems:
        unique = list(dict.fromkeys(problems))  # Aggregate de-duplicates messages
        raise _ParseError(unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]")
    return Requirement(key, operator, tuple(values))


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; ``nothing`` selects no object at all."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def none(cls) -> LabelSelector:
        return cls(nothing=True)

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the string form (``labels.Parse``); "" selects everything."""
        return cls(_sorted(_Parser(text).parse()))

    @classmethod
    def from_structured(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """Convert a ``metav1.LabelSelector`` (``LabelSelectorAsSelector``)."""
        if selector is None:
            return cls.none()
        match_labels = selector.get("matchLabels") or {}
        expressions = selector.get("matchExpressions") or []
        reqs = [requirement(str(k), EQUALS, [str(v)]) for k, v in match_labels.items()]
        for expr in expressions:
            op = _STRUCTURED_OPERATORS.get(expr.get("operator", ""))
            if op is None:
                raise errors.BadRequest(
                    f'"{expr.get("operator", "")}" is not a valid label selector operator'
                )
            reqs.append(
                requirement(
                    str(expr.get("key", "")), op, [str(v) for v in expr.get("values") or []]
                )
            )
        return cls(_sorted(reqs))

    @property
    def empty(self) -> bool:
        """True when it selects everything."""
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def parse_label_selector(text: str | None) -> LabelSelector:
    """The ``labelSelector`` query parameter; missing or "" selects everything."""
    return LabelSelector.parse(text or "")


def _sorted(reqs: list[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(reqs, key=lambda r: r.key))


def _int64(text: str) -> int | None:
    try:
        value = int(text, 10)
    except ValueError:
        return None
    if text.strip() != text or "_" in text or not -(2**63) <= value < 2**63:
        return None
    return value


# ---------------------------------------------------------------- fields


@dataclass(frozen=True)
class FieldRequirement:
    """``field=value`` (also written ``==``) or ``field!=value``."""

    field: str
    operator: str  # EQUALS or NOT_EQUALS
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        equal = fields.get(self.field, "") == self.value
        return equal if self.operator == EQUALS else not equal

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{_escape(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field requirements (``fields.Selector``)."""

    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        """Parse as ``fields.ParseSelector``; "" selects everything.

        Raises:
            errors.BadRequest: a term without an operator or a bad escape.
        """
        reqs = []
        for part in sorted(_split_terms(text)):
            if not part:
                continue
            for i in range(len(part)):
                op = next((o for o in ("!=", "==", "=") if part.startswith(o, i)), None)
                if op is not None:
                    lhs, rhs = part[:i], part[i + len(op) :]
                    break
            else:
                raise errors.BadRequest(f"invalid selector: '{text}'; can't understand '{part}'")
            reqs.append(FieldRequirement(lhs, NOT_EQUALS if op == "!=" else EQUALS, _unescape(rhs)))
        return cls(tuple(reqs))

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def for_kind(self, kind: str) -> FieldSelector:
        """Check every field is selectable on ``kind``; apply upstream aliases.

        Raises:
            errors.BadRequest: ``field label not supported: X`` (apiserver's words).
        """
        supported = supported_fields(kind)
        aliases = _ALIASES.get(kind, {})
        out = []
        for r in self.requirements:
            name = aliases.get(r.field, r.field)
            if name not in supported:
                raise errors.BadRequest(f"field label not supported: {r.field}")
            out.append(FieldRequirement(name, r.operator, r.value))
        return FieldSelector(tuple(out))

    def required_value(self, field: str) -> str | None:
        """The value an ``=`` term demands of ``field`` (e.g. to look up by name)."""
        for r in self.requirements:
            if r.field == field and r.operator == EQUALS:
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def parse_field_selector(text: str | None, kind: str | None = None) -> FieldSelector:
    """The ``fieldSelector`` query parameter, validated for ``kind`` if given."""
    selector = FieldSelector.parse(text or "")
    return selector.for_kind(kind) if kind is not None else selector


_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
_KIND_FIELDS: dict[str, frozenset[str]] = {
    "Pod": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "Event": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    "Secret": frozenset({"type"}),
    "Namespace": frozenset({"status.phase"}),
    "Node": frozenset({"spec.unschedulable"}),
    "ReplicaSet": frozenset({"status.replicas"}),
    "ReplicationController": frozenset({"status.replicas"}),
    "Job": frozenset({"status.successful"}),
}
# Old spellings apiserver still accepts (pkg/apis/core/v1/conversion.go).
_ALIASES: dict[str, dict[str, str]] = {"Pod": {"spec.host": "spec.nodeName"}}


def supported_fields(kind: str) -> frozenset[str]:
    """Field labels ``kind`` can be selected on."""
    return _COMMON_FIELDS | _KIND_FIELDS.get(kind, frozenset())


def object_fields(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The selectable fields of ``obj`` (each registry strategy's ``GetAttrs``)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    fields = {
        "metadata.name": str(meta.get("name") or ""),
        "metadata.namespace": str(meta.get("namespace") or ""),
    }
    if kind == "Pod":
        pod_ips = status.get("podIPs") or []
        first_ip = pod_ips[0].get("ip") if pod_ips and isinstance(pod_ips[0], dict) else None
        fields.update(
            {
                "spec.nodeName": _str(spec.get("nodeName")),
                "spec.restartPolicy": _str(spec.get("restartPolicy")),
                "spec.schedulerName": _str(spec.get("schedulerName")),
                "spec.serviceAccountName": _str(spec.get("serviceAccountName")),
                "spec.hostNetwork": _bool(spec.get("hostNetwork")),
                "status.phase": _str(status.get("phase")),
                "status.podIP": _str(first_ip or status.get("podIP")),
                "status.nominatedNodeName": _str(status.get("nominatedNodeName")),
            }
        )
    elif kind == "Event":
        # core/v1 names; events.k8s.io/v1 spells them regarding/reportingController.
        involved = obj.get("involvedObject") or obj.get("regarding") or {}
        reporting = _str(obj.get("reportingComponent") or obj.get("reportingController"))
        source = (obj.get("source") or obj.get("deprecatedSource") or {}).get("component")
        for name in (
            "kind",
            "namespace",
            "name",
            "uid",
            "apiVersion",
            "resourceVersion",
            "fieldPath",
        ):
            fields[f"involvedObject.{name}"] = _str(involved.get(name))
        fields.update(
            {
                "reason": _str(obj.get("reason")),
                "reportingComponent": reporting,
                "source": _str(source) or reporting,
                "type": _str(obj.get("type")),
            }
        )
    elif kind == "Secret":
        fields["type"] = _str(obj.get("type"))
    elif kind == "Namespace":
        fields["status.phase"] = _str(status.get("phase"))
    elif kind == "Node":
        fields["spec.unschedulable"] = _bool(spec.get("unschedulable"))
    elif kind in ("ReplicaSet", "ReplicationController"):
        fields["status.replicas"] = str(int(status.get("replicas") or 0))
    elif kind == "Job":
        fields["status.successful"] = str(int(status.get("succeeded") or 0))
    return fields


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _bool(value: Any) -> str:
    return "true" if value is True else "false"


def _split_terms(text: str) -> list[str]:
    """Split on commas not escaped by a backslash (escapes kept)."""
    if not text:
        return []
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _unescape(value: str) -> str:
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise errors.BadRequest(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            raise errors.BadRequest(f"invalid field selector: unescaped character in value: {c}")
        else:
            out.append(c)
    if in_slash:
        raise errors.BadRequest("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


# ---------------------------------------------------------------- label syntax

_QUALIFIED_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_QUALIFIED_RE = re.compile(_QUALIFIED_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_QUALIFIED_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)
_DNS1123_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """apimachinery validation.RegexError, double spaces included."""
    quoted = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {quoted}regex used for validation is '{fmt}')"


def _qualified_name_errors(value: str) -> list[str]:
    """validation.IsQualifiedName."""
    problems: list[str] = []
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_MSG, _QUALIFIED_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                problems.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
                problems.append(
                    "prefix part "
                    + _regex_error(_DNS1123_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com")
                )
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if not _QUALIFIED_RE.fullmatch(name):
        problems.append(
            "name part "
            + _regex_error(_QUALIFIED_MSG, _QUALIFIED_FMT, "MyName", "my.name", "123-abc")
        )
    return problems


def _label_value_errors(value: str) -> list[str]:
    """validation.IsValidLabelValue."""
    problems: list[str] = []
    if len(value) > 63:
        problems.append("must be no more than 63 characters")
    if value and not _QUALIFIED_RE.fullmatch(value):
        problems.append(
            _regex_error(_LABEL_VALUE_MSG, f"({_QUALIFIED_FMT})?", "MyValue", "my_value", "12345")
        )
    return problems


def _invalid(field: str, value: Any, detail: str) -> str:
    """field.Invalid(...).Error(): strings quoted, lists as JSON."""
    return f"{field}: Invalid value: {json.dumps(value, separators=(',', ':'))}: {detail}"


# Tokens of the label-selector lexer (selector.go's Token constants).
_IDENT, _EOS, _ERROR = "identifier", "end of string", "error"
_IN_T, _NOTIN_T = "in", "notin"
_OPEN, _CLOSE, _COMMA, _NOT = "(", ")", ",", "!"
_SYMBOLS = {"=": EQUALS, "==": DOUBLE_EQUALS, "!=": NOT_EQUALS, ">": GREATER_THAN, "<": LESS_THAN}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[str, str]]:
    """Split into (token, literal) pairs, ending with end-of-string."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append((_EOS, ""))
            return tokens
        start = i
        if text[i] in _SPECIAL:
            longest = ""
            while i < n and text[i] in _SPECIAL:  # longest run that is still a symbol
                candidate = text[start : i + 1]
                if candidate in _SYMBOLS or candidate in (_OPEN, _CLOSE, _COMMA, _NOT):
                    longest = candidate
                    i += 1
                else:
                    break
            tokens.append((_SYMBOLS.get(longest, longest), longest))
            continue
        while i < n and text[i] not in _WHITESPACE and text[i] not in _SPECIAL:
            i += 1
        word = text[start:i]
        tokens.append((word if word in (_IN_T, _NOTIN_T) else _IDENT, word))


class _Parser:
    """Recursive descent over the tokens, as selector.go's Parser."""

    def __init__(self, text: str) -> None:
        self._tokens = _lex(text)
        self._pos = 0

    def _look(self, *, values: bool = True) -> tuple[str, str]:
        tok, lit = self._tokens[self._pos]
        if values and tok in (_IN_T, _NOTIN_T):
            tok = _IDENT  # in value context the keywords are plain words
        return tok, lit

    def _consume(self, *, values: bool = True) -> tuple[str, str]:
        found = self._look(values=values)
        self._pos = min(self._pos + 1, len(self._tokens) - 1)
        return found

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self._look()
            if tok == _EOS:
                return reqs
            if tok not in (_IDENT, _NOT):
                raise errors.BadRequest(
                    f"found '{lit}', expected: !, identifier, or 'end of string'"
                )
            try:
                reqs.append(self._requirement())
            except _ParseError as exc:
                raise errors.BadRequest(f"unable to parse requirement: {exc}") from None
            tok, lit = self._consume()
            if tok == _EOS:
                return reqs
            if tok != _COMMA:
                raise errors.BadRequest(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self._look()
            if tok not in (_IDENT, _NOT):
                raise errors.BadRequest(f"found '{lit}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        operator = ""
        tok, key = self._consume()
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, key = self._consume()
        if tok != _IDENT:
            raise _ParseError(f"found '{key}', expected: identifier")
        key_errors = _qualified_name_errors(key)
        if key_errors:
            raise _ParseError(_invalid("<nil>", key, "; ".join(key_errors)))
        if operator == DOES_NOT_EXIST:
            return _new_requirement(key, DOES_NOT_EXIST, [])
        if self._look()[0] in (_EOS, _COMMA):
            return _new_requirement(key, EXISTS, [])
        tok, lit = self._consume(values=False)
        operators = {_IN_T: IN, _NOTIN_T: NOT_IN, **{v: v for v in _SYMBOLS.values()}}
        if tok not in operators:
            raise _ParseError(f"found '{lit}', expected: in, notin, =, ==, !=, gt, lt")
        operator = operators[tok]
        values = self._values() if operator in (IN, NOT_IN) else self._exact_value()
        return _new_requirement(key, operator, sorted(values))

    def _values(self) -> set[str]:
        tok, lit = self._consume()
        if tok != _OPEN:
            raise _ParseError(f"found '{lit}' expected: '('")
        tok, lit = self._look()
        if tok == _CLOSE:
            self._consume()
            return {""}
        if tok not in (_IDENT, _COMMA):
            raise _ParseError(f"found '{lit}', expected: ',', ')' or identifier")
        found: set[str] = set()
        while True:
            tok, word = self._consume()
            if tok == _IDENT:
                found.add(word)
                nxt, nxt_lit = self._look()
                if nxt == _CLOSE:
                    break
                if nxt != _COMMA:
                    raise _ParseError(f"found '{nxt_lit}', expected: ',' or ')'")
            elif tok == _COMMA:  # "(,", ",,", ",)" each stand for an empty value
                if not found:
                    found.add("")
                nxt, _ = self._look()
                if nxt == _CLOSE:
                    found.add("")
                    break
                if nxt == _COMMA:
                    self._consume()
                    found.add("")
            else:
                raise _ParseError(f"found '{word}', expected: ',', or identifier")
        if self._consume()[0] != _CLOSE:
            raise _ParseError(f"found '{lit}', expected: ')'")
        return found

    def _exact_value(self) -> set[str]:
        if self._look()[0] in (_EOS, _COMMA):
            return {""}
        tok, lit = self._consume()
        if tok != _IDENT:
            raise _ParseError(f"found '{lit}', expected: identifier")
        return {lit}
