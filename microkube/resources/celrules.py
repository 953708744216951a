"""CEL validation rules of CRD schemas (``x-kubernetes-validations``).

Mirrors apiextensions-apiserver's ``pkg/apiserver/schema/cel``: every schema
node may carry rules; a rule is evaluated with ``self`` bound to the node's
value (typed by the schema: ``number`` is a double even when written as
``1``, ``format: duration``/``date-time`` strings are durations/timestamps)
and, for *transition rules* that mention ``oldSelf``, to the old value of the
same node on update.  Old values are found the way upstream correlates them:
through object properties and map values, and through ``listType: map``
items by their keys; a transition rule is skipped where there is no old value.
Errors of rules that do not use ``oldSelf`` are ratcheted (dropped) when the
value did not change, as with upstream's CRDValidationRatcheting.

A failed rule becomes the field error upstream's ``validateExpressions``
builds::

    spec: Invalid value: "object": failed rule: self.min <= self.max
    spec.max: Invalid value: "object": max must be at least min    (message, fieldPath)
    spec: Forbidden: ...                                           (reason FieldValueForbidden)
    <nil>: Invalid value: "object": ...                            (a rule at the root)

Expressions run on `cel-python <https://github.com/cloud-custodian/cel-python>`_
(``celpy``) with the parts of the Kubernetes CEL library that map onto it
(strings: ``charAt``, ``indexOf``, ``lastIndexOf``, ``lowerAscii``,
``upperAscii``, ``replace``, ``split``, ``substring``, ``trim``, ``join``,
``reverse``; lists: ``isSorted``, ``sum``, ``min``, ``max``, ``indexOf``,
``lastIndexOf``; regex: ``find``, ``findAll``; ``isURL``; ``quantity``,
``isQuantity`` and the comparison methods of quantities).  Not available: the
optional syntax (``?.``, ``optional.of``), ``format``, the ``sets`` and
``ip``/``cidr`` libraries, and cost budgets.  ``celpy`` is imported on first
use only: it costs ~0.3 s and most clusters have no rules.
"""

from __future__ import annotations

import functools
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from microkube import errors

Schema = dict[str, Any]
NOT_CHECKED = errors.Cause(
    "FieldValueInvalid",
    'Invalid value: "null": some validation rules were not checked because the object was '
    "invalid; correct the existing errors to complete validation",
    "<nil>",
)
_REASONS = ("FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate")


@dataclass(frozen=True)
class _Compiled:
    program: Any
    uses_old_self: bool


# --- compiling -------------------------------------------------------------------------


@functools.cache
def _env() -> Any:
    import celpy

    return celpy.Environment()


@functools.lru_cache(maxsize=1024)
def _compile(expr: str) -> _Compiled | str:
    """The program for ``expr``, or upstream-shaped compile error text."""
    import celpy

    try:
        ast = _env().compile(expr)
    except celpy.CELParseError as exc:
        where = _position(str(exc.args[0]) if exc.args else "")
        return f"compilation failed: ERROR: <input>:{where}: Syntax error: {_syntax(exc)}"
    declared = {"self", "oldSelf", *_TYPE_NAMES}
    idents = []
    for tree in ast.iter_subtrees():
        if tree.data == "ident":
            idents.append(tree.children[0])
        elif tree.data in ("member_dot_arg", "ident_arg"):
            fn = tree.children[1] if tree.data == "member_dot_arg" else tree.children[0]
            if str(fn) not in _known_functions():
                return _undeclared(fn)
            if str(fn) in _MACROS and len(tree.children) > 2:
                declared.add(_ident_of(tree.children[2].children[0]))
    for tok in idents:
        if str(tok) not in declared:
            return _undeclared(tok)
    program = _env().program(ast, functions=_functions())
    return _Compiled(program, any(str(t) == "oldSelf" for t in idents))


_MACROS = ("all", "exists", "exists_one", "map", "filter")
_TYPE_NAMES = ("int", "uint", "double", "string", "bytes", "bool", "list", "map", "type",
               "null_type", "duration", "timestamp", "dyn")  # fmt: skip


