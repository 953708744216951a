"""kubectl 1.27–1.29 against microkube: the commands that need ``/openapi/v2`` as protobuf.

Those kubectls fetch ``/openapi/v2`` as gnostic protobuf for ``apply``,
``diff`` and ``explain`` and fail outright on any other body. Each version gets
its own namespace on one shared server, applies a two-container Deployment
(created, unchanged), diffs and applies an image change, and checks that the
strategic merge kept what the patch did not mention (the other container,
env, ports, a label set out of band). ``explain`` is run both in the default
mode and with ``plaintext-openapiv2``, which reads the protobuf document only.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from microkube.api import openapi_proto
from tests.support.server import Kubectl, Server, kubectl_binary

VERSIONS = ["1.27", "1.28", "1.29"]

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
  labels: {{app: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {image}
        ports: [{{containerPort: 80}}]
        env: [{{name: A, value: "1"}}]
      - name: side
        image: busybox:1.36
        command: [sleep, "3600"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("mk-old")
    srv = Server(base / "state", extra_args=["--no-registry", "--runtime", "fake"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def kubeconfig(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return server.kubeconfig(tmp_path_factory.mktemp("kc-old"))


@pytest.fixture(params=VERSIONS)
def kubectl(request: pytest.FixtureRequest, kubeconfig: Path, tmp_path: Path) -> Kubectl:
    binary = kubectl_binary(request.param)
    if binary is None:
        pytest.skip(f"kubectl {request.param} is not installed")
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(binary, kubeconfig, home)


def _namespace(kubectl: Kubectl) -> str:
    ns = "old-" + Path(kubectl.binary).name.rsplit(".", 1)[1]
    kubectl("create", "namespace", ns)
    return ns


def test_protobuf_is_served_to_the_accept_kubectl_sends(server: Server) -> None:
    ctx = ssl.create_default_context(cafile=str(server.ca))
    for accept in (
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        "application/json",
    ):
        req = urllib.request.Request(
            server.url + "/openapi/v2",
            headers={"Authorization": "Bearer " + server.token, "Accept": accept},
        )
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            body, content_type = r.read(), r.headers["Content-Type"]
        if accept == "application/json":
            assert content_type.startswith("application/json")
            assert json.loads(body)["swagger"] == "2.0"
        else:
            # The "@v1.0" spelling is not a parseable media type; kube-openapi
            # answers with the ".v1.0" one and so do we.
            assert content_type == openapi_proto.CONTENT_TYPE
            assert body.startswith(b"\n\x032.0")  # Document.swagger = "2.0"


def test_apply_diff_apply(kubectl: Kubectl, tmp_path: Path) -> None:
    ns = _namespace(kubectl)
    manifest = tmp_path / "d.yaml"
    manifest.write_text(MANIFEST.format(ns=ns, image="nginx:1.25"))

    out = kubectl("apply", "-f", str(manifest)).stdout
    assert "deployment.apps/web created" in out
    out = kubectl("apply", "-f", str(manifest)).stdout
    assert "deployment.apps/web unchanged" in out
    kubectl("label", "deployment", "web", "-n", ns, "extra=kept")

    manifest.write_text(MANIFEST.format(ns=ns, image="nginx:1.26"))
    diff = kubectl("diff", "-f", str(manifest), check=False)
    assert diff.returncode == 1, diff.stderr  # 1 = differences found
    assert "-        image: nginx:1.25" in diff.stdout
    assert "+        image: nginx:1.26" in diff.stdout

    out = kubectl("apply", "-f", str(manifest)).stdout
    assert "deployment.apps/web configured" in out
    live = json.loads(kubectl("get", "deployment", "web", "-n", ns, "-o", "json").stdout)
    assert live["metadata"]["labels"] == {"app": "web", "extra": "kept"}
    web, side = live["spec"]["template"]["spec"]["containers"]
    assert (web["name"], web["image"]) == ("web", "nginx:1.26")
    assert web["env"] == [{"name": "A", "value": "1"}]
    assert web["ports"][0]["containerPort"] == 80
    assert (side["name"], side["image"], side["command"]) == (
        "side",
        "busybox:1.36",
        ["sleep", "3600"],
    )
    assert kubectl("diff", "-f", str(manifest), check=False).returncode == 0


def test_explain(kubectl: Kubectl) -> None:
    out = kubectl("explain", "deployment.spec").stdout
    assert "DeploymentSpec" in out
    assert "replicas" in out
    out = kubectl(
        "explain", "--output=plaintext-openapiv2", "deployment.spec.template.spec.containers"
    ).stdout
    assert "VERSION:  apps/v1" in out
    assert "RESOURCE: containers <[]Object>" in out
    assert "imagePullPolicy" in out
