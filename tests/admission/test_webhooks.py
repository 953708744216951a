"""Webhook admission in-process: a real Registry and real HTTPS webhook servers on loopback."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from microkube import errors
from microkube.admission import webhooks
from microkube.resources.registry import Registry, WriteOptions
from tests.support.registry import open_registry
from tests.support.webhooks import WebhookServer, allow, deny, json_patch

pytestmark = pytest.mark.anyio
G = "admissionregistration.k8s.io"


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_registry(tmp_path, bootstrap=True) as reg:
        webhooks.install(reg, fail_open=webhooks.event_recorder(reg))
        yield reg
        await reg.services["webhook-client"].aclose()


def hook(name: str, srv: WebhookServer, path: str = "/", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": {"url": srv.url(path), "caBundle": srv.ca_bundle},
        "rules": [
            {
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["configmaps"],
            }
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        **extra,
    }


async def configure(reg: Registry, kind: str, name: str, *hooks: dict[str, Any]) -> None:
    plural = kind.lower() + "s"
    rt = reg.catalog.get(G, "v1", plural)
    await reg.create(
        rt,
        "",
        {
            "apiVersion": f"{G}/v1",
            "kind": kind,
            "metadata": {"name": name},
            "webhooks": list(hooks),
        },
    )


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"a": "1"},
    }


async def test_mutate_then_validate_with_review_contents(registry: Registry) -> None:
    def mutator(path: str, review: dict[str, Any]) -> Any:
        return json_patch(
            review["request"]["uid"], [{"op": "add", "path": "/data/added", "value": "yes"}]
        )

    def validator(path: str, review: dict[str, Any]) -> Any:
        req = review["request"]
        if req["object"]["data"].get("added") != "yes":
            return deny(req["uid"], "mutation missing")
        if req["object"]["metadata"]["name"] == "bad":
            return deny(req["uid"], "name bad is not allowed")
        return allow(req["uid"], warnings=["looked at it"])

    with WebhookServer(mutator) as m, WebhookServer(validator) as v:
        await configure(registry, "MutatingWebhookConfiguration", "m", hook("m.example.com", m))
        await configure(registry, "ValidatingWebhookConfiguration", "v", hook("v.example.com", v))
        rt = registry.catalog.get("", "v1", "configmaps")
        opts = WriteOptions(user={"username": "alice", "groups": ["devs"]})  # type: ignore[typeddict-item]
        out = await registry.create(rt, "default", cm("good"), opts)
        assert out["data"]["added"] == "yes"
        assert opts.warnings == ["looked at it"]
        review = v.requests[0][1]
        assert review["apiVersion"] == "admission.k8s.io/v1"
        req = review["request"]
        assert req["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
        assert req["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
        assert req["requestKind"] == req["kind"]
        assert (req["operation"], req["namespace"], req["name"]) == ("CREATE", "default", "good")
        assert req["userInfo"] == {"username": "alice", "groups": ["devs"]}
        assert req["oldObject"] is None and req["dryRun"] is False
        assert req["options"]["kind"] == "CreateOptions"
        assert m.requests[0][0] == "/?timeout=10s"
        with pytest.raises(errors.ApiError) as exc:
            await registry.create(rt, "default", cm("bad"))
        assert exc.value.code == 403
        assert (
            exc.value.message
            == 'admission webhook "v.example.com" denied the request: name bad is not allowed'
        )
        assert registry.try_get(rt, "default", "bad") is None
        # Updates carry the old object.
        out["data"]["b"] = "2"
        await registry.update(rt, "default", "good", out)
        upd = v.requests[-1][1]["request"]
        assert upd["operation"] == "UPDATE" and upd["oldObject"]["data"] == {
            "a": "1",
            "added": "yes",
        }


async def test_rules_selectors_and_match_conditions(registry: Registry) -> None:
    with WebhookServer(lambda p, r: deny(r["request"]["uid"], "no")) as srv:
        await configure(
            registry,
            "ValidatingWebhookConfiguration",
            "v",
            hook(
                "sel.example.com",
                srv,
                objectSelector={"matchLabels": {"guard": "on"}},
                namespaceSelector={
                    "matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]
                },
                matchConditions=[
                    {
                        "name": "not-skipped",
                        "expression": "!has(object.metadata.annotations) || !('skip' in object.metadata.annotations)",
                    }
                ],
            ),
        )
        ns_rt = registry.catalog.get("", "v1", "namespaces")
        await registry.create(ns_rt, "", {"metadata": {"name": "team-a", "labels": {"team": "a"}}})
        rt = registry.catalog.get("", "v1", "configmaps")
        await registry.create(rt, "default", cm("x", guard="on"))  # namespace not selected
        await registry.create(rt, "team-a", cm("y"))  # object not selected
        skipped = cm("z", guard="on")
        skipped["metadata"]["annotations"] = {"skip": "1"}
        await registry.create(rt, "team-a", skipped)  # matchCondition false
        sec = registry.catalog.get("", "v1", "secrets")
        await registry.create(sec, "team-a", {"metadata": {"name": "s", "labels": {"guard": "on"}}})
        assert srv.requests == []
        with pytest.raises(errors.ApiError, match="denied the request: no"):
            await registry.create(rt, "team-a", cm("w", guard="on"))
        assert len(srv.requests) == 1


async def test_failure_policy_fail_and_ignore(registry: Registry) -> None:
    def bad(path: str, review: dict[str, Any]) -> Any:
        uid = review["request"]["uid"]
        if path.startswith("/slow"):
            time.sleep(1.5)
            return allow(uid)
        if path.startswith("/junk"):
            return 200, b"<html>"
        if path.startswith("/uid"):
            return allow("not-" + uid)
        if path.startswith("/badpatch"):
            return json_patch(uid, [{"op": "remove", "path": "/nope/nothere"}])
        return allow(uid)

    rt = registry.catalog.get("", "v1", "configmaps")
    with WebhookServer(bad) as srv:
        cases = {
            "slow": (
                "/slow",
                'failed calling webhook "slow.example.com": failed to call webhook: Post "https://127.0.0.1:%d/slow?timeout=1s": context deadline exceeded',
            ),
            "junk": (
                "/junk",
                'failed calling webhook "junk.example.com": received invalid webhook response',
            ),
            "uid": (
                "/uid",
                'failed calling webhook "uid.example.com": received invalid webhook response: expected response.uid=',
            ),
            "badpatch": (
                "/badpatch",
                'failed calling webhook "badpatch.example.com": JSONPatch could not be applied',
            ),
        }
        for i, (name, (path, text)) in enumerate(cases.items()):
            kind = "MutatingWebhookConfiguration"
            await configure(
                registry,
                kind,
                f"fail-{name}",
                hook(f"{name}.example.com", srv, path, timeoutSeconds=1),
            )
            with pytest.raises(errors.InternalError) as exc:
                await registry.create(rt, "default", cm(f"cm-{i}"))
            assert exc.value.code == 500
            assert exc.value.message.startswith(
                "Internal error occurred: " + (text % srv.port if "%d" in text else text)
            )
            assert registry.try_get(rt, "default", f"cm-{i}") is None
            mrt = registry.catalog.get(G, "v1", "mutatingwebhookconfigurations")
            await registry.delete(mrt, "", f"fail-{name}")
        port = srv.port
    # Refused, with Ignore: the write proceeds and a warning event is recorded.
    await configure(
        registry,
        "ValidatingWebhookConfiguration",
        "gone",
        {
            **hook("gone.example.com", srv),
            "clientConfig": {"url": f"https://127.0.0.1:{port}/"},
            "failurePolicy": "Ignore",
        },
    )
    await registry.create(rt, "default", cm("through"))
    ev_rt = registry.catalog.get("", "v1", "events")
    events = registry.list(ev_rt, "default").items
    assert any(
        e["reason"] == "FailedCallingWebhook"
        and "connection refused" in e["message"]
        and e["type"] == "Warning"
        for e in events
    )


async def test_reinvocation_if_needed_and_v1beta1(registry: Registry) -> None:
    def first(path: str, review: dict[str, Any]) -> Any:
        req = review["request"]
        labels = req["object"]["metadata"].get("labels") or {}
        n = str(int(labels.get("first-calls", "0")) + 1)
        ops = [{"op": "add", "path": "/metadata/labels/first-calls", "value": n}]
        out = json_patch(req["uid"], ops)
        if review["apiVersion"] == "admission.k8s.io/v1beta1":
            out["apiVersion"] = "admission.k8s.io/v1beta1"
        return out

    def second(path: str, review: dict[str, Any]) -> Any:
        req = review["request"]
        labels = req["object"]["metadata"].get("labels") or {}
        if "second" in labels:
            return allow(req["uid"])
        return json_patch(
            req["uid"], [{"op": "add", "path": "/metadata/labels/second", "value": "x"}]
        )

    with WebhookServer(first) as a, WebhookServer(second) as b:
        await configure(
            registry,
            "MutatingWebhookConfiguration",
            "a",
            hook(
                "first.example.com",
                a,
                reinvocationPolicy="IfNeeded",
                admissionReviewVersions=["v1beta1"],
            ),
        )
        await configure(
            registry, "MutatingWebhookConfiguration", "b", hook("second.example.com", b)
        )
        rt = registry.catalog.get("", "v1", "configmaps")
        out = await registry.create(rt, "default", cm("r", x="1"))
        assert out["metadata"]["labels"] == {"x": "1", "first-calls": "2", "second": "x"}
        assert a.requests[0][1]["apiVersion"] == "admission.k8s.io/v1beta1"
        assert len(b.requests) == 1


async def test_configurations_are_exempt_and_validated(registry: Registry) -> None:
    with WebhookServer(lambda p, r: deny(r["request"]["uid"], "no")) as srv:
        everything = hook("all.example.com", srv)
        everything["rules"] = [
            {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}
        ]
        await configure(registry, "ValidatingWebhookConfiguration", "all", everything)
        # The configuration itself can still be changed and deleted (never sent to webhooks).
        vrt = registry.catalog.get(G, "v1", "validatingwebhookconfigurations")
        await registry.delete(vrt, "", "all")
        assert srv.requests == []
    with pytest.raises(errors.Invalid) as exc:
        await configure(
            registry,
            "ValidatingWebhookConfiguration",
            "broken",
            {"name": "short", "clientConfig": {}, "timeoutSeconds": 31, "sideEffects": "Some"},
        )
    msg = exc.value.message
    assert (
        'webhooks[0].name: Invalid value: "short": should be a domain with at least three segments separated by dots'
        in msg
    )
    assert (
        "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds"
        in msg
    )
    assert (
        'webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun"'
        in msg
    )
    assert (
        "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1"
        in msg
    )
    assert (
        "webhooks[0].clientConfig: Required value: exactly one of url or service is required" in msg
    )


async def test_patch_decodes_base64_json(registry: Registry) -> None:
    # Guard against a patch that is valid base64 but not JSON: a clear error, nothing stored.
    def weird(path: str, review: dict[str, Any]) -> Any:
        return allow(
            review["request"]["uid"],
            patchType="JSONPatch",
            patch=base64.b64encode(b"not json").decode(),
        )

    with WebhookServer(weird) as srv:
        await configure(
            registry, "MutatingWebhookConfiguration", "w", hook("weird.example.com", srv)
        )
        rt = registry.catalog.get("", "v1", "configmaps")
        with pytest.raises(
            errors.InternalError, match='failed calling webhook "weird.example.com"'
        ):
            await registry.create(rt, "default", cm("p"))
        assert json.dumps(registry.try_get(rt, "default", "p")) == "null"


async def test_a_patch_may_not_rename_the_object(registry: Registry) -> None:
    def rename(path: str, review: dict[str, Any]) -> Any:
        return json_patch(
            review["request"]["uid"],
            [{"op": "replace", "path": "/metadata/name", "value": "other"}],
        )

    with WebhookServer(rename) as srv:
        await configure(
            registry, "MutatingWebhookConfiguration", "r", hook("rename.example.com", srv)
        )
        rt = registry.catalog.get("", "v1", "configmaps")
        with pytest.raises(
            errors.Invalid, match="metadata.name: Invalid value: field is immutable"
        ):
            await registry.create(rt, "default", cm("orig"))
        assert registry.try_get(rt, "default", "orig") is None
        assert registry.try_get(rt, "default", "other") is None


async def test_connect_and_delete_reach_webhooks(registry: Registry) -> None:
    def no_exec(path: str, review: dict[str, Any]) -> Any:
        req = review["request"]
        if req["operation"] == "CONNECT":
            assert req["object"]["kind"] == "PodExecOptions"
            return deny(req["uid"], f"no exec into {req['name']}")
        assert req["operation"] == "DELETE" and req["object"] is None
        return deny(req["uid"], f"keep {req['oldObject']['metadata']['name']}")

    with WebhookServer(no_exec) as srv:
        wh = hook("guard.example.com", srv)
        wh["rules"] = [
            {
                "operations": ["CONNECT"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods/exec"],
            },
            {
                "operations": ["DELETE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["configmaps"],
            },
        ]
        await configure(registry, "ValidatingWebhookConfiguration", "g", wh)
        pods = registry.catalog.get("", "v1", "pods")
        opts = {"kind": "PodExecOptions", "apiVersion": "v1", "command": ["sh"]}
        with pytest.raises(errors.ApiError, match="denied the request: no exec into web"):
            await registry.admit_connect(pods, "default", "web", "exec", opts, None)
        # attach is not pods/exec: allowed without a call.
        await registry.admit_connect(
            pods, "default", "web", "attach", {"kind": "PodAttachOptions"}, None
        )
        rt = registry.catalog.get("", "v1", "configmaps")
        await registry.create(rt, "default", cm("kept"))
        with pytest.raises(errors.ApiError, match="denied the request: keep kept"):
            await registry.delete(rt, "default", "kept")
        assert registry.try_get(rt, "default", "kept") is not None
        assert len(srv.requests) == 2
