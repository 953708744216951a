"""matchConditions: CEL expressions over the AdmissionRequest (webhooks and policies).

Mirrors ``k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions``:
the variables are ``object``, ``oldObject`` and ``request`` (the
AdmissionRequest as the webhook would see it); every condition must be
true for the webhook to be called.  A false condition skips the webhook; an
evaluation error is handled by the webhook's failurePolicy.  The CEL
library functions are those of :mod:`microkube.resources.celrules`.
"""

from __future__ import annotations

import functools
from typing import Any

_VARIABLES = ("object", "oldObject", "request", "params", "namespaceObject")


class ConditionError(Exception):
    """A matchCondition could not be evaluated (its text is upstream-shaped)."""


@functools.cache
def _env() -> Any:
    import celpy

    return celpy.Environment()


@functools.lru_cache(maxsize=1024)
def _compile(expr: str) -> Any:
    import celpy

    from microkube.resources import celrules

    try:
        ast = _env().compile(expr)
    except celpy.CELParseError as exc:
        return f"compilation failed: {exc.args[0] if exc.args else exc}"
    for tree in ast.iter_subtrees():
        if tree.data == "ident":
            name = str(tree.children[0])
            if name not in _VARIABLES and name not in ("true", "false", "null"):
                if name in ("int", "uint", "double", "string", "bytes", "bool", "list", "map", "type",
                            "duration", "timestamp", "dyn", "null_type"):  # fmt: skip
                    continue
                if name == "authorizer":
                    return "compilation failed: authorizer is not supported by microkube"
                return f"compilation failed: ERROR: <input>: undeclared reference to '{name}'"
    return _env().program(ast, functions=celrules._functions())  # noqa: SLF001


def compile_error(expr: str) -> str:
    """Upstream-shaped compile error text, or "" when ``expr`` compiles."""
    got = _compile(expr)
    return got if isinstance(got, str) else ""


def evaluate(expr: str, variables: dict[str, Any]) -> bool:
    """Evaluate one condition over plain JSON ``variables``; raises ConditionError."""
    import celpy

    prog = _compile(expr)
    if isinstance(prog, str):
        raise ConditionError(prog)
    activation = {k: celpy.json_to_cel(v) for k, v in variables.items()}
    try:
        result = prog.evaluate(activation)
    except celpy.CELEvalError as exc:
        raise ConditionError(str(exc.args[0] if exc.args else exc)) from exc
    except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError) as exc:
        raise ConditionError(str(exc)) from exc
    if isinstance(result, celpy.CELEvalError):
        raise ConditionError(str(result.args[0] if result.args else result))
    if not isinstance(result, bool | celpy.celtypes.BoolType):
        raise ConditionError(
            f"matchCondition expression must evaluate to bool, got {type(result).__name__}"
        )
    return bool(result)
