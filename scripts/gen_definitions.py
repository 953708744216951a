"""Generate microkube/resources/data/definitions.json.gz from the kubernetes client.

Why: kubectl needs real OpenAPI schemas (``kubectl explain``, client-side
apply's strategic merge, server-side field validation), and writing them by
hand is hopeless. The official ``kubernetes`` python client is generated from
upstream's swagger, so its models carry every field, its JSON name, its type,
whether it is required and its description. This script walks those models and
rebuilds upstream-style OpenAPI v2 ``definitions`` with upstream's names
(``io.k8s.api.core.v1.Pod``…), then adds what the client loses: the package of
each type, IntOrString/Quantity/Time/RawExtension, ``x-kubernetes-group-
version-kind`` on top-level kinds and the strategic-merge/list-type extensions.

Package assignment: each ``<Group>V<N>Api`` class names the kinds it serves; a
model reached from the kinds of one API (in the order below, core first) and
not yet claimed belongs to that API's package, meta types are fixed up front.
Prefixed models (``CoreV1EndpointPort``) name their group themselves.

Run: ``python scripts/gen_definitions.py`` (needs the kubernetes package; the
output does not).
"""

from __future__ import annotations

import gzip
import inspect
import json
import re
import sys
import typing
from pathlib import Path

from kubernetes.client import api as k8s_api
from kubernetes.client import models as k8s_models

OUT = Path(__file__).resolve().parent.parent / "microkube/resources/data/definitions.json.gz"

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INTSTR = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
TIME = META + ".Time"
MICROTIME = META + ".MicroTime"
FIELDSV1 = META + ".FieldsV1"
RAW = "io.k8s.apimachinery.pkg.runtime.RawExtension"
APIEXT = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1"

# API class → (group, version, package). Order matters: earlier APIs claim the
# shared models they reach first, so core must come first.
APIS: list[tuple[str, str, str, str]] = [
    ("CoreV1Api", "", "v1", "io.k8s.api.core.v1"),
    ("AppsV1Api", "apps", "v1", "io.k8s.api.apps.v1"),
    ("BatchV1Api", "batch", "v1", "io.k8s.api.batch.v1"),
    ("AutoscalingV1Api", "autoscaling", "v1", "io.k8s.api.autoscaling.v1"),
    ("AutoscalingV2Api", "autoscaling", "v2", "io.k8s.api.autoscaling.v2"),
    ("PolicyV1Api", "policy", "v1", "io.k8s.api.policy.v1"),
    ("NetworkingV1Api", "networking.k8s.io", "v1", "io.k8s.api.networking.v1"),
    ("DiscoveryV1Api", "discovery.k8s.io", "v1", "io.k8s.api.discovery.v1"),
    ("EventsV1Api", "events.k8s.io", "v1", "io.k8s.api.events.v1"),
    ("CoordinationV1Api", "coordination.k8s.io", "v1", "io.k8s.api.coordination.v1"),
    ("StorageV1Api", "storage.k8s.io", "v1", "io.k8s.api.storage.v1"),
    ("SchedulingV1Api", "scheduling.k8s.io", "v1", "io.k8s.api.scheduling.v1"),
    ("RbacAuthorizationV1Api", "rbac.authorization.k8s.io", "v1", "io.k8s.api.rbac.v1"),
    ("ApiextensionsV1Api", "apiextensions.k8s.io", "v1", APIEXT),
    ("AuthenticationV1Api", "authentication.k8s.io", "v1", "io.k8s.api.authentication.v1"),
    ("AuthorizationV1Api", "authorization.k8s.io", "v1", "io.k8s.api.authorization.v1"),
    (
        "AdmissionregistrationV1Api",
        "admissionregistration.k8s.io",
        "v1",
        "io.k8s.api.admissionregistration.v1",
    ),
    ("CertificatesV1Api", "certificates.k8s.io", "v1", "io.k8s.api.certificates.v1"),
    ("NodeV1Api", "node.k8s.io", "v1", "io.k8s.api.node.v1"),
    (
        "FlowcontrolApiserverV1Api",
        "flowcontrol.apiserver.k8s.io",
        "v1",
        "io.k8s.api.flowcontrol.v1",
    ),
    (
        "ApiregistrationV1Api",
        "apiregistration.k8s.io",
        "v1",
        "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1",
    ),
]

