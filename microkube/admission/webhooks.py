"""MutatingAdmissionWebhook and ValidatingAdmissionWebhook: the dynamic webhook plugins.

Mirrors ``k8s.io/apiserver/pkg/admission/plugin/webhook``::

    Attributes ─► exempt? ─► configurations (cached, sorted by name)
                   │  for each webhook: rules/matchPolicy → namespaceSelector
                   │  → objectSelector → matchConditions (CEL)
                   ▼
    AdmissionReview (v1 or v1beta1, a fresh uid per call) ─► webhook.client.post
                   ▼
    response: uid/apiVersion checked; allowed/status → denial; warnings;
              JSONPatch applied (mutating) ─► reinvocation (IfNeeded) once

Mutating webhooks run one after another; validating ones in parallel.  A
call that fails (timeout, refused, bad TLS, invalid JSON, wrong uid, a patch
that does not apply) is, with failurePolicy Fail, ``Internal error occurred:
failed calling webhook "NAME": …``; with Ignore the request goes on, logged,
with a warning event (see :data:`FailOpen`).  A denial is ``admission webhook
"NAME" denied the request: MESSAGE`` with the webhook's code (at least 400).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import copy
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from microkube import errors
from microkube.admission import conditions, matching
from microkube.admission.attributes import Attributes, GroupVersionResource
from microkube.objects.selectors import LabelSelector
from microkube.webhook import client as wclient

log = logging.getLogger(__name__)

_GROUP = "admissionregistration.k8s.io"
_REVIEW_VERSIONS = ("v1", "v1beta1")

#: Set while microkube writes its own fail-open event, so that write skips webhooks.
_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("webhook_quiet", default=False)

FailOpen = Callable[["Webhook", Attributes, str], Awaitable[None]]


class Source(Protocol):
    """Where configurations and namespace labels come from (a Registry adapter or a fake)."""

    def configurations(self, plural: str) -> list[dict[str, Any]]: ...

    def namespace_labels(self, name: str) -> dict[str, str] | None: ...

    def equivalents(self, gvr: GroupVersionResource) -> list[GroupVersionResource]: ...


@dataclass
class Webhook:
    """One webhook of a configuration, parsed once per configuration change."""

    configuration: str
    name: str
    mutating: bool
    client_config: dict[str, Any]
    rules: list[dict[str, Any]]
    failure_policy: str = "Fail"
    match_policy: str = "Equivalent"
    namespace_selector: LabelSelector = field(default_factory=LabelSelector.everything)
    object_selector: LabelSelector = field(default_factory=LabelSelector.everything)
    side_effects: str = "Unknown"
    timeout_seconds: int = 10
    review_versions: list[str] = field(default_factory=lambda: ["v1"])
    reinvocation: str = "Never"
    match_conditions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def parse(cls, configuration: str, wh: dict[str, Any], *, mutating: bool) -> Webhook:
        return cls(
            configuration=configuration,
            name=wh.get("name", ""),
            mutating=mutating,
            client_config=wh.get("clientConfig") or {},
            rules=[r for r in wh.get("rules") or [] if isinstance(r, dict)],
            failure_policy=wh.get("failurePolicy") or "Fail",
            match_policy=wh.get("matchPolicy") or "Equivalent",
            namespace_selector=matching.compile_selector(wh.get("namespaceSelector")),
            object_selector=matching.compile_selector(wh.get("objectSelector")),
            side_effects=wh.get("sideEffects") or "Unknown",
            timeout_seconds=min(30, max(1, int(wh.get("timeoutSeconds") or 10))),
            review_versions=list(wh.get("admissionReviewVersions") or ["v1beta1"]),
            reinvocation=wh.get("reinvocationPolicy") or "Never",
            match_conditions=list(wh.get("matchConditions") or []),
        )


class Configurations:
    """The parsed webhooks of both kinds, re-read after any configuration write."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._cache: dict[bool, list[Webhook]] = {}

    def invalidate(self) -> None:
        self._cache = {}

    def webhooks(self, mutating: bool) -> list[Webhook]:
        got = self._cache.get(mutating)
        if got is None:
            plural = (
                "mutatingwebhookconfigurations" if mutating else "validatingwebhookconfigurations"
            )
            got = []
            for cfg in sorted(
                self.source.configurations(plural), key=lambda c: c["metadata"]["name"]
            ):
                for wh in cfg.get("webhooks") or []:
                    if isinstance(wh, dict):
                        got.append(Webhook.parse(cfg["metadata"]["name"], wh, mutating=mutating))
            self._cache[mutating] = got
        return got