def _undeclared(tok: Any) -> str:
    where = f"{getattr(tok, 'line', 1)}:{getattr(tok, 'column', 1)}"
    return f"compilation failed: ERROR: <input>:{where}: undeclared reference to '{tok}' (in container '')"


def _ident_of(tree: Any) -> str:
    """The identifier an expression tree consists of, or ""."""
    while hasattr(tree, "children") and len(tree.children) == 1:
        if tree.data == "ident":
            return str(tree.children[0])
        tree = tree.children[0]
    return ""


def _position(text: str) -> str:
    lines = text.split("\n")
    col = lines[1].index("^") + 1 if len(lines) > 1 and "^" in lines[1] else 1
    return f"1:{col}"


def _syntax(exc: Exception) -> str:
    cause = exc.__cause__ or exc.__context__
    token = getattr(cause, "token", None)
    if token is not None and getattr(token, "type", "") == "$END":
        return "mismatched input '<EOF>'"
    if token is not None:
        return f"mismatched input '{token}'"
    return "invalid expression"


# --- the Kubernetes CEL library ------------------------------------------------------------


def _functions() -> dict[str, Any]:
    from celpy import celtypes as ct

    def s(v: Any) -> Any:
        return ct.StringType(v)

    def char_at(text: str, i: int) -> Any:
        if i < 0 or i > len(text):
            raise ValueError(f"index out of range: {i}")
        return s(text[i : i + 1])

    def index_of(target: Any, what: Any, start: int = 0) -> Any:
        if isinstance(target, list):
            return ct.IntType(next((i for i, x in enumerate(target) if x == what), -1))
        if start < 0 or start > len(target):
            raise ValueError(f"index out of range: {start}")
        return ct.IntType(target.find(what, start))

    def last_index_of(target: Any, what: Any, end: int | None = None) -> Any:
        if isinstance(target, list):
            found = [i for i, x in enumerate(target) if x == what]
            return ct.IntType(found[-1] if found else -1)
        if end is None:
            return ct.IntType(target.rfind(what))
        if end < 0 or end > len(target):
            raise ValueError(f"index out of range: {end}")
        return ct.IntType(target.rfind(what, 0, end + len(what)))

    def ascii_map(text: str, upper: bool) -> Any:
        src, dst = ("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        table = str.maketrans(src, dst) if upper else str.maketrans(dst, src)
        return s(text.translate(table))

    def replace(text: str, old: str, new: str, n: int = -1) -> Any:
        return s(text.replace(old, new, int(n)))

    def split(text: str, sep: str, n: int = -1) -> Any:
        if n == 0:
            return ct.ListType([])
        parts = list(text) if sep == "" else text.split(sep, int(n) - 1 if n > 0 else -1)
        if sep == "" and n > 0 and len(parts) > n:
            parts = parts[: n - 1] + ["".join(parts[n - 1 :])]
        return ct.ListType([s(p) for p in parts])

    def substring(text: str, start: int, end: int | None = None) -> Any:
        end = len(text) if end is None else end
        if start < 0 or end > len(text) or start > end:
            raise ValueError(f"index out of range: {start if start < 0 or start > end else end}")
        return s(text[start:end])

    def join(items: list[Any], sep: str = "") -> Any:
        return s(sep.join(str(i) for i in items))

    def sorted_(items: list[Any]) -> Any:
        return ct.BoolType(all(items[i] <= items[i + 1] for i in range(len(items) - 1)))

    def sum_(items: list[Any]) -> Any:
        if not items:
            return ct.IntType(0)
        total = items[0]
        for x in items[1:]:
            total = total + x
        return total

    def min_(items: list[Any]) -> Any:
        if not items:
            raise ValueError("min(list) argument must not be empty")
        return min(items)

    def max_(items: list[Any]) -> Any:
        if not items:
            raise ValueError("max(list) argument must not be empty")
        return max(items)

    def find(text: str, pattern: str) -> Any:
        m = re.search(pattern, text)
        return s(m.group(0) if m else "")

    def find_all(text: str, pattern: str, n: int = -1) -> Any:
        found = [m.group(0) for m in re.finditer(pattern, text)]
        return ct.ListType([s(f) for f in (found if n < 0 else found[: int(n)])])

    def is_url(text: str) -> Any:
        try:
            parsed = urllib.parse.urlparse(text)
        except ValueError:
            return ct.BoolType(False)
        return ct.BoolType(bool(parsed.scheme) and (bool(parsed.netloc) or text.startswith("/")))

    return {
        "charAt": char_at,
        "indexOf": index_of,
        "lastIndexOf": last_index_of,
        "lowerAscii": lambda t: ascii_map(t, False),
        "upperAscii": lambda t: ascii_map(t, True),
        "replace": replace,
        "split": split,
        "substring": substring,
        "trim": lambda t: s(t.strip()),
        "join": join,
        "reverse": lambda t: s(t[::-1]),
        "isSorted": sorted_,
        "sum": sum_,
        "min": min_,
        "max": max_,
        "find": find,
        "findAll": find_all,
        "isURL": is_url,
        **_quantity_functions(),
    }


def _quantity_functions() -> dict[str, Any]:
    from celpy import celtypes as ct

    from microkube.objects import quantity

    class Quantity(ct.StringType):
        """A resource.Quantity value (kept as its text; compared exactly)."""

        def value(self) -> Any:
            return quantity.parse(str(self))

    def parse(text: str) -> Any:
        try:
            quantity.parse(str(text))
        except (ValueError, ArithmeticError) as exc:
            raise ValueError(str(exc)) from exc
        return Quantity(text)

    def is_quantity(text: str) -> Any:
        try:
            quantity.parse(str(text))
        except (ValueError, ArithmeticError):
            return ct.BoolType(False)
        return ct.BoolType(True)

    def cmp(a: Any, b: Any) -> int:
        x, y = Quantity(a).value(), Quantity(b).value()
        return (x > y) - (x < y)

    return {
        "quantity": parse,
        "isQuantity": is_quantity,
        "compareTo": lambda a, b: ct.IntType(cmp(a, b)),
        "isGreaterThan": lambda a, b: ct.BoolType(cmp(a, b) > 0),
        "isLessThan": lambda a, b: ct.BoolType(cmp(a, b) < 0),
        "asInteger": lambda a: ct.IntType(int(Quantity(a).value())),
        "asApproximateFloat": lambda a: ct.DoubleType(float(Quantity(a).value())),
        "isInteger": lambda a: ct.BoolType(Quantity(a).value().denominator == 1),
        "sign": lambda a: ct.IntType(cmp(a, "0")),
    }


@functools.cache
def _known_functions() -> frozenset[str]:
    builtin = {
        "size", "contains", "startsWith", "endsWith", "matches", "has", "all", "exists",
        "exists_one", "map", "filter", "int", "uint", "double", "string", "bytes", "bool",
        "type", "duration", "timestamp", "dyn", "getDate", "getDayOfMonth", "getDayOfWeek",
        "getDayOfYear", "getFullYear", "getMonth", "getHours", "getMilliseconds",
        "getMinutes", "getSeconds",
    }  # fmt: skip
    return frozenset(builtin | set(_functions()))


# --- values as CEL sees them ---------------------------------------------------------


def _to_cel(value: Any, schema: Schema, *, root: bool = False) -> Any:
    """``value`` typed by ``schema`` (mirrors ``UnstructuredToVal``)."""
    from celpy import adapter
    from celpy import celtypes as ct

    if value is None:
        return None
    typ = schema.get("type")
    if isinstance(value, bool):
        return ct.BoolType(value)
    if isinstance(value, int | float):
        if typ == "number" or (isinstance(value, float) and not value.is_integer()):
            return ct.DoubleType(float(value))
        return ct.IntType(int(value))
    if isinstance(value, str):
        fmt = schema.get("format")
        try:
            if fmt == "duration":
                return ct.DurationType(value)
            if fmt in ("date-time", "date"):
                return ct.TimestampType(value if fmt == "date-time" else value + "T00:00:00Z")
        except (ValueError, TypeError):
            pass
        return ct.StringType(value)
    if isinstance(value, list):
        items = schema["items"] if isinstance(schema.get("items"), dict) else {}
        return ct.ListType([_to_cel(v, items) for v in value])
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        out = {}
        for k, v in value.items():
            if root and k == "metadata":
                meta = {m: v[m] for m in ("name", "generateName") if isinstance(v, dict) and m in v}
                out[ct.StringType(k)] = adapter.json_to_cel(meta)
            elif k in props:
                out[ct.StringType(k)] = _to_cel(v, props[k])
            elif isinstance(addl, dict):
                out[ct.StringType(k)] = _to_cel(v, addl)
            elif root and k in ("apiVersion", "kind"):
                out[ct.StringType(k)] = ct.StringType(str(v))
            else:
                out[ct.StringType(k)] = adapter.json_to_cel(v)
        return ct.MapType(out)
    return adapter.json_to_cel(value)


# --- evaluating ----------------------------------------------------------------------


def has_rules(schema: Any) -> bool:
    """Whether any node of ``schema`` carries ``x-kubernetes-validations``."""
    if isinstance(schema, dict):
        if schema.get("x-kubernetes-validations"):
            return True
        return any(
            has_rules(v) for k, v in schema.items() if k not in ("default", "enum", "example")
        )
    if isinstance(schema, list):
        return any(has_rules(v) for v in schema)
    return False


def validate(obj: Any, old: Any, schema: Schema) -> list[errors.Cause]:
    """Every failed rule of ``schema`` for ``obj`` (``old``: the stored object on update)."""
    if not has_rules(schema):
        return []
    out: list[errors.Cause] = []
    _walk(obj, old, schema, schema, "", out, root=True)
    return out


def _walk(
    value: Any,
    old: Any,
    node: Schema,
    rules: Schema,
    path: str,
    out: list[errors.Cause],
    *,
    root: bool = False,
) -> None:
    if value is None:
        return
    _rules(value, old, node, rules, path, out, root=root)
    for sub in rules.get("allOf") or []:
        if isinstance(sub, dict):
            _walk(value, old, node, sub, path, out, root=root)
    if isinstance(value, dict):
        atomic = node.get("x-kubernetes-map-type") == "atomic"
        olds = old if isinstance(old, dict) and not atomic else {}
        props, rprops = node.get("properties") or {}, rules.get("properties") or {}
        addl, raddl = node.get("additionalProperties"), rules.get("additionalProperties")
        for key, sub_value in value.items():
            sub_path = f"{path}.{key}" if path else key
            if key in rprops and key in props:
                _walk(sub_value, olds.get(key), props[key], rprops[key], sub_path, out)
            elif isinstance(raddl, dict) and isinstance(addl, dict):
                _walk(sub_value, olds.get(key), addl, raddl, f"{path}[{key}]", out)
    elif isinstance(value, list):
        items, ritems = node.get("items"), rules.get("items")
        if not isinstance(items, dict) or not isinstance(ritems, dict):
            return
        keys = node.get("x-kubernetes-list-map-keys") or []
        by_key: dict[str, Any] = {}
        if node.get("x-kubernetes-list-type") == "map" and keys and isinstance(old, list):
            for item in old:
                if isinstance(item, dict):
                    by_key[json.dumps([item.get(k) for k in keys])] = item
        for i, item in enumerate(value):
            prev = (
                by_key.get(json.dumps([item.get(k) for k in keys]))
                if by_key and isinstance(item, dict)
                else None
            )
            _walk(item, prev, items, ritems, f"{path}[{i}]", out)


def _rules(
    value: Any,
    old: Any,
    node: Schema,
    rules: Schema,
    path: str,
    out: list[errors.Cause],
    *,
    root: bool,
) -> None:
    specs = rules.get("x-kubernetes-validations") or []
    if not specs:
        return
    typ = str(node.get("type") or "")
    self_val = _to_cel(value, node, root=root)
    old_val = _to_cel(old, node, root=root) if old is not None else None
    for spec in specs:
        if not isinstance(spec, dict) or not spec.get("rule"):
            continue
        rule = str(spec["rule"])
        compiled = _compile(rule)
        where = path or "<nil>"
        if isinstance(compiled, str):
            out.append(_invalid(where, typ, f"rule compile error: {compiled}"))
            continue
        if compiled.uses_old_self and old is None:
            continue  # transition rules need a comparable existing value
        activation = {"self": self_val}
        if compiled.uses_old_self:
            activation["oldSelf"] = old_val
        result, failure = _evaluate(compiled, activation)
        if failure:
            out.append(_invalid(where, typ, f"{failure} evaluating rule: {_rule_text(spec)}"))
            continue
        if result is True:
            continue
        if not compiled.uses_old_self and old is not None and old == value:
            continue  # ratcheting: an unchanged value keeps passing
        field = where
        if spec.get("fieldPath"):
            field = _join_field(path, str(spec["fieldPath"]))
        detail = _message(spec, activation)
        out.append(_reasoned(field, typ, detail, spec.get("reason")))


def _evaluate(compiled: _Compiled, activation: dict[str, Any]) -> tuple[Any, str]:
    import celpy

    try:
        result = compiled.program.evaluate(activation)
    except celpy.CELEvalError as exc:
        return None, _eval_error(exc)
    except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, OverflowError) as exc:
        return None, str(exc)
    if isinstance(result, celpy.CELEvalError):
        return None, _eval_error(result)
    if isinstance(result, celpy.celtypes.BoolType | bool):
        return bool(result), ""
    return None, "no such overload"


