"""Pod spec defaulting and validation, shared by Pods and every pod template.

Mirrors ``pkg/apis/core/v1/defaults.go`` (SetDefaults_PodSpec, SetDefaults_Container,
probes, volumes) and the parts of ``pkg/apis/core/validation`` a user meets
first: required names and images, unique names, port ranges, restart policy.
"""

from __future__ import annotations

from typing import Any

from microkube import errors
from microkube.objects import meta

_PROBE_DEFAULTS = {
    "timeoutSeconds": 1,
    "periodSeconds": 10,
    "successThreshold": 1,
    "failureThreshold": 3,
}


def image_pull_policy(image: str) -> str:
    """Always for ``:latest`` or untagged images, else IfNotPresent (digests included)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _default_probe(probe: dict[str, Any] | None) -> None:
    if not isinstance(probe, dict):
        return
    for k, v in _PROBE_DEFAULTS.items():
        probe.setdefault(k, v)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        http.setdefault("path", "/")
        http.setdefault("scheme", "HTTP")


def _default_container(c: dict[str, Any]) -> None:
    if c.get("image") and "imagePullPolicy" not in c:
        c["imagePullPolicy"] = image_pull_policy(str(c["image"]))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    res = c["resources"]
    if isinstance(res, dict) and res.get("limits") and "requests" not in res:
        res["requests"] = dict(res["limits"])
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
    for e in c.get("env") or []:
        vf = e.get("valueFrom") if isinstance(e, dict) else None
        if isinstance(vf, dict) and isinstance(vf.get("fieldRef"), dict):
            vf["fieldRef"].setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe))


def _default_volume(v: dict[str, Any]) -> None:
    for src in ("configMap", "secret", "downwardAPI", "projected"):
        if isinstance(v.get(src), dict):
            v[src].setdefault("defaultMode", 420)
    if isinstance(v.get("hostPath"), dict):
        v["hostPath"].setdefault("type", "")
    if isinstance(v.get("downwardAPI"), dict):
        for item in v["downwardAPI"].get("items") or []:
            if isinstance(item.get("fieldRef"), dict):
                item["fieldRef"].setdefault("apiVersion", "v1")
    if not any(k for k in v if k != "name"):
        v["emptyDir"] = {}


def default_pod_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_PodSpec + containers + volumes, in place."""
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if spec.get("serviceAccount") and not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                _default_container(c)
    for v in spec.get("volumes") or []:
        if isinstance(v, dict):
            _default_volume(v)


def default_template(template: dict[str, Any] | None) -> None:
    if isinstance(template, dict):
        template.setdefault("metadata", {})
        if template["metadata"] is None:
            template["metadata"] = {}
        template["metadata"].pop("creationTimestamp", None)
        default_pod_spec(template.setdefault("spec", {}))


def validate_pod_spec(spec: Any, path: str, *, template: bool = False) -> list[errors.Cause]:
    causes: list[errors.Cause] = []
    if not isinstance(spec, dict):
        return [errors.required(path)]
    containers = spec.get("containers")
    if not containers:
        causes.append(errors.required(f"{path}.containers"))
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            cp = f"{path}.{key}[{i}]"
            if not isinstance(c, dict):
                causes.append(errors.invalid_value(cp, c, "must be an object"))
                continue
            name = c.get("name")
            if not name:
                causes.append(errors.required(f"{cp}.name"))
            else:
                for e in meta.dns1123_label_errors(str(name)):
                    causes.append(errors.invalid_value(f"{cp}.name", name, e))
                if name in names:
                    causes.append(errors.duplicate(f"{cp}.name", name))
                names.add(name)
            if not c.get("image"):
                causes.append(errors.required(f"{cp}.image"))
            policy = c.get("imagePullPolicy")
            if policy not in (None, "Always", "IfNotPresent", "Never"):
                causes.append(
                    errors.unsupported_value(
                        f"{cp}.imagePullPolicy", policy, ["Always", "IfNotPresent", "Never"]
                    )
                )
            for j, p in enumerate(c.get("ports") or []):
                port = p.get("containerPort") if isinstance(p, dict) else None
                if not isinstance(port, int) or not 0 < port < 65536:
                    causes.append(
                        errors.invalid_value(
                            f"{cp}.ports[{j}].containerPort",
                            port,
                            "must be between 1 and 65535, inclusive",
                        )
                    )
                proto = p.get("protocol", "TCP") if isinstance(p, dict) else "TCP"
                if proto not in ("TCP", "UDP", "SCTP"):
                    causes.append(
                        errors.unsupported_value(
                            f"{cp}.ports[{j}].protocol", proto, ["SCTP", "TCP", "UDP"]
                        )
                    )
    restart = spec.get("restartPolicy")
    if restart not in (None, "Always", "OnFailure", "Never"):
        causes.append(
            errors.unsupported_value(
                f"{path}.restartPolicy", restart, ["Always", "OnFailure", "Never"]
            )
        )
    dns = spec.get("dnsPolicy")
    if dns not in (None, "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"):
        causes.append(
            errors.unsupported_value(
                f"{path}.dnsPolicy",
                dns,
                ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
            )
        )
    vol_names: set[str] = set()
    for i, v in enumerate(spec.get("volumes") or []):
        vname = v.get("name") if isinstance(v, dict) else None
        if not vname:
            causes.append(errors.required(f"{path}.volumes[{i}].name"))
        elif vname in vol_names:
            causes.append(errors.duplicate(f"{path}.volumes[{i}].name", vname))
        else:
            vol_names.add(vname)
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            if not isinstance(c, dict):
                continue
            for j, vm in enumerate(c.get("volumeMounts") or []):
                if isinstance(vm, dict) and vm.get("name") not in vol_names:
                    causes.append(
                        errors.Cause(
                            "FieldValueNotFound",
                            f'Not found: "{vm.get("name")}"',
                            f"{path}.{key}[{i}].volumeMounts[{j}].name",
                        )
                    )
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        causes.append(
            errors.invalid_value(
                f"{path}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"
            )
        )
    return causes