class _CallFailed(Exception):
    """The webhook could not be called, or answered unusably (failurePolicy applies)."""


class WebhookDenied(errors.ApiError):
    """A webhook said no; code, reason and details come from its status."""

    def __init__(self, message: str, *, code: int, reason: str, details: dict[str, Any]) -> None:
        super().__init__(
            message,
            name=str(details.get("name", "")),
            group=str(details.get("group", "")),
            kind=str(details.get("kind", "")),
            causes=[
                errors.Cause(c.get("reason", ""), c.get("message", ""), c.get("field", ""))
                for c in details.get("causes") or []
                if isinstance(c, dict)
            ],
        )
        self.code = code
        self.reason = reason


def _denied(name: str, status: dict[str, Any] | None) -> WebhookDenied:
    """Mirrors ``webhookerrors.ToStatusErr``."""
    status = status if isinstance(status, dict) else {}
    raw = status.get("code")
    code = raw if isinstance(raw, int) else 0
    if code < 400:
        code = 400
    by = f'admission webhook "{name}" denied the request'
    msg, reason = status.get("message") or "", status.get("reason") or ""
    text = f"{by}: {msg}" if msg else f"{by}: {reason}" if reason else f"{by} without explanation"
    details = status.get("details") if isinstance(status.get("details"), dict) else {}
    return WebhookDenied(text, code=code, reason=str(reason), details=details or {})


def _gvk(g: str, v: str, k: str) -> dict[str, str]:
    return {"group": g, "version": v, "kind": k}


def _gvr(r: GroupVersionResource) -> dict[str, str]:
    return {"group": r.group, "version": r.version, "resource": r.resource}


def review_request(attrs: Attributes, gvr: GroupVersionResource, uid: str) -> dict[str, Any]:
    """The AdmissionRequest for ``attrs``, as the webhook matched it (``gvr``)."""
    kind = attrs.kind
    rk = attrs.request_kind or kind
    rr = attrs.request_resource or attrs.resource
    req: dict[str, Any] = {
        "uid": uid,
        "kind": _gvk(gvr.group, gvr.version, kind.kind),
        "resource": _gvr(gvr),
        "requestKind": _gvk(rk.group, rk.version, rk.kind),
        "requestResource": _gvr(rr),
        "operation": attrs.operation,
        "userInfo": {k: v for k, v in attrs.user_info.items() if v},
        "object": attrs.object,
        "oldObject": attrs.old_object,
        "dryRun": attrs.dry_run,
        "options": attrs.options,
    }
    if attrs.subresource:
        req["subResource"] = attrs.subresource
        req["requestSubResource"] = attrs.subresource
    if attrs.name:
        req["name"] = attrs.name
    if attrs.namespace:
        req["namespace"] = attrs.namespace
    return req


def _review_version(wh: Webhook) -> str:
    for v in wh.review_versions:
        if v in _REVIEW_VERSIONS:
            return v
    raise _CallFailed(
        f"webhook does not accept v1 or v1beta1 AdmissionReview, only {wh.review_versions}"
    )