def _eval_error(exc: Exception) -> str:
    """cel-go's wording for a runtime error (``no such key: x``, ``division by zero``)."""
    text = str(exc.args[0]) if exc.args else str(exc)
    kind = exc.args[1] if len(exc.args) > 1 else None
    m = re.match(r"no such member in mapping: '(.*)'", text)
    if m:
        return f"no such key: {m.group(1)}"
    if kind is ZeroDivisionError or "divide by zero" in text:
        return (
            "modulus by zero" if "modulus" in text and "divide" not in text else "division by zero"
        )
    if kind is IndexError:
        return "index out of bounds"
    if "no matching overload" in text or "no such overload" in text:
        return "no such overload"
    m = re.match(r"undeclared reference to '([^']*)'", text)
    if m:
        return f"undeclared reference to '{m.group(1)}'"
    inner = exc.args[2] if len(exc.args) > 2 else ()
    if isinstance(inner, tuple) and inner:
        return str(inner[0])
    return text


def _rule_text(spec: Schema) -> str:
    return str(spec.get("message") or spec["rule"]).strip()


def _message(spec: Schema, activation: dict[str, Any]) -> str:
    expr = spec.get("messageExpression")
    if expr:
        compiled = _compile(str(expr))
        if isinstance(compiled, _Compiled):
            try:
                got = compiled.program.evaluate(activation)
            except Exception:  # noqa: BLE001 - fall back to message, like upstream
                got = None
            if isinstance(got, str) and got.strip() and "\n" not in got.strip():
                return got.strip()
    if spec.get("message"):
        return str(spec["message"]).strip()
    return f"failed rule: {_rule_text(spec)}"