# Prefix of group-qualified model classes → package.
PREFIXED = {
    "CoreV1": "io.k8s.api.core.v1",
    "EventsV1": "io.k8s.api.events.v1",
    "DiscoveryV1": "io.k8s.api.discovery.v1",
    "RbacV1": "io.k8s.api.rbac.v1",
    "FlowcontrolV1": "io.k8s.api.flowcontrol.v1",
    "AdmissionregistrationV1": "io.k8s.api.admissionregistration.v1",
    "ApiextensionsV1": APIEXT,
    "ApiregistrationV1": "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1",
    "AuthenticationV1": "io.k8s.api.authentication.v1",
    "StorageV1": "io.k8s.api.storage.v1",
}

META_KINDS = """ObjectMeta ListMeta LabelSelector LabelSelectorRequirement OwnerReference
ManagedFieldsEntry Status StatusDetails StatusCause DeleteOptions Preconditions Condition
APIResource APIResourceList APIGroup APIGroupList APIVersions GroupVersionForDiscovery
ServerAddressByClientCIDR WatchEvent""".split()

# Models served by core/v1 subresources but defined in another group.
OVERRIDES = {
    "V1Scale": "io.k8s.api.autoscaling.v1.Scale",
    "V1ScaleSpec": "io.k8s.api.autoscaling.v1.ScaleSpec",
    "V1ScaleStatus": "io.k8s.api.autoscaling.v1.ScaleStatus",
    "V1Eviction": "io.k8s.api.policy.v1.Eviction",
    "V1TokenRequestSpec": "io.k8s.api.authentication.v1.TokenRequestSpec",
    "V1TokenRequestStatus": "io.k8s.api.authentication.v1.TokenRequestStatus",
    "V1BoundObjectReference": "io.k8s.api.authentication.v1.BoundObjectReference",
}

# Fields holding resource.Quantity values (the client types them as str).
QUANTITY_MAPS = {
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "hard",
    "used",
    "max",
    "min",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
    "allocatedResources",
    "podFixed",
    "overhead",
}
QUANTITY_SCALARS = {
    ("EmptyDirVolumeSource", "sizeLimit"),
    ("ResourceFieldSelector", "divisor"),
    ("CSIStorageCapacity", "capacity"),
    ("CSIStorageCapacity", "maximumVolumeSize"),
    ("MetricTarget", "averageValue"),
    ("MetricTarget", "value"),
    ("MetricValueStatus", "averageValue"),
    ("MetricValueStatus", "value"),
}
MICROTIME_FIELDS = {
    ("Event", "eventTime"),
    ("EventSeries", "lastObservedTime"),
    ("LeaseSpec", "acquireTime"),
    ("LeaseSpec", "renewTime"),
}
INT64_FIELDS = {
    "generation",
    "observedGeneration",
    "deletionGracePeriodSeconds",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "supplementalGroups",
    "expirationSeconds",
    "startingDeadlineSeconds",
    "gracePeriodSeconds",
    "revision",
    "count",
}

# (definition short name, JSON field) → extensions. Mirrors the
# patchStrategy/patchMergeKey and listType/listMapKey tags of k8s.io/api types.go.
_M = "merge"


def _map(key: str, strategy: str = _M, keys: list[str] | None = None) -> dict[str, object]:
    return {
        "x-kubernetes-patch-merge-key": key,
        "x-kubernetes-patch-strategy": strategy,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": keys or [key],
    }