def _response(review: dict[str, Any], version: str, uid: str) -> dict[str, Any]:
    """The checked ``response`` of a returned AdmissionReview (mirrors VerifyAdmissionResponse)."""
    bad = "received invalid webhook response: "
    if version == "v1" and (
        review.get("apiVersion") != "admission.k8s.io/v1" or review.get("kind") != "AdmissionReview"
    ):
        got_av, got_k = review.get("apiVersion") or "", review.get("kind") or ""
        raise _CallFailed(
            bad + f"expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, "
            f"got {got_av}, Kind={got_k}"
        )
    resp = review.get("response")
    if not isinstance(resp, dict):
        raise _CallFailed(bad + "webhook response was absent")
    if resp.get("uid") != uid:
        raise _CallFailed(bad + f'expected response.uid="{uid}", got "{resp.get("uid", "")}"')
    if not isinstance(resp.get("allowed"), bool):
        if version == "v1":
            raise _CallFailed(bad + "json: response.allowed must be a boolean")
        resp["allowed"] = bool(resp.get("allowed"))
    return resp


class _Dispatcher:
    def __init__(
        self,
        configurations: Configurations,
        client: wclient.WebhookClient,
        *,
        fail_open: FailOpen | None = None,
    ) -> None:
        self.configurations = configurations
        self.client = client
        self.fail_open = fail_open

    def _matches(self, wh: Webhook, attrs: Attributes) -> GroupVersionResource | None:
        """The matched resource, or None; raises _CallFailed for a broken matchCondition."""
        eq: list[GroupVersionResource] = []
        if wh.match_policy == "Equivalent" and not any(
            matching.rule_matches(r, attrs) for r in wh.rules
        ):
            eq = self.configurations.source.equivalents(attrs.resource)
        gvr = matching.matching_resource(
            wh.rules, attrs, match_policy=wh.match_policy, equivalents=eq
        )
        if gvr is None:
            return None
        if not matching.object_selected(wh.object_selector, attrs):
            return None
        ns_labels = None
        if matching.needs_namespace_labels(wh.namespace_selector, attrs):
            ns_labels = self.configurations.source.namespace_labels(attrs.namespace)
        if not matching.namespace_selected(wh.namespace_selector, attrs, ns_labels):
            return None
        if wh.match_conditions:
            variables = {
                "object": attrs.object,
                "oldObject": attrs.old_object,
                "request": review_request(attrs, gvr, ""),
            }
            for mc in wh.match_conditions:
                try:
                    if not conditions.evaluate(mc.get("expression", ""), variables):
                        return None
                except conditions.ConditionError as exc:
                    raise _CallFailed(
                        f"failed to evaluate match condition {mc.get('name', '')!r}: {exc}"
                    ) from exc
        return gvr

    def candidates(self, attrs: Attributes, mutating: bool) -> list[Webhook]:
        if _quiet.get() or matching.exempt(attrs):
            return []
        return self.configurations.webhooks(mutating)

    async def call(
        self, wh: Webhook, attrs: Attributes, gvr: GroupVersionResource | None = None
    ) -> tuple[dict[str, Any] | None, str]:
        """(response or None when not matched, review version); raises _CallFailed/denial errors."""
        gvr = gvr or self._matches(wh, attrs)
        if gvr is None:
            return None, ""
        if attrs.dry_run and wh.side_effects not in ("None", "NoneOnDryRun"):
            raise errors.BadRequest(f'admission webhook "{wh.name}" does not support dry run')
        version = _review_version(wh)
        uid = str(uuid.uuid4())
        body = {
            "apiVersion": f"admission.k8s.io/{version}",
            "kind": "AdmissionReview",
            "request": review_request(attrs, gvr, uid),
        }
        try:
            review = await self.client.post(
                wh.client_config, body, timeout_seconds=wh.timeout_seconds
            )
        except wclient.CallError as exc:
            raise _CallFailed(str(exc)) from exc
        return _response(review, version, uid), version

    async def failed(self, wh: Webhook, attrs: Attributes, reason: str) -> None:
        """failurePolicy: Fail raises the 500 upstream returns; Ignore logs and goes on."""
        text = f'failed calling webhook "{wh.name}": {reason}'
        if wh.failure_policy != "Ignore":
            log.warning("Failed calling webhook, failing closed %s: %s", wh.name, reason)
            raise errors.InternalError(f"Internal error occurred: {text}")
        log.warning("Failed calling webhook, failing open %s: %s", wh.name, reason)
        if self.fail_open is not None:
            token = _quiet.set(True)
            try:
                await self.fail_open(wh, attrs, text)
            except Exception:  # an event is best effort
                log.exception("recording the fail-open event for webhook %s", wh.name)
            finally:
                _quiet.reset(token)