def _invalid(field: str, typ: str, detail: str) -> errors.Cause:
    return errors.Cause("FieldValueInvalid", f"Invalid value: {json.dumps(typ)}: {detail}", field)


def _reasoned(field: str, typ: str, detail: str, reason: Any) -> errors.Cause:
    """Mirrors ``fieldErrorForReason``."""
    if reason == "FieldValueForbidden":
        return errors.Cause("FieldValueForbidden", f"Forbidden: {detail}", field)
    if reason == "FieldValueRequired":
        return errors.Cause("FieldValueRequired", f"Required value: {detail}", field)
    if reason == "FieldValueDuplicate":
        return errors.Cause("FieldValueDuplicate", f"Duplicate value: {json.dumps(typ)}", field)
    return _invalid(field, typ, detail)


def _join_field(path: str, field_path: str) -> str:
    """``path`` plus a rule's relative JSON path (``.a.b`` or ``['a.b']``)."""
    rel = field_path.lstrip(".") if field_path.startswith(".") else field_path
    rel = re.sub(r"\['((?:[^'\\]|\\.)*)'\]", lambda m: "[" + m.group(1) + "]", rel)
    if not path:
        return rel
    return f"{path}.{rel}" if not rel.startswith("[") else path + rel


# --- checking a CRD's rules ------------------------------------------------------------


