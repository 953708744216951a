"""Strategies of CustomResourceDefinitions and of the custom objects they define.

``CustomResourceDefinitionStrategy`` mirrors apiextensions-apiserver's
``customresourcedefinition/strategy.go``: defaults (singular, listKind,
conversion ``None``), a fresh status with the storage version in
``storedVersions``, the cleanup finalizer (so deleting a CRD first deletes its
objects, see :mod:`microkube.controllers.crd`), and validation: name is
``<plural>.<group>``, exactly one storage version, and every served schema
structural (else 422, as upstream).

``CustomResourceStrategy`` is the strategy of every custom kind: the CRD
controller registers one subclass per CRD whose ``schemas`` map a version to
its structural schema. Writes are defaulted and pruned by that schema and then
validated against it, reporting every violation in one 422 whose message names
the qualified kind (``CronTab.stable.example.com "x" is invalid: [...]``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from microkube import errors
from microkube.objects import meta
from microkube.resources import celrules, crdschema
from microkube.resources.strategy import Strategy, register, validate_metadata

if TYPE_CHECKING:
    from microkube.resources.registry import Registry

Obj = dict[str, Any]
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_APIEXT = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1."


def _fix_definitions() -> None:
    """``JSONSchemaProps.enum`` holds any JSON values (``[]JSON`` upstream).

    The generated definitions (from the Python client, which says
    ``list[object]``) make its items objects, so the decode check would turn
    ``enum: [a, b]`` into a 400. Point the items at the untyped ``JSON``
    definition, as upstream's OpenAPI does. (The generator should learn this;
    until then the shared, cached definitions are corrected here, once.)
    """
    from microkube.resources import schema

    props = (schema.definition(_APIEXT + "JSONSchemaProps") or {}).get("properties") or {}
    enum = props.get("enum")
    if isinstance(enum, dict) and enum.get("type") == "array":
        enum["items"] = {"$ref": "#/definitions/" + _APIEXT + "JSON"}


_fix_definitions()


def storage_version(crd: Obj) -> str:
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("storage"):
            return str(v.get("name", ""))
    return ""


@register("apiextensions.k8s.io", "CustomResourceDefinition")
class CustomResourceDefinitionStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("singular", str(names["kind"]).lower())
            names.setdefault("listKind", names["kind"] + "List")
        spec.setdefault("conversion", {"strategy": "None"})
        for v in spec.get("versions") or []:
            if isinstance(v, dict):
                v.setdefault("served", True)
                v.setdefault("storage", False)

    def prepare_for_create(self, obj: Obj, reg: Registry) -> None:
        stored = storage_version(obj)
        obj["status"] = {
            "acceptedNames": {"kind": "", "plural": ""},
            "conditions": [],
            "storedVersions": [stored] if stored else [],
        }
        m = meta.meta(obj)
        m["generation"] = 1
        finalizers = list(m.get("finalizers") or [])
        if CLEANUP_FINALIZER not in finalizers:
            m["finalizers"] = [*finalizers, CLEANUP_FINALIZER]

    def prepare_for_update(self, new: Obj, old: Obj, reg: Registry) -> None:
        super().prepare_for_update(new, old, reg)
        stored = storage_version(new)
        status = new.setdefault("status", {})
        versions = list(status.get("storedVersions") or [])
        if stored and stored not in versions:
            status["storedVersions"] = [*versions, stored]

    def validate(self, obj: Obj, reg: Registry) -> list[errors.Cause]:
        return validate_crd(obj)

    def validate_update(self, new: Obj, old: Obj, reg: Registry) -> list[errors.Cause]:
        causes = validate_crd(new)
        for f in ("group", "scope"):
            if (new.get("spec") or {}).get(f) != (old.get("spec") or {}).get(f):
                causes.append(errors.immutable(f"spec.{f}"))
        return causes


def validate_crd(obj: Obj) -> list[errors.Cause]:
    """Mirrors ``ValidateCustomResourceDefinition`` for what microkube serves."""
    causes: list[errors.Cause] = []
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    name = (obj.get("metadata") or {}).get("name", "")
    if plural and group and name != f"{plural}.{group}":
        causes.append(
            errors.invalid_value("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
        )
    if not group:
        causes.append(errors.required("spec.group"))
    elif "." not in group:
        causes.append(
            errors.invalid_value("spec.group", group, "should be a domain with at least one dot")
        )
    for field in ("plural", "singular", "kind", "listKind"):
        value = names.get(field)
        if not value:
            causes.append(errors.required(f"spec.names.{field}"))
        elif field in ("plural", "singular"):
            for e in meta.dns1123_label_errors(value):
                causes.append(errors.invalid_value(f"spec.names.{field}", value, e))
    for i, short in enumerate(names.get("shortNames") or []):
        for e in meta.dns1123_label_errors(str(short)):
            causes.append(errors.invalid_value(f"spec.names.shortNames[{i}]", short, e))
    scope = spec.get("scope")
    if not scope:
        causes.append(errors.required("spec.scope"))
    elif scope not in ("Cluster", "Namespaced"):
        causes.append(errors.unsupported_value("spec.scope", scope, ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(errors.required("spec.versions"))
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if versions and len(storage) != 1:
        causes.append(
            errors.invalid_value(
                "spec.versions",
                json.dumps(versions, separators=(",", ":")),
                "must have exactly one version marked as storage version",
            )
        )
    seen: set[str] = set()
    for i, v in enumerate(versions):
        path = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            causes.append(errors.invalid_value(path, v, "must be an object"))
            continue
        vname = v.get("name") or ""
        if not vname:
            causes.append(errors.required(f"{path}.name"))
        elif vname in seen:
            causes.append(errors.duplicate(f"{path}.name", vname))
        seen.add(vname)
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        spath = f"{path}.schema.openAPIV3Schema"
        if schema is None:
            causes.append(
                errors.Cause("FieldValueRequired", "Required value: schemas are required", spath)
            )
        else:
            causes += crdschema.structural_errors(schema, spath)
            causes += celrules.schema_errors(schema, spath)
        for j, col in enumerate(v.get("additionalPrinterColumns") or []):
            cpath = f"{path}.additionalPrinterColumns[{j}]"
            for f in ("name", "type", "jsonPath"):
                if not col.get(f):
                    causes.append(errors.required(f"{cpath}.{f}"))
    return causes


class CustomResourceStrategy(Strategy):
    """Strategy of one custom kind; subclasses set ``schemas`` (version → schema)."""

    schemas: dict[str, Obj] = {}

    def schema(self) -> Obj | None:
        return self.schemas.get(self.rt.version)

    @property
    def tracks_generation(self) -> bool:
        return True

    @property
    def non_spec_fields(self) -> tuple[str, ...]:  # type: ignore[override]
        if self.has_status:
            return ("apiVersion", "kind", "metadata", "status")
        return ("apiVersion", "kind", "metadata")

    def default(self, obj: Obj) -> None:
        schema = self.schema()
        if schema is not None:
            crdschema.default(obj, schema)
            crdschema.prune(obj, schema, root=True)

    def prepare_for_status_update(self, new: Obj, old: Obj, reg: Registry) -> Obj:
        out = super().prepare_for_status_update(new, old, reg)
        self.default(out)
        return out

    def validate(self, obj: Obj, reg: Registry, old: Obj | None = None) -> list[errors.Cause]:
        causes = validate_metadata(obj, self, namespaced=self.rt.namespaced)
        schema = self.schema()
        if schema is not None:
            causes += crdschema.validate(obj, schema)
            if not celrules.has_rules(schema):
                pass
            elif any(c.reason == "FieldValueTypeInvalid" for c in causes):
                # Mirrors hasBlockingErr: rules cannot run on values of the wrong type.
                causes.append(celrules.NOT_CHECKED)
            else:
                causes += celrules.validate(obj, old, schema)
        if causes:
            name = (obj.get("metadata") or {}).get("name", "")
            exc = errors.invalid(
                f"{self.rt.kind}.{self.rt.group}", name, causes, group=self.rt.group
            )
            exc.kind = self.rt.kind
            raise exc
        return []

    def validate_update(self, new: Obj, old: Obj, reg: Registry) -> list[errors.Cause]:
        return self.validate(new, reg, old)


_CUSTOM: dict[tuple[str, str], type[CustomResourceStrategy]] = {}


def register_custom(group: str, kind: str, schemas: dict[str, Obj]) -> type[CustomResourceStrategy]:
    """Make (and register) the strategy of ``group``/``kind`` with these version schemas.

    The class is made once per kind and its ``schemas`` replaced in place, so
    strategies cached by the registry see a changed CRD schema at once.
    """
    cls = _CUSTOM.get((group, kind))
    if cls is None:
        cls = type(f"{kind}Strategy", (CustomResourceStrategy,), {"schemas": {}})
        _CUSTOM[(group, kind)] = cls
    cls.schemas.clear()
    cls.schemas.update(schemas)
    register(group, kind)(cls)
    return cls
