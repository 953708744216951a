"""The three patch types of the PATCH verb, as pure functions over dicts.

=============================================  ==========================
Content-Type                                   function
=============================================  ==========================
``application/json-patch+json``                :func:`json_patch`
``application/merge-patch+json``               :func:`merge_patch`
``application/strategic-merge-patch+json``     :func:`strategic_merge_patch`
=============================================  ==========================

Each returns a new object and never mutates its arguments, so a failed patch
leaves the caller's copy untouched and dry-run needs no extra care. Errors
are the ones apiserver's ``staging/.../endpoints/handlers/patch.go`` gives:
an undecodable patch is 400 BadRequest; a JSON patch that decodes but does
not apply (failed ``test``, missing path) is 422 Invalid with the generic
message "the server rejected our request due to an error in our request".

Strategic merge lives in :mod:`microkube.objects.strategicmerge` (it is most
of the code); it is re-exported here so callers need one import. Server-side
apply is not here: it needs field managers, not just a merge.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

from microkube import errors
from microkube.objects.strategicmerge import SchemaResolver, strategic_merge_patch

__all__ = ["SchemaResolver", "json_patch", "merge_patch", "strategic_merge_patch"]

MAX_JSON_PATCH_OPERATIONS = 10000
"""apiserver's ``maxJSONPatchOperations``: longer JSON patches are refused."""

_REJECTED = "the server rejected our request due to an error in our request"


def json_patch(obj: Mapping[str, Any], ops: Any) -> dict[str, Any]:
    """Apply an RFC 6902 JSON patch.

    Args:
        obj: the current object (not modified).
        ops: the decoded patch: a list of operation objects.

    Raises:
        errors.BadRequest: ``ops`` is not a list of objects, or is too long.
        errors.Invalid: an operation fails (mirrors apiserver's 422).
    """
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise errors.BadRequest(
            f"json: cannot unmarshal {_json_type(ops)} into Go value of type jsonpatch.Patch"
        )
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise errors.BadRequest(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(ops)}"
        )
    try:
        result = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(dict(obj)), in_place=True)
    except (
        jsonpatch.JsonPatchException,
        jsonpointer.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
    ) as exc:
        raise errors.Invalid(_REJECTED) from exc
    if not isinstance(result, dict):
        raise errors.Invalid(_REJECTED)
    return result


def merge_patch(obj: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    """Apply an RFC 7386 JSON merge patch: maps merge, null deletes, lists replace.

    Raises:
        errors.BadRequest: the patch is not a JSON object.
    """
    if not isinstance(patch, dict):
        raise errors.BadRequest(
            f"json: cannot unmarshal {_json_type(patch)} into Go value of type map[string]interface {{}}"
        )
    result = copy.deepcopy(dict(obj))
    _merge_into(result, patch)
    return result


def _merge_into(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            if not isinstance(current, dict):
                current = {}
            _merge_into(current, value)
            target[key] = current
        else:
            target[key] = copy.deepcopy(value)


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number"