def _warnings(resp: dict[str, Any]) -> list[str]:
    return [w for w in resp.get("warnings") or [] if isinstance(w, str) and w]


class MutatingWebhooks(_Dispatcher):
    """The MutatingAdmissionWebhook plugin."""

    name = "MutatingAdmissionWebhook"

    def handles(self, attrs: Attributes) -> bool:
        return bool(self.candidates(attrs, True))

    async def mutate(self, attrs: Attributes) -> None:
        hooks = self.candidates(attrs, True)
        # Index of each webhook that ran → whether the object changed after it ran.
        changed_since: dict[int, bool] = {}
        for i, wh in enumerate(hooks):
            ran, changed = await self._one(wh, attrs)
            if changed:
                for k in changed_since:
                    changed_since[k] = True
            if ran:
                changed_since[i] = False
        for i, wh in enumerate(hooks):
            if wh.reinvocation == "IfNeeded" and changed_since.get(i):
                await self._one(wh, attrs)

    async def _one(self, wh: Webhook, attrs: Attributes) -> tuple[bool, bool]:
        """Call one webhook: (whether it was called, whether it changed the object)."""
        try:
            resp, _ = await self.call(wh, attrs)
        except _CallFailed as exc:
            await self.failed(wh, attrs, str(exc))
            return True, False
        if resp is None:
            return False, False
        attrs.warnings.extend(_warnings(resp))
        if not resp["allowed"]:
            raise _denied(wh.name, resp.get("status"))
        patch = resp.get("patch")
        if not patch:
            return True, False
        if resp.get("patchType") != "JSONPatch":
            await self.failed(
                wh,
                attrs,
                f"received invalid webhook response: unsupported patch type {resp.get('patchType')!r}",
            )
            return True, False
        try:
            ops = json.loads(base64.b64decode(patch, validate=True))
            from microkube.objects import patch as patches

            patched = patches.json_patch(copy.deepcopy(attrs.object or {}), ops)
        except (binascii.Error, ValueError, TypeError) as exc:
            await self.failed(wh, attrs, f"JSONPatch could not be applied: {exc}")
            return True, False
        except errors.ApiError as exc:
            await self.failed(wh, attrs, f"JSONPatch could not be applied: {exc.message}")
            return True, False
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            await self.failed(wh, attrs, "JSONPatch result is not an object with metadata")
            return True, False
        if patched == attrs.object:
            return True, False
        attrs.replace_object(patched)
        return True, True


