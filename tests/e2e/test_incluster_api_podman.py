"""End to end: a pod uses the API through ``https://kubernetes.default.svc``.

One ``microkube serve`` with real Podman (10.226.X.0/24 pod CIDR and
10.227.X.0/24 service CIDR, X in 128..254 so that it never meets
``test_storage_podman``, which draws X below 128).  A ServiceAccount bound to
a Role that may read pods runs a pod with the host's curl (see
:func:`tests.support.images.curl_image`); from inside, with the mounted token
and CA (``/var/run/secrets/kubernetes.io/serviceaccount``), it lists the pods
of its namespace and is refused, with upstream's 403, everything else.  This
goes through the cluster DNS name, the ClusterIP of the ``kubernetes``
Service, the API server's TLS certificate and RBAC.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import images
from tests.support.kube import NEEDS_CURL, PODMAN_E2E, apply
from tests.support.server import Kubectl, Server, podman_server

pytestmark = [*PODMAN_E2E, NEEDS_CURL, pytest.mark.kubectl, pytest.mark.timeout(240)]
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
NS = "apps"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    images.curl_image()
    r = random.randint(128, 254)
    base = tmp_path_factory.mktemp("incluster")
    with podman_server(base, pod_cidr=f"10.226.{r}.0/24", service_cidr=f"10.227.{r}.0/24") as srv:
        yield srv


def manifests() -> list[dict[str, Any]]:
    rbac = "rbac.authorization.k8s.io"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "lister", "namespace": NS},
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": NS},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "lister-reads-pods", "namespace": NS},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "lister", "namespace": NS}],
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": NS},
            "spec": {
                "serviceAccountName": "lister",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "c",
                        "image": images.CURL_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"],
                    }
                ],
            },
        },
    ]


def call(kubectl: Kubectl, path: str) -> tuple[int, dict[str, Any]]:
    """GET ``path`` from inside the pod with its token; (status, body)."""
    script = (
        f'curl -sS -m 10 --cacert {SA_DIR}/ca.crt -H "Authorization: Bearer $(cat {SA_DIR}/token)" '
        f'-w "\\n%{{http_code}}" https://kubernetes.default.svc{path}'
    )
    out = kubectl("exec", "-n", NS, "client", "--", "sh", "-c", script).stdout
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body)


def test_service_account_token_from_inside_the_pod(kubectl: Kubectl) -> None:
    apply(kubectl, *manifests())
    kubectl("wait", "-n", NS, "--for=condition=Ready", "pod/client", "--timeout=90s", timeout=120)
    ns = kubectl("exec", "-n", NS, "client", "--", "cat", f"{SA_DIR}/namespace").stdout
    assert ns == NS

    # DNS and the kubernetes Service may take a moment after start-up.
    deadline = time.monotonic() + 30
    while True:
        try:
            code, body = call(kubectl, f"/api/v1/namespaces/{NS}/pods")
            break
        except (AssertionError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert code == 200, body
    assert [p["metadata"]["name"] for p in body["items"]] == ["client"]
    code, body = call(kubectl, f"/api/v1/namespaces/{NS}/pods/client")
    assert code == 200 and body["spec"]["serviceAccountName"] == "lister"

    user = f"system:serviceaccount:{NS}:lister"
    refused = {
        "/api/v1/namespaces/default/pods": (
            f'pods is forbidden: User "{user}" cannot list resource "pods" in API group "" '
            'in the namespace "default"'
        ),
        f"/api/v1/namespaces/{NS}/secrets": (
            f'secrets is forbidden: User "{user}" cannot list resource "secrets" in API group "" '
            f'in the namespace "{NS}"'
        ),
        "/api/v1/nodes": (
            f'nodes is forbidden: User "{user}" cannot list resource "nodes" in API group "" '
            "at the cluster scope"
        ),
        f"/apis/apps/v1/namespaces/{NS}/deployments": (
            f'deployments.apps is forbidden: User "{user}" cannot list resource "deployments" '
            f'in API group "apps" in the namespace "{NS}"'
        ),
    }
    for path, message in refused.items():
        code, body = call(kubectl, path)
        assert (code, body.get("reason"), body.get("message")) == (403, "Forbidden", message)
    # Outside the pod, kubectl agrees about the same identity.
    assert kubectl("auth", "can-i", "list", "pods", "-n", NS, "--as", user).stdout.strip() == "yes"
    no = kubectl("auth", "can-i", "list", "secrets", "-n", NS, "--as", user, check=False)
    assert no.stdout.strip() == "no"
    kubectl("delete", "namespace", NS, "--timeout=60s", timeout=90)