PATCH_EXTENSIONS: dict[tuple[str, str], dict[str, object]] = {
    ("io.k8s.api.core.v1.PodSpec", "containers"): _map("name"),
    ("io.k8s.api.core.v1.PodSpec", "initContainers"): _map("name"),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers"): _map("name"),
    ("io.k8s.api.core.v1.PodSpec", "volumes"): _map("name", "merge,retainKeys"),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets"): _map("name"),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases"): _map("ip"),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints"): _map(
        "topologyKey", keys=["topologyKey", "whenUnsatisfiable"]
    ),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims"): _map("name", "merge,retainKeys"),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates"): _map("name"),
    ("io.k8s.api.core.v1.Container", "ports"): _map(
        "containerPort", keys=["containerPort", "protocol"]
    ),
    ("io.k8s.api.core.v1.Container", "env"): _map("name"),
    ("io.k8s.api.core.v1.Container", "volumeMounts"): _map("mountPath"),
    ("io.k8s.api.core.v1.Container", "volumeDevices"): _map("devicePath"),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports"): _map(
        "containerPort", keys=["containerPort", "protocol"]
    ),
    ("io.k8s.api.core.v1.EphemeralContainer", "env"): _map("name"),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts"): _map("mountPath"),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices"): _map("devicePath"),
    ("io.k8s.api.core.v1.PodStatus", "podIPs"): _map("ip"),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs"): {
        "x-kubernetes-patch-merge-key": "ip",
        "x-kubernetes-patch-strategy": _M,
        "x-kubernetes-list-type": "atomic",
    },
    ("io.k8s.api.core.v1.ServiceSpec", "ports"): _map("port", keys=["port", "protocol"]),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets"): _map("name"),
    ("io.k8s.api.core.v1.NodeStatus", "addresses"): _map("type"),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs"): {
        "x-kubernetes-patch-strategy": _M,
        "x-kubernetes-list-type": "set",
    },
    (META + ".ObjectMeta", "finalizers"): {
        "x-kubernetes-patch-strategy": _M,
        "x-kubernetes-list-type": "set",
    },
    (META + ".ObjectMeta", "ownerReferences"): _map("uid"),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy"): {
        "x-kubernetes-patch-strategy": "retainKeys"
    },
    ("io.k8s.api.batch.v1.JobStatus", "conditions"): {
        "x-kubernetes-list-type": "atomic",
    },
}


def _short(cls_name: str) -> tuple[str, str]:
    """``V1Pod`` → ("", "Pod"); ``CoreV1EndpointPort`` → ("CoreV1", "EndpointPort")."""
    for prefix in PREFIXED:
        if cls_name.startswith(prefix) and cls_name[len(prefix)].isupper():
            return prefix, cls_name[len(prefix) :]
    m = re.match(r"^V\d+(?:(?:alpha|beta)\d+)?(?=[A-Z])", cls_name)
    if not m:
        return "", cls_name
    return "", cls_name[m.end() :]


def _is_stable(cls_name: str) -> bool:
    return not re.match(r"^(?:[A-Z][a-z]+)*V\d+(alpha|beta)", cls_name)


def _model(name: str) -> type | None:
    cls = getattr(k8s_models, name, None)
    return cls if cls is not None and hasattr(cls, "openapi_types") else None