def schema_errors(schema: Any, path: str) -> list[errors.Cause]:
    """What is wrong with the rules of ``schema`` (CRD create/update, mirrors validateCEL)."""
    out: list[errors.Cause] = []
    if has_rules(schema):
        _check(schema, path, out)
    return out


def _check(schema: Schema, path: str, out: list[errors.Cause]) -> None:
    for i, spec in enumerate(schema.get("x-kubernetes-validations") or []):
        base = f"{path}.x-kubernetes-validations[{i}]"
        if not isinstance(spec, dict):
            out.append(errors.invalid_value(base, spec, "must be an object"))
            continue
        rule = spec.get("rule")
        if not rule:
            out.append(errors.required(f"{base}.rule"))
        else:
            compiled = _compile(str(rule))
            if isinstance(compiled, str):
                out.append(errors.invalid_value(f"{base}.rule", str(rule), compiled))
            if "\n" in str(rule) and not spec.get("message") and not spec.get("messageExpression"):
                out.append(
                    errors.Cause(
                        "FieldValueRequired",
                        "Required value: message must be specified if rule contains line breaks",
                        f"{base}.message",
                    )
                )
        msg = spec.get("message")
        if isinstance(msg, str) and "\n" in msg:
            out.append(
                errors.invalid_value(f"{base}.message", msg, "message must not contain line breaks")
            )
        expr = spec.get("messageExpression")
        if expr:
            compiled = _compile(str(expr))
            if isinstance(compiled, str):
                out.append(
                    errors.invalid_value(
                        f"{base}.messageExpression", str(expr), f"messageExpression {compiled}"
                    )
                )
        reason = spec.get("reason")
        if reason is not None and reason not in _REASONS:
            out.append(errors.unsupported_value(f"{base}.reason", reason, list(_REASONS)))
        fp = spec.get("fieldPath")
        if fp:
            problem = _field_path_problem(str(fp), schema)
            if problem:
                out.append(
                    errors.invalid_value(
                        f"{base}.fieldPath", str(fp), f"fieldPath must be a valid path: {problem}"
                    )
                )
    for key, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            _check(sub, f"{path}.properties[{key}]", out)
    if isinstance(schema.get("items"), dict):
        _check(schema["items"], f"{path}.items", out)
    if isinstance(schema.get("additionalProperties"), dict):
        _check(schema["additionalProperties"], f"{path}.additionalProperties", out)
    for i, sub in enumerate(schema.get("allOf") or []):
        if isinstance(sub, dict):
            _check(sub, f"{path}.allOf[{i}]", out)


def _field_path_problem(field_path: str, schema: Schema) -> str:
    """Mirrors ``ValidFieldPath``: only field and map-key steps through the schema."""
    tokens = re.findall(r"\['(?:[^'\\]|\\.)*'\]|\.[^.\[\]]+|\[[^\]]*\]|.", field_path)
    node = schema
    for tok in tokens:
        if tok.startswith("['"):
            name = tok[2:-2]
        elif tok.startswith(".") and len(tok) > 1:
            name = tok[1:]
        elif tok.startswith("["):
            return f"expected single quoted string but got {tok[1:-1]}"
        else:
            return f"expected [ or . but got: {tok}"
        props = node.get("properties")
        if props is not None:
            if name not in props:
                return "does not refer to a valid field"
            node = props[name]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return "does not refer to a valid field"
    return ""
