"""What the real-Podman end-to-end modules share on the kubectl side.

``PODMAN_E2E`` is the skip list every such module starts its ``pytestmark``
with; the helpers apply manifests and poll objects through the real kubectl
(:class:`tests.support.server.Kubectl`), failing with what the cluster shows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.support import images
from tests.support.server import Kubectl, kubectl_binary

NEEDS_KUBECTL = pytest.mark.skipif(kubectl_binary("1.32") is None, reason="kubectl 1.32 missing")
PODMAN_E2E = [
    pytest.mark.podman,
    pytest.mark.skipif(not images.busybox_available(), reason="podman or busybox missing"),
    NEEDS_KUBECTL,
]
"""Marks of a module that runs busybox pods on real Podman and drives them with kubectl 1.32."""
NEEDS_CURL = pytest.mark.skipif(
    not images.curl_available(), reason="podman, busybox or curl missing"
)
"""With ``PODMAN_E2E``, for modules that also run :func:`tests.support.images.curl_image`."""


def apply(kubectl: Kubectl, *objs: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    """``kubectl get <args> -o json``."""
    return dict(json.loads(kubectl("get", *args, "-o", "json").stdout))


def pod_json(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return get_json(kubectl, "pod", name)


def condition(pod: dict[str, Any], type_: str) -> dict[str, Any]:
    """The pod's condition of type ``type_``, or ``{}``."""
    return next((c for c in pod.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def ready(pod: dict[str, Any]) -> bool:
    return condition(pod, "Ready").get("status") == "True"


def wait_for(
    kubectl: Kubectl,
    name: str,
    pred: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
    interval: float = 0.5,
) -> dict[str, Any]:
    """Poll pod ``name`` until ``pred(pod)``; on a timeout fail with its status."""
    deadline = time.monotonic() + timeout
    while True:
        pod = pod_json(kubectl, name)
        if pred(pod):
            return pod
        if time.monotonic() > deadline:
            raise AssertionError(json.dumps(pod.get("status"), indent=1))
        time.sleep(interval)


def eventually(fn: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    """Poll ``fn`` until it returns something truthy; errors count as "not yet".

    On a timeout fail with ``what`` and the last result or error.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - keep polling
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what}: {last!r}")


def sh_container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A busybox container running ``sh -c script``."""
    return {
        "name": name,
        "image": images.BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
        **extra,
    }


def pod_manifest(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A Pod of ``containers`` with a 1 s grace period; ``spec`` adds or overrides fields."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": list(containers), **spec},
    }