def _refs(type_str: str) -> list[str]:
    return [t for t in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", type_str) if _model(t)]


def assign_packages() -> dict[str, str]:
    """Model class name → definition name."""
    out: dict[str, str] = {}
    for short in META_KINDS:
        if _model("V1" + short):
            out["V1" + short] = f"{META}.{short}"
    out.update(OVERRIDES)
    for name in dir(k8s_models):
        prefix, short = _short(name)
        if prefix and _model(name) and _is_stable(name):
            out[name] = f"{PREFIXED[prefix]}.{short}"

    for api_name, _group, version, package in APIS:
        api_cls = getattr(k8s_api, api_name)
        src = inspect.getsource(api_cls)
        seeds = sorted(
            {t for t in re.findall(r"\b[A-Z][A-Za-z0-9]+\b", src) if _model(t) and _is_stable(t)}
        )
        vprefix = "V" + version[1:]
        queue = [s for s in seeds if s.startswith(vprefix) or _short(s)[0]]
        seen: set[str] = set()
        while queue:
            name = queue.pop()
            if name in seen:
                continue
            seen.add(name)
            if name not in out:
                if not (name.startswith(vprefix) and _is_stable(name)):
                    continue
                out[name] = f"{package}.{_short(name)[1]}"
            cls = _model(name)
            assert cls is not None
            for t in cls.openapi_types.values():
                queue.extend(r for r in _refs(t) if r not in seen)
    return out


def _first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    text = doc.split("Attributes:")[0]
    text = text.replace("# noqa: E501", "")
    return " ".join(text.split()).strip()


def _is_int_or_string(annotation: object) -> bool:
    args = {a for a in _flat_args(annotation)}
    return int in args and str in args


def _flat_args(annotation: object) -> list[object]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flat_args(typing.get_args(annotation)[0])
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        out: list[object] = []
        for a in typing.get_args(annotation):
            out.extend(_flat_args(a))
        return out
    return [annotation]


def _ref(name: str) -> dict[str, object]:
    return {"$ref": "#/definitions/" + name}


def field_schema(
    type_str: str, *, owner: str, field: str, annotation: object, names: dict[str, str]
) -> dict[str, object]:
    short = owner.rsplit(".", 1)[-1]
    m = re.fullmatch(r"List\[(.+)\]", type_str)
    if m:
        return {
            "type": "array",
            "items": field_schema(
                m.group(1), owner=owner, field=field + "[]", annotation=None, names=names
            ),
        }
    m = re.fullmatch(r"Dict\[str, (.+)\]", type_str)
    if m:
        inner = m.group(1)
        if inner == "str" and field in QUANTITY_MAPS:
            return {"type": "object", "additionalProperties": _ref(QUANTITY)}
        return {
            "type": "object",
            "additionalProperties": field_schema(
                inner, owner=owner, field=field + "{}", annotation=None, names=names
            ),
        }
    if type_str == "str":
        if (short, field) in QUANTITY_SCALARS:
            return _ref(QUANTITY)
        return {"type": "string"}
    if type_str in ("bytearray", "bytes"):
        return {"type": "string", "format": "byte"}
    if type_str == "int":
        fmt = "int64" if field.rstrip("[]") in INT64_FIELDS else "int32"
        return {"type": "integer", "format": fmt}
    if type_str == "float":
        return {"type": "number", "format": "double"}
    if type_str == "bool":
        return {"type": "boolean"}
    if type_str == "datetime":
        return _ref(MICROTIME if (short, field) in MICROTIME_FIELDS else TIME)
    if type_str == "date":
        return {"type": "string", "format": "date"}
    if type_str == "object":
        if annotation is not None and _is_int_or_string(annotation):
            return _ref(INTSTR)
        special = {
            ("ControllerRevision", "data"): _ref(RAW),
            ("WatchEvent", "object"): _ref(RAW),
            ("ManagedFieldsEntry", "fieldsV1"): _ref(FIELDSV1),
            ("JSONSchemaProps", "default"): _ref(APIEXT + ".JSON"),
            ("JSONSchemaProps", "example"): _ref(APIEXT + ".JSON"),
            ("JSONSchemaProps", "items"): _ref(APIEXT + ".JSONSchemaPropsOrArray"),
            ("JSONSchemaProps", "additionalItems"): _ref(APIEXT + ".JSONSchemaPropsOrBool"),
            ("JSONSchemaProps", "additionalProperties"): _ref(APIEXT + ".JSONSchemaPropsOrBool"),
            ("CustomResourceSubresources", "status"): _ref(
                APIEXT + ".CustomResourceSubresourceStatus"
            ),
        }
        if (short, field) in special:
            return special[(short, field)]
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if type_str in names:
        return _ref(names[type_str])
    if _model(type_str):
        # An alpha/beta type hanging off a stable one: kept open, not described.
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    raise ValueError(f"unmapped type {type_str!r} at {owner}.{field}")


def build() -> dict[str, dict[str, object]]:
    names = assign_packages()
    gvks: dict[str, list[dict[str, str]]] = {}
    for _api, group, version, package in APIS:
        for cls_name, def_name in names.items():
            if not def_name.startswith(package + "."):
                continue
            cls = _model(cls_name)
            assert cls is not None
            attrs = set(cls.attribute_map.values())
            if {"apiVersion", "kind", "metadata"} <= attrs:
                kind = def_name.rsplit(".", 1)[-1]
                gvks[def_name] = [{"group": group, "kind": kind, "version": version}]
    # meta kinds are served in every group; upstream lists them with core v1.
    for kind in ("Status", "DeleteOptions", "APIResourceList", "APIGroupList", "APIGroup"):
        gvks[f"{META}.{kind}"] = [{"group": "", "kind": kind, "version": "v1"}]
    gvks[f"{META}.WatchEvent"] = [{"group": "", "kind": "WatchEvent", "version": "v1"}]

    defs: dict[str, dict[str, object]] = {}
    for cls_name, def_name in sorted(names.items(), key=lambda kv: kv[1]):
        cls = _model(cls_name)
        assert cls is not None
        props: dict[str, object] = {}
        required: list[str] = []
        by_json = {(f.serialization_alias or n): f for n, f in cls.model_fields.items()}
        for attr, json_name in cls.attribute_map.items():
            fi = by_json[json_name]
            schema = field_schema(
                cls.openapi_types[attr],
                owner=def_name,
                field=json_name,
                annotation=fi.annotation,
                names=names,
            )
            ext = PATCH_EXTENSIONS.get((def_name, json_name))
            if ext is None and json_name == "conditions" and schema.get("type") == "array":
                ext = _map("type")
            schema = dict(schema)
            if fi.description:
                schema["description"] = fi.description
            if ext:
                schema.update(ext)
            props[json_name] = schema
            if fi.is_required():
                required.append(json_name)
        d: dict[str, object] = {"description": _first_paragraph(cls.__doc__), "type": "object"}
        d["properties"] = props
        if required:
            d["required"] = sorted(required)
        if def_name in gvks:
            d["x-kubernetes-group-version-kind"] = gvks[def_name]
        defs[def_name] = d

    defs[QUANTITY] = {
        "description": "Quantity is a fixed-point representation of a number. It provides "
        "convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and "
        "AsInt64() accessors. Serialized as a string such as '100m', '1Gi' or '2'.",
        "type": "string",
        "format": "quantity",
    }
    defs[INTSTR] = {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used "
        "in JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.",
        "type": "string",
        "format": "int-or-string",
    }
    defs[TIME] = {
        "description": "Time is a wrapper around time.Time which supports correct marshaling "
        "to YAML and JSON.  Wrappers are provided for many of the factory methods that the "
        "time package offers.",
        "type": "string",
        "format": "date-time",
    }
    defs[MICROTIME] = {
        "description": "MicroTime is version of Time with microsecond level precision.",
        "type": "string",
        "format": "date-time",
    }
    defs[FIELDSV1] = {
        "description": "FieldsV1 stores a set of fields in a data structure like a Trie, in "
        "JSON format.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    defs[RAW] = {
        "description": "RawExtension is used to hold extensions in external versions.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    defs[APIEXT + ".JSON"] = {
        "description": "JSON represents any valid JSON value. These types are supported: "
        "bool, int64, float64, string, []interface{}, map[string]interface{} and nil.",
    }
    defs[APIEXT + ".JSONSchemaPropsOrArray"] = {
        "description": "JSONSchemaPropsOrArray represents a value that can either be a "
        "JSONSchemaProps or an array of JSONSchemaProps. Mainly here for serialization purposes.",
    }
    defs[APIEXT + ".JSONSchemaPropsOrBool"] = {
        "description": "JSONSchemaPropsOrBool represents JSONSchemaProps or a boolean value. "
        "Defaults to true for the boolean property.",
    }
    defs[APIEXT + ".JSONSchemaPropsOrStringArray"] = {
        "description": "JSONSchemaPropsOrStringArray represents a JSONSchemaProps or a string "
        "array.",
    }
    defs[APIEXT + ".CustomResourceSubresourceStatus"] = {
        "description": "CustomResourceSubresourceStatus defines how to serve the status "
        "subresource for CustomResources.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    # JSONSchemaProps.properties etc. map to JSONSchemaProps itself in the client; upstream
    # additionally lists "dependencies" as JSONSchemaPropsOrStringArray.
    jsp = defs.get(APIEXT + ".JSONSchemaProps")
    if jsp:
        props = jsp["properties"]
        assert isinstance(props, dict)
        if "dependencies" in props:
            props["dependencies"] = {
                "type": "object",
                "additionalProperties": _ref(APIEXT + ".JSONSchemaPropsOrStringArray"),
            }
    _check_refs(defs)
    return defs


def _check_refs(defs: dict[str, dict[str, object]]) -> None:
    missing: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.removeprefix("#/definitions/") not in defs:
                missing.add(ref)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(defs)
    if missing:
        raise SystemExit(f"unresolved refs: {sorted(missing)}")


def main() -> int:
    defs = build()
    raw = json.dumps(defs, sort_keys=True, separators=(",", ":")).encode()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the output byte-identical across runs.
    with OUT.open("wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    print(f"{len(defs)} definitions, {len(raw)} bytes JSON, {OUT.stat().st_size} bytes gzip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
