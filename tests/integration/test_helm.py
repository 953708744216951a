"""Helm 3 against microkube: install, upgrade, rollback, test hooks, CRDs, OCI charts.

Helm is a client the mission names: it stores releases in Secrets, waits on
Deployments' rollout status and pods' phases, installs a chart's ``crds/``
before its templates (waiting for them to be Established in discovery), and
pulls charts as OCI artifacts, here from microkube's own registry. The server
runs the fake runtime so pods become Ready without Podman.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.server import Server, free_port

HELM = shutil.which("helm")
pytestmark = pytest.mark.skipif(HELM is None, reason="helm is not installed (scripts/fetch-helm.sh)")


@pytest.fixture(scope="module")
def registry_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, registry_port: int) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("mk")
    args = ["--runtime", "fake", "--registry-port", str(registry_port)]
    srv = Server(base / "state", extra_args=args).start()
    yield srv
    srv.stop()


class Helm:
    def __init__(self, kubeconfig: Path, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "HELM_", "XDG_"))}
        self.env.update(HOME=str(home), KUBECONFIG=str(kubeconfig))
        self.cwd = home

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert HELM is not None
        proc = subprocess.run(
            [HELM, *args], capture_output=True, text=True, env=self.env, cwd=self.cwd, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def kubectl(self, *args: str) -> str:
        proc = subprocess.run(
            ["kubectl", *args], capture_output=True, text=True, env=self.env, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


@pytest.fixture(scope="module")
def helm(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    kubeconfig = server.kubeconfig(tmp_path_factory.mktemp("kc"))
    return Helm(kubeconfig, tmp_path_factory.mktemp("helm"))


def _deployment(helm: Helm, name: str) -> dict:
    return json.loads(helm.kubectl("get", "deployment", name, "-o", "json"))


def test_install_upgrade_rollback_test_uninstall(helm: Helm) -> None:
    helm("create", "demo")
    # The chart's test hook is a busybox wget; simulated containers exit when told to.
    hook = helm.cwd / "demo/templates/tests/test-connection.yaml"
    text = hook.read_text().replace(
        "      image: busybox\n",
        "      image: busybox\n      env:\n        - name: MICROKUBE_FAKE_EXIT_AFTER\n          value: \"1\"\n",
    )
    assert "MICROKUBE_FAKE_EXIT_AFTER" in text
    hook.write_text(text)

    out = helm("install", "demo", "./demo", "--wait", "--timeout", "90s").stdout
    assert "STATUS: deployed" in out
    releases = json.loads(helm("list", "-o", "json").stdout)
    assert [(r["name"], r["status"], r["revision"]) for r in releases] == [("demo", "deployed", "1")]
    # Releases are stored as Secrets of type helm.sh/release.v1.
    secrets = json.loads(helm.kubectl("get", "secrets", "-l", "owner=helm,name=demo", "-o", "json"))
    assert [s["type"] for s in secrets["items"]] == ["helm.sh/release.v1"]
    assert _deployment(helm, "demo")["status"]["availableReplicas"] == 1

    helm("upgrade", "demo", "./demo", "--set", "replicaCount=3", "--wait", "--timeout", "90s")
    dep = _deployment(helm, "demo")
    assert dep["spec"]["replicas"] == 3 and dep["status"]["availableReplicas"] == 3
    history = json.loads(helm("history", "demo", "-o", "json").stdout)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]

    helm("rollback", "demo", "1", "--wait", "--timeout", "90s")
    dep = _deployment(helm, "demo")
    assert dep["spec"]["replicas"] == 1
    assert json.loads(helm("status", "demo", "-o", "json").stdout)["version"] == 3
    manifest = helm("get", "manifest", "demo").stdout
    assert "kind: Deployment" in manifest and "kind: Service" in manifest

    out = helm("test", "demo", "--timeout", "90s").stdout
    assert "Phase:          Succeeded" in out, out

    helm("uninstall", "demo", "--wait", "--timeout", "90s")
    assert json.loads(helm("list", "-a", "-o", "json").stdout) == []
    left = helm.kubectl("get", "deploy,svc,sa,secrets", "-l", "app.kubernetes.io/instance=demo", "-o", "name")
    assert left.strip() == ""


CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wg]}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer, minimum: 1}
      additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size}
"""

WIDGET = """\
apiVersion: example.com/v1
kind: Widget
metadata:
  name: {{ .Release.Name }}-widget
spec:
  size: {{ .Values.size }}
"""


def test_chart_with_crds_and_custom_objects(helm: Helm) -> None:
    chart = helm.cwd / "widgets"
    (chart / "crds").mkdir(parents=True)
    (chart / "templates").mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: widgets\nversion: 1.0.0\n")
    (chart / "values.yaml").write_text("size: 3\n")
    (chart / "crds/widgets.yaml").write_text(CRD)
    (chart / "templates/widget.yaml").write_text(WIDGET)

    helm("install", "w", str(chart), "--wait", "--timeout", "60s")
    out = helm.kubectl("get", "widgets")
    # As upstream: NAME plus the declared columns (no implicit AGE once columns are given).
    assert out.split("\n")[0].split() == ["NAME", "SIZE"]
    assert out.split("\n")[1].split()[:2] == ["w-widget", "3"]

    # A value the schema refuses fails the upgrade with the server's 422 and keeps revision 1.
    bad = helm("upgrade", "w", str(chart), "--set", "size=0", check=False)
    assert bad.returncode != 0
    assert "spec.size" in bad.stderr and "should be greater than or equal to 1" in bad.stderr
    helm("upgrade", "w", str(chart), "--set", "size=5", "--wait")
    assert "5" in helm.kubectl("get", "widget", "w-widget", "-o", "jsonpath={.spec.size}")

    helm("uninstall", "w", "--wait")
    assert helm.kubectl("get", "widgets", "-o", "name").strip() == ""
    # Helm leaves a chart's CRDs installed, as upstream documents.
    assert "widgets.example.com" in helm.kubectl("get", "crd", "-o", "name")


def test_chart_pushed_to_the_builtin_registry_installs_from_oci(helm: Helm, registry_port: int) -> None:
    helm("create", "ocidemo")
    helm("package", "ocidemo")
    ref = f"oci://127.0.0.1:{registry_port}/charts"
    out = helm("push", "ocidemo-0.1.0.tgz", ref, "--plain-http")
    assert f"Pushed: 127.0.0.1:{registry_port}/charts/ocidemo:0.1.0" in out.stdout + out.stderr

    shown = yaml.safe_load(helm("show", "chart", f"{ref}/ocidemo", "--version", "0.1.0", "--plain-http").stdout)
    assert (shown["name"], shown["version"]) == ("ocidemo", "0.1.0")
    helm("install", "fromoci", f"{ref}/ocidemo", "--version", "0.1.0", "--plain-http", "--wait", "--timeout", "90s")
    assert _deployment(helm, "fromoci-ocidemo")["status"]["availableReplicas"] == 1
    helm("uninstall", "fromoci", "--wait")
