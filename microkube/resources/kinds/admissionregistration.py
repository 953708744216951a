"""MutatingWebhookConfiguration and ValidatingWebhookConfiguration (admissionregistration.k8s.io/v1).

Defaults and validation mirror ``pkg/apis/admissionregistration`` (v1
defaults: failurePolicy Fail, matchPolicy Equivalent, empty selectors,
timeoutSeconds 10, rule scope ``*``, service port 443, reinvocationPolicy
Never).  Every stored change drops the webhook admission plugins' cache
(``reg.services["webhook-configurations"]``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from microkube import errors
from microkube.objects import meta
from microkube.resources.strategy import Strategy, register

_OPERATIONS = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]
_REVIEW_VERSIONS = ("v1", "v1beta1")
_SCOPES = ["*", "Cluster", "Namespaced"]


def _default_webhook(wh: dict[str, Any], mutating: bool) -> None:
    wh.setdefault("failurePolicy", "Fail")
    wh.setdefault("matchPolicy", "Equivalent")
    wh.setdefault("namespaceSelector", {})
    wh.setdefault("objectSelector", {})
    wh.setdefault("timeoutSeconds", 10)
    if mutating:
        wh.setdefault("reinvocationPolicy", "Never")
    for rule in wh.get("rules") or []:
        if isinstance(rule, dict):
            rule.setdefault("scope", "*")
    svc = (wh.get("clientConfig") or {}).get("service")
    if isinstance(svc, dict):
        svc.setdefault("port", 443)


def _qualified_name_errors(name: str) -> list[str]:
    return meta.dns1123_subdomain_errors(name)


def _validate_webhook(wh: Any, path: str, mutating: bool) -> list[errors.Cause]:
    if not isinstance(wh, dict):
        return [errors.invalid_value(path, wh, "must be an object")]
    out: list[errors.Cause] = []
    name = wh.get("name") or ""
    if not name:
        out.append(errors.required(f"{path}.name"))
    else:
        for e in _qualified_name_errors(name):
            out.append(errors.invalid_value(f"{path}.name", name, e))
        if len(name.split(".")) < 3:
            out.append(
                errors.invalid_value(
                    f"{path}.name",
                    name,
                    "should be a domain with at least three segments separated by dots",
                )
            )
    for j, rule in enumerate(wh.get("rules") or []):
        rp = f"{path}.rules[{j}]"
        if not isinstance(rule, dict):
            out.append(errors.invalid_value(rp, rule, "must be an object"))
            continue
        ops = rule.get("operations") or []
        if not ops:
            out.append(errors.required(f"{rp}.operations"))
        for k, op in enumerate(ops):
            if op not in _OPERATIONS:
                out.append(errors.unsupported_value(f"{rp}.operations[{k}]", op, _OPERATIONS))
        if len(ops) > 1 and "*" in ops:
            out.append(
                errors.invalid_value(
                    f"{rp}.operations", ops, "if '*' is present, must not specify other operations"
                )
            )
        for f in ("apiGroups", "apiVersions", "resources"):
            vals = rule.get(f) or []
            if not vals:
                out.append(errors.required(f"{rp}.{f}"))
            if len(vals) > 1 and "*" in vals:
                out.append(
                    errors.invalid_value(
                        f"{rp}.{f}",
                        vals,
                        "if '*' is present, must not specify other API groups"
                        if f == "apiGroups"
                        else "if '*' is present, must not specify other API versions"
                        if f == "apiVersions"
                        else "if '*' is present, must not specify other resources",
                    )
                )
        for k, res in enumerate(rule.get("resources") or []):
            if not isinstance(res, str) or not res:
                out.append(errors.required(f"{rp}.resources[{k}]"))
            elif res.count("/") > 1:
                out.append(
                    errors.invalid_value(
                        f"{rp}.resources[{k}]",
                        res,
                        "must be a resource name or resource/subresource",
                    )
                )
        if rule.get("scope") not in _SCOPES:
            out.append(errors.unsupported_value(f"{rp}.scope", rule.get("scope"), _SCOPES))
    if wh.get("failurePolicy") not in ("Fail", "Ignore"):
        out.append(
            errors.unsupported_value(
                f"{path}.failurePolicy", wh.get("failurePolicy"), ["Fail", "Ignore"]
            )
        )
    if wh.get("matchPolicy") not in ("Equivalent", "Exact"):
        out.append(
            errors.unsupported_value(
                f"{path}.matchPolicy", wh.get("matchPolicy"), ["Equivalent", "Exact"]
            )
        )
    if mutating and wh.get("reinvocationPolicy") not in ("IfNeeded", "Never"):
        out.append(
            errors.unsupported_value(
                f"{path}.reinvocationPolicy", wh.get("reinvocationPolicy"), ["IfNeeded", "Never"]
            )
        )
    se = wh.get("sideEffects")
    if se is None:
        out.append(
            errors.Cause(
                "FieldValueRequired",
                "Required value: must specify one of None, NoneOnDryRun",
                f"{path}.sideEffects",
            )
        )
    elif se not in ("None", "NoneOnDryRun"):
        out.append(errors.unsupported_value(f"{path}.sideEffects", se, ["None", "NoneOnDryRun"]))
    versions = wh.get("admissionReviewVersions")
    if not versions:
        out.append(
            errors.Cause(
                "FieldValueRequired",
                "Required value: must specify one of v1, v1beta1",
                f"{path}.admissionReviewVersions",
            )
        )
    elif not any(v in _REVIEW_VERSIONS for v in versions):
        out.append(
            errors.unsupported_value(
                f"{path}.admissionReviewVersions", versions, list(_REVIEW_VERSIONS)
            )
        )
    t = wh.get("timeoutSeconds")
    if not isinstance(t, int) or isinstance(t, bool) or not 1 <= t <= 30:
        out.append(
            errors.invalid_value(
                f"{path}.timeoutSeconds", t, "the timeout value must be between 1 and 30 seconds"
            )
        )
    out += _validate_client_config(wh.get("clientConfig"), f"{path}.clientConfig")
    for sel in ("namespaceSelector", "objectSelector"):
        try:
            from microkube.objects.selectors import LabelSelector

            LabelSelector.from_structured(wh.get(sel) or {})
        except errors.ApiError as exc:
            out.append(errors.invalid_value(f"{path}.{sel}", wh.get(sel), exc.message))
    seen: set[str] = set()
    for k, mc in enumerate(wh.get("matchConditions") or []):
        mp = f"{path}.matchConditions[{k}]"
        if not isinstance(mc, dict):
            out.append(errors.invalid_value(mp, mc, "must be an object"))
            continue
        n = mc.get("name") or ""
        if not n:
            out.append(errors.required(f"{mp}.name"))
        elif n in seen:
            out.append(errors.duplicate(f"{mp}.name", n))
        seen.add(n)
        expr = mc.get("expression") or ""
        if not expr:
            out.append(errors.required(f"{mp}.expression"))
        else:
            from microkube.admission import conditions

            problem = conditions.compile_error(expr)
            if problem:
                out.append(errors.invalid_value(f"{mp}.expression", expr, problem))
    if len(wh.get("matchConditions") or []) > 64:
        out.append(
            errors.Cause(
                "FieldValueTooMany",
                "Too many: must have at most 64 items",
                f"{path}.matchConditions",
            )
        )
    return out


def _validate_client_config(cc: Any, path: str) -> list[errors.Cause]:
    if not isinstance(cc, dict):
        return [errors.required(path)]
    url, svc = cc.get("url"), cc.get("service")
    if bool(url) == bool(svc):
        return [
            errors.Cause(
                "FieldValueRequired",
                "Required value: exactly one of url or service is required",
                path,
            )
        ]
    out: list[errors.Cause] = []
    if url:
        parts = urlsplit(url)
        if parts.scheme != "https":
            out.append(
                errors.invalid_value(f"{path}.url", url, "'https' is the only allowed URL scheme")
            )
        if not parts.hostname:
            out.append(errors.invalid_value(f"{path}.url", url, "host must be specified"))
        if parts.fragment:
            out.append(errors.invalid_value(f"{path}.url", url, "fragments are not permitted"))
        if parts.query:
            out.append(
                errors.invalid_value(f"{path}.url", url, "query parameters are not permitted")
            )
    if isinstance(svc, dict):
        if not svc.get("name"):
            out.append(errors.required(f"{path}.service.name"))
        if not svc.get("namespace"):
            out.append(errors.required(f"{path}.service.namespace"))
        port = svc.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            out.append(
                errors.invalid_value(
                    f"{path}.service.port",
                    port,
                    "port is not valid: must be between 1 and 65535, inclusive",
                )
            )
        p = svc.get("path")
        if p is not None and (not p.startswith("/") or re.search(r"//|\s", p)):
            out.append(errors.invalid_value(f"{path}.service.path", p, "must start with a '/'"))
    return out


class _WebhookConfigurationStrategy(Strategy):
    mutating = False

    def default(self, obj: dict[str, Any]) -> None:
        for wh in obj.get("webhooks") or []:
            if isinstance(wh, dict):
                _default_webhook(wh, self.mutating)

    def validate(self, obj: dict[str, Any], reg: Any) -> list[errors.Cause]:
        hooks = obj.get("webhooks") or []
        if not isinstance(hooks, list):
            return [errors.invalid_value("webhooks", hooks, "must be a list")]
        out: list[errors.Cause] = []
        names: set[str] = set()
        for i, wh in enumerate(hooks):
            out += _validate_webhook(wh, f"webhooks[{i}]", self.mutating)
            n = wh.get("name") if isinstance(wh, dict) else None
            if n and n in names:
                out.append(errors.duplicate(f"webhooks[{i}].name", n))
            names.add(n or "")
        return out

    def validate_update(
        self, new: dict[str, Any], old: dict[str, Any], reg: Any
    ) -> list[errors.Cause]:
        return self.validate(new, reg)

    def _changed(self, reg: Any) -> None:
        cache = reg.services.get("webhook-configurations")
        if cache is not None:
            cache.invalidate()

    async def after_create(self, obj: dict[str, Any], reg: Any) -> None:
        self._changed(reg)

    async def after_update(self, obj: dict[str, Any], reg: Any) -> None:
        self._changed(reg)

    async def after_delete(self, obj: dict[str, Any], reg: Any) -> None:
        self._changed(reg)


@register("admissionregistration.k8s.io", "MutatingWebhookConfiguration")
class MutatingWebhookConfigurationStrategy(_WebhookConfigurationStrategy):
    mutating = True


@register("admissionregistration.k8s.io", "ValidatingWebhookConfiguration")
class ValidatingWebhookConfigurationStrategy(_WebhookConfigurationStrategy):
    mutating = False
