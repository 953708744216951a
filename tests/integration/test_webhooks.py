"""Admission webhooks through a real ``microkube serve``: kubectl, the official client, helm.

The webhooks are real HTTPS servers on loopback with their own CA
(tests/support/webhooks.py); what is checked is what a user sees: kubectl's
``Error from server: admission webhook "NAME" denied the request: …`` and
``Warning:`` lines, and the object as stored after a mutating webhook.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import make_kubectl, serve
from tests.support.server import Kubectl, Server, kubectl_binary
from tests.support.webhooks import WebhookServer, allow, deny, json_patch

pytestmark = pytest.mark.kubectl
HELM = Path(shutil.which("helm") or Path(sys.executable).parent / "helm")


def mutate_and_validate(path: str, review: dict[str, Any]) -> Any:
    req = review["request"]
    uid = req["uid"]
    obj = req.get("object") or {}
    name = (obj.get("metadata") or {}).get("name", "")
    if path.startswith("/mutate"):
        if (obj.get("metadata") or {}).get("labels") is None:
            return json_patch(
                uid, [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]
            )
        return json_patch(uid, [{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
    if name.startswith("forbidden"):
        return deny(uid, f"the name {name} is reserved")
    if name.startswith("warn"):
        return allow(uid, warnings=["this name is deprecated"])
    return allow(uid)


@pytest.fixture(scope="module")
def hooks() -> Iterator[WebhookServer]:
    with WebhookServer(mutate_and_validate) as srv:
        yield srv


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(tmp_path_factory, "none")


@pytest.fixture(scope="module")
def kubectl(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    d = tmp_path_factory.mktemp("kc")
    return make_kubectl("1.32", server.kubeconfig(d), d / "home")


def configs(srv: WebhookServer, namespace: str) -> list[dict[str, Any]]:
    def wh(name: str, path: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "clientConfig": {"url": srv.url(path), "caBundle": srv.ca_bundle},
            "rules": [
                {
                    "operations": ["CREATE", "UPDATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["configmaps"],
                    "scope": "Namespaced",
                }
            ],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1", "v1beta1"],
            **extra,
        }

    g = "admissionregistration.k8s.io/v1"
    return [
        {
            "apiVersion": g,
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": f"label-{namespace}"},
            "webhooks": [wh("label.example.com", "/mutate")],
        },
        {
            "apiVersion": g,
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": f"names-{namespace}"},
            "webhooks": [wh("names.example.com", "/validate")],
        },
    ]


@pytest.fixture(scope="module")
def configured(kubectl: Kubectl, hooks: WebhookServer) -> str:
    kubectl("create", "namespace", "wh")
    doc = yaml.safe_dump_all(configs(hooks, "wh"))
    kubectl("apply", "-f", "-", input=doc)
    return "wh"


def test_kubectl_sees_denials_warnings_and_mutations(kubectl: Kubectl, configured: str) -> None:
    out = kubectl("get", "mutatingwebhookconfigurations,validatingwebhookconfigurations").stdout
    assert "label-wh" in out and "names-wh" in out and "WEBHOOKS" in out
    doc = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "forbidden-one"}}
    )
    p = kubectl("-n", configured, "create", "-f", "-", input=doc, check=False)
    assert p.returncode == 1
    assert (
        'Error from server: error when creating "STDIN": admission webhook "names.example.com" '
        "denied the request: the name forbidden-one is reserved" in p.stderr
    ), p.stderr
    p = kubectl("-n", configured, "create", "configmap", "warn-one", "--from-literal=a=b")
    assert "Warning: this name is deprecated" in p.stderr
    got = json.loads(kubectl("-n", configured, "get", "configmap", "warn-one", "-o", "json").stdout)
    assert got["metadata"]["labels"] == {"mutated": "yes"}
    # Dry run reaches the webhooks (sideEffects None) and stores nothing.
    p = kubectl(
        "-n", configured, "create", "configmap", "forbidden-dry", "--dry-run=server", check=False
    )
    assert "denied the request" in p.stderr
    # Other namespaces are not selected.
    kubectl("create", "configmap", "forbidden-elsewhere")


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_older_and_newer_kubectl_print_the_denial(
    version: str, kubectl: Kubectl, configured: str, tmp_path: Path
) -> None:
    binary = kubectl_binary(version)
    if binary is None:
        pytest.skip(f"kubectl {version} is not installed")
    k = Kubectl(binary, kubectl.kubeconfig, tmp_path / "home")
    doc = json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "forbidden-" + version}}
    )
    p = k("-n", configured, "apply", "-f", "-", input=doc, check=False)
    assert p.returncode == 1
    assert (
        'admission webhook "names.example.com" denied the request: the name forbidden-' in p.stderr
    )
    out = k("explain", "validatingwebhookconfiguration.webhooks.failurePolicy").stdout
    assert "failurePolicy" in out


def test_python_client_sees_the_same(server: Server, configured: str, tmp_path: Path) -> None:
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(server.kubeconfig(tmp_path)))
    try:
        v1 = client.CoreV1Api(api_client)
        with pytest.raises(client.ApiException) as exc:
            v1.create_namespaced_config_map(
                configured, {"metadata": {"name": "forbidden-two"}, "data": {"a": "b"}}
            )
        assert exc.value.status == 403
        body = json.loads(exc.value.body)
        assert body["message"] == (
            'admission webhook "names.example.com" denied the request: the name forbidden-two is reserved'
        )
        cm = v1.create_namespaced_config_map(
            configured, {"metadata": {"name": "fine"}, "data": {"a": "b"}}
        )
        assert cm.metadata.labels == {"mutated": "yes"}
        adm = client.AdmissionregistrationV1Api(api_client)
        names = [c.metadata.name for c in adm.list_validating_webhook_configuration().items]
        assert "names-wh" in names
    finally:
        api_client.close()


def test_failing_webhook_names_itself(kubectl: Kubectl) -> None:
    kubectl("create", "namespace", "broken")
    cfg = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "broken"},
        "webhooks": [
            {
                "name": "down.example.com",
                "clientConfig": {"url": "https://127.0.0.1:1/"},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["configmaps"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "broken"}},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            }
        ],
    }
    kubectl("apply", "-f", "-", input=json.dumps(cfg))
    doc = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    p = kubectl("-n", "broken", "create", "-f", "-", input=doc, check=False)
    assert p.returncode == 1
    assert (
        'Error from server (InternalError): error when creating "STDIN": Internal error occurred: '
        'failed calling webhook "down.example.com": failed to call webhook: '
        'Post "https://127.0.0.1:1/?timeout=10s": dial tcp 127.0.0.1:1: connect: connection refused'
    ) in p.stderr, p.stderr
    kubectl("delete", "validatingwebhookconfiguration", "broken")
    kubectl("-n", "broken", "create", "configmap", "x")


def test_invalid_configuration_is_422_with_upstream_text(kubectl: Kubectl) -> None:
    cfg = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "bad"},
        "webhooks": [
            {
                "name": "bad",
                "clientConfig": {"url": "http://x"},
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
            }
        ],
    }
    p = kubectl("apply", "-f", "-", input=json.dumps(cfg), check=False)
    assert p.returncode == 1
    assert 'The MutatingWebhookConfiguration "bad" is invalid' in p.stderr
    assert "should be a domain with at least three segments separated by dots" in p.stderr


@pytest.mark.skipif(not HELM.exists(), reason="helm is not installed (scripts/fetch-helm.sh)")
def test_helm_installs_a_chart_with_webhook_configurations(
    server: Server, hooks: WebhookServer, tmp_path: Path
) -> None:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hooks\nversion: 0.1.0\n")
    (chart / "templates" / "hooks.yaml").write_text(yaml.safe_dump_all(configs(hooks, "helmns")))
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-hooks\ndata:\n  a: b\n"
    )
    kubeconfig = server.kubeconfig(tmp_path)
    env = {"HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}
    p = subprocess.run(
        [str(HELM), "install", "hooks", str(chart), "-n", "helmns", "--create-namespace", "--wait"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    got = subprocess.run(
        ["kubectl", "-n", "helmns", "get", "configmap", "after-hooks", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    ).stdout
    # Installed after the configurations in the same release? Helm orders by kind; either
    # way the configurations are stored and served.
    assert json.loads(got)["data"] == {"a": "b"}
    out = subprocess.run(
        ["kubectl", "get", "mutatingwebhookconfiguration", "label-helmns"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    subprocess.run(
        [str(HELM), "uninstall", "hooks", "-n", "helmns"],
        env=env,
        timeout=120,
        check=True,
        capture_output=True,
    )
