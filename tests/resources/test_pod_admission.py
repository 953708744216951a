"""Pod create runs the ServiceAccount admission plugin (kube-api-access volume, pull secrets)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from microkube import errors
from microkube.resources import saadmission
from microkube.resources.registry import Registry
from tests.support.registry import open_registry

pytestmark = pytest.mark.anyio
MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    async with open_registry(tmp_path, bootstrap=True) as reg:
        yield reg


async def create_pod(registry: Registry, spec: dict[str, Any], name: str = "p") -> dict[str, Any]:
    pods = registry.catalog.get("", "v1", "pods")
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    return await registry.create(pods, "default", body)


async def create_sa(registry: Registry, body: dict[str, Any]) -> None:
    sa = registry.catalog.get("", "v1", "serviceaccounts")
    await registry.create(sa, "default", body)


def containers(*names: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"name": n, "image": "busybox", **extra} for n in names]


async def test_kube_api_access_volume_is_added_and_mounted_everywhere(
    registry: Registry,
) -> None:
    pod = await create_pod(
        registry, {"containers": containers("a", "b"), "initContainers": containers("i")}
    )
    spec = pod["spec"]
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    [vol] = spec["volumes"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", vol["name"])
    assert vol["projected"] == saadmission.token_volume_source()
    sources = vol["projected"]["sources"]
    assert sources[0]["serviceAccountToken"] == {"expirationSeconds": 3607, "path": "token"}
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    for c in spec["containers"] + spec["initContainers"]:
        assert c["volumeMounts"] == [{"name": vol["name"], "readOnly": True, "mountPath": MOUNT}]


async def test_opt_outs_and_own_mounts_are_respected(registry: Registry) -> None:
    off = await create_pod(
        registry, {"containers": containers("a"), "automountServiceAccountToken": False}, "off"
    )
    assert "volumes" not in off["spec"] and "volumeMounts" not in off["spec"]["containers"][0]
    await create_sa(
        registry, {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False}
    )
    quiet = await create_pod(
        registry, {"containers": containers("a"), "serviceAccountName": "quiet"}, "quiet"
    )
    assert "volumes" not in quiet["spec"]
    # the pod's own setting wins over the account's
    loud = await create_pod(
        registry,
        {
            "containers": containers("a"),
            "serviceAccountName": "quiet",
            "automountServiceAccountToken": True,
        },
        "loud",
    )
    assert loud["spec"]["volumes"][0]["name"].startswith("kube-api-access-")
    # a container that mounts something there itself keeps it; the others get the token
    own = {"name": "mine", "mountPath": MOUNT}
    mixed = await create_pod(
        registry,
        {
            "containers": [*containers("a", volumeMounts=[own]), *containers("b")],
            "volumes": [{"name": "mine", "emptyDir": {}}],
        },
        "mixed",
    )
    a, b = mixed["spec"]["containers"]
    assert a["volumeMounts"] == [own]
    assert b["volumeMounts"][0]["name"].startswith("kube-api-access-")
    assert [v["name"] for v in mixed["spec"]["volumes"]][0] == "mine"
    assert len(mixed["spec"]["volumes"]) == 2


async def test_service_account_image_pull_secrets_are_copied(registry: Registry) -> None:
    await create_sa(
        registry, {"metadata": {"name": "puller"}, "imagePullSecrets": [{"name": "regcred"}]}
    )
    pod = await create_pod(
        registry, {"containers": containers("a"), "serviceAccountName": "puller"}
    )
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    own = await create_pod(
        registry,
        {
            "containers": containers("a"),
            "serviceAccountName": "puller",
            "imagePullSecrets": [{"name": "mine"}],
        },
        "own",
    )
    assert own["spec"]["imagePullSecrets"] == [{"name": "mine"}]


async def test_malformed_specs_get_a_client_error(registry: Registry) -> None:
    for spec in (
        {"containers": "nope"},
        {"containers": containers("a"), "volumes": "nope"},
        {"containers": [{"name": "a", "image": "x", "volumeMounts": "nope"}]},
    ):
        with pytest.raises((errors.BadRequest, errors.Invalid)):
            await create_pod(registry, spec, "bad")