class ValidatingWebhooks(_Dispatcher):
    """The ValidatingAdmissionWebhook plugin (webhooks called in parallel)."""

    name = "ValidatingAdmissionWebhook"

    def handles(self, attrs: Attributes) -> bool:
        return bool(self.candidates(attrs, False))

    async def validate(self, attrs: Attributes) -> None:
        first: BaseException | None = None
        matched: list[tuple[Webhook, GroupVersionResource]] = []
        for wh in self.candidates(attrs, False):
            try:
                gvr = self._matches(wh, attrs)
            except _CallFailed as exc:
                try:
                    await self.failed(wh, attrs, str(exc))
                except errors.ApiError as err:
                    first = first or err
                continue
            if gvr is not None:
                matched.append((wh, gvr))
        hooks = [wh for wh, _ in matched]
        results: list[Any] = []
        if len(matched) == 1:
            try:
                results = [await self.call(hooks[0], attrs, matched[0][1])]
            except Exception as exc:  # handled below, as gather's return_exceptions does
                results = [exc]
        elif matched:
            results = await asyncio.gather(
                *(self.call(wh, attrs, gvr) for wh, gvr in matched), return_exceptions=True
            )
        for wh, res in zip(hooks, results, strict=True):
            if isinstance(res, _CallFailed):
                try:
                    await self.failed(wh, attrs, str(res))
                except errors.ApiError as exc:
                    first = first or exc
                continue
            if isinstance(res, BaseException):
                first = first or res
                continue
            resp, _ = res
            if resp is None:
                continue
            attrs.warnings.extend(_warnings(resp))
            if not resp["allowed"]:
                first = first or _denied(wh.name, resp.get("status"))
            elif resp.get("patch"):
                try:
                    await self.failed(
                        wh,
                        attrs,
                        "received invalid webhook response: validating webhooks may not return patches",
                    )
                except errors.ApiError as exc:
                    first = first or exc
        if first is not None:
            raise first


class RegistrySource:
    """:class:`Source` over a Registry (the API server's own objects)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def configurations(self, plural: str) -> list[dict[str, Any]]:
        rt = self.registry.catalog.get(_GROUP, "v1", plural)
        if rt is None:
            return []
        items: list[dict[str, Any]] = self.registry.list(rt, None).items
        return items

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        rt = self.registry.catalog.get("", "v1", "namespaces")
        ns = self.registry.try_get(rt, "", name)
        if ns is None:
            return None
        labels: dict[str, str] = (ns.get("metadata") or {}).get("labels") or {}
        return labels

    def equivalents(self, gvr: GroupVersionResource) -> list[GroupVersionResource]:
        return [
            GroupVersionResource(rt.group, rt.version, rt.plural)
            for rt in self.registry.catalog
            if rt.group == gvr.group and rt.plural == gvr.resource and rt.version != gvr.version
        ]


def install(
    registry: Any,
    *,
    client: wclient.WebhookClient | None = None,
    fail_open: FailOpen | None = None,
) -> tuple[MutatingWebhooks, ValidatingWebhooks]:
    """Add both webhook plugins to ``registry.admission`` (mutating last of the mutators)."""
    from microkube.webhook import resolve

    configs = Configurations(RegistrySource(registry))
    registry.services["webhook-configurations"] = configs
    client = client or wclient.WebhookClient(resolve.RegistryLookup(registry))
    registry.services["webhook-client"] = client
    m = MutatingWebhooks(configs, client, fail_open=fail_open)
    v = ValidatingWebhooks(configs, client, fail_open=fail_open)
    registry.admission.add(m)
    registry.admission.add(v)
    return m, v


def event_recorder(registry: Any) -> FailOpen:
    """A FailOpen that records a Warning Event on the object whose webhook failed open."""
    from microkube.objects import meta

    async def record(wh: Webhook, attrs: Attributes, text: str) -> None:
        rt = registry.catalog.get("", "v1", "events")
        ns = attrs.namespace if attrs.namespaced and attrs.namespace else "default"
        now = meta.now()
        obj = attrs.object if attrs.operation != "CONNECT" and attrs.object else attrs.old_object
        uid = ((obj or {}).get("metadata") or {}).get("uid", "")
        kind = attrs.kind
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{attrs.name or kind.kind.lower()}.", "namespace": ns},
            "involvedObject": {
                "apiVersion": f"{kind.group}/{kind.version}" if kind.group else kind.version,
                "kind": kind.kind,
                "name": attrs.name,
                "namespace": attrs.namespace if attrs.namespaced else "",
                **({"uid": uid} if uid else {}),
            },
            "reason": "FailedCallingWebhook",
            "message": f"{text} (failurePolicy Ignore: the request was admitted)",
            "type": "Warning",
            "source": {"component": "kube-apiserver"},
            "reportingComponent": "kube-apiserver",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await registry.create(rt, ns, event)

    return record
