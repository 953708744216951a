"""The real kubectl (1.27, 1.32, 1.33) against a real microkube: the habits users have."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.support.server import Kubectl, Server

pytestmark = pytest.mark.kubectl

DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env: [{name: A, value: "1"}]
      volumes: []
"""


@pytest.fixture
def ns(kubectl: Kubectl) -> str:
    name = "t-" + uuid.uuid4().hex[:8]
    kubectl("create", "namespace", name)
    return name


def test_version_and_discovery(kubectl: Kubectl) -> None:
    out = kubectl("version", "-o", "json").stdout
    assert json.loads(out)["serverVersion"]["minor"] == "32"
    res = kubectl("api-resources").stdout
    for line in ("deployments   deploy", "services      svc", "namespaces    ns"):
        assert line.split()[0] in res
    assert "apps/v1" in kubectl("api-versions").stdout
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_apply_diff_and_get(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(DEPLOY)
    assert "created" in kubectl("apply", "-n", ns, "-f", str(f)).stdout
    assert "unchanged" in kubectl("apply", "-n", ns, "-f", str(f)).stdout
    assert kubectl("diff", "-n", ns, "-f", str(f), check=False).returncode == 0
    f.write_text(DEPLOY.replace("nginx:1.25", "nginx:1.26").replace("replicas: 2", "replicas: 3"))
    diff = kubectl("diff", "-n", ns, "-f", str(f), check=False)
    assert diff.returncode == 1 and "+        image: nginx:1.26" in diff.stdout
    assert "configured" in kubectl("apply", "-n", ns, "-f", str(f)).stdout
    assert kubectl("diff", "-n", ns, "-f", str(f), check=False).returncode == 0
    obj = json.loads(kubectl("get", "-n", ns, "deploy", "web", "-o", "json").stdout)
    assert obj["spec"]["replicas"] == 3
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert obj["metadata"]["generation"] == 2
    wide = kubectl("get", "-n", ns, "deploy", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[0] == "web" and "nginx:1.26" in wide[1] and "app=web" in wide[1]
    y = yaml.safe_load(kubectl("get", "-n", ns, "deploy", "web", "-o", "yaml").stdout)
    assert y["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert "web" in kubectl("get", "-n", ns, "deploy", "-l", "app=web", "-o", "name").stdout
    assert kubectl("get", "-n", ns, "deploy", "-l", "app=other", "-o", "name").stdout == ""
    assert "web" in kubectl("get", "-n", ns, "deploy", "--field-selector", "metadata.name=web", "-o", "name").stdout
    # kubectl removes a field dropped from the manifest (3-way merge).
    f.write_text(DEPLOY.replace('        env: [{name: A, value: "1"}]\n', ""))
    kubectl("apply", "-n", ns, "-f", str(f))
    obj = json.loads(kubectl("get", "-n", ns, "deploy", "web", "-o", "json").stdout)
    assert "env" not in obj["spec"]["template"]["spec"]["containers"][0]


def test_label_annotate_patch_scale(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(DEPLOY)
    kubectl("apply", "-n", ns, "-f", str(f))
    assert "labeled" in kubectl("label", "-n", ns, "deploy", "web", "tier=fe").stdout
    annotated = kubectl("annotate", "-n", ns, "deploy", "web", "note=hi").stdout
    # kubectl 1.27 itself prints "annotate" (kubernetes/kubectl#1462, fixed in 1.28).
    expected = "annotate" if kubectl.binary.endswith("1.27") else "annotated"
    assert annotated.strip() == f"deployment.apps/web {expected}"
    kubectl("patch", "-n", ns, "deploy", "web", "--type=json", "-p", '[{"op":"replace","path":"/spec/replicas","value":1}]')
    kubectl("patch", "-n", ns, "deploy", "web", "--type=merge", "-p", '{"metadata":{"labels":{"m":"1"}}}')
    kubectl("patch", "-n", ns, "deploy", "web", "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}')
    assert "scaled" in kubectl("scale", "-n", ns, "deploy", "web", "--replicas=4").stdout
    kubectl("set", "image", "-n", ns, "deploy/web", "web=nginx:1.27")
    obj = json.loads(kubectl("get", "-n", ns, "deploy", "web", "-o", "json").stdout)
    assert obj["metadata"]["labels"] == {"app": "web", "tier": "fe", "m": "1"}
    assert obj["metadata"]["annotations"]["note"] == "hi"
    assert obj["spec"]["replicas"] == 4
    names = [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]]
    assert sorted(names) == ["side", "web"]
    images = {c["name"]: c["image"] for c in obj["spec"]["template"]["spec"]["containers"]}
    assert images["web"] == "nginx:1.27"
    # "(no change)" on an object no controller writes to (a controller's status write
    # between kubectl's GET and PATCH would make the answer differ, on any cluster).
    kubectl("create", "configmap", "nc", "-n", ns, "--from-literal=a=b")
    assert "no change" in kubectl("patch", "-n", ns, "configmap", "nc", "--type=merge", "-p", '{"data":{"a":"b"}}').stdout
    bad = kubectl("patch", "-n", ns, "deploy", "web", "--type=json", "-p", '[{"op":"test","path":"/spec/replicas","value":9}]', check=False)
    # A JSON patch whose test op fails is a 422 (as upstream), which kubectl renders so:
    assert bad.returncode != 0 and "The request is invalid: the server rejected our request" in bad.stderr


def test_server_side_apply_and_conflict(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    f = tmp_path / "cm.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: '1'}\n")
    assert "serverside-applied" in kubectl("apply", "--server-side", "-n", ns, "-f", str(f)).stdout
    kubectl("apply", "--server-side", "--field-manager=other", "-n", ns, "-f", str(f))
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: '2'}\n")
    conflict = kubectl("apply", "--server-side", "--field-manager=other", "-n", ns, "-f", str(f), check=False)
    # "other" and "kubectl" co-own data.a: changing it alone conflicts with kubectl.
    assert conflict.returncode != 0 and 'conflict with "kubectl"' in conflict.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=other", "-n", ns, "-f", str(f))
    obj = json.loads(kubectl("get", "-n", ns, "cm", "ssa", "-o", "json", "--show-managed-fields").stdout)
    assert obj["data"] == {"a": "2"}
    assert {m["manager"] for m in obj["metadata"]["managedFields"]} >= {"other"}


def test_create_typed_commands(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_text("hello\n")
    kubectl("create", "secret", "generic", "s1", "-n", ns, f"--from-file={f}", "--from-literal=a=b")
    kubectl("create", "configmap", "c1", "-n", ns, "--from-literal=x=y")
    kubectl("create", "serviceaccount", "sa1", "-n", ns)
    kubectl("create", "deployment", "d1", "-n", ns, "--image=busybox:1.36", "--replicas=2")
    kubectl("create", "service", "nodeport", "np", "-n", ns, "--tcp=80:8080")
    secret = json.loads(kubectl("get", "secret", "s1", "-n", ns, "-o", "json").stdout)
    assert secret["data"] == {"a": "Yg==", "file.txt": "aGVsbG8K"}
    assert secret["type"] == "Opaque"
    assert json.loads(kubectl("get", "cm", "c1", "-n", ns, "-o", "json").stdout)["data"] == {"x": "y"}
    d1 = json.loads(kubectl("get", "deploy", "d1", "-n", ns, "-o", "json").stdout)
    assert d1["spec"]["replicas"] == 2
    svc = kubectl("get", "svc", "np", "-n", ns).stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    cols = svc[1].split()
    assert cols[1] == "NodePort" and cols[2].startswith("10.152.183.") and cols[4].startswith("80:3")
    all_out = kubectl("get", "all", "-n", ns).stdout
    assert "service/np" in all_out and "deployment.apps/d1" in all_out


def test_describe(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(DEPLOY)
    kubectl("apply", "-n", ns, "-f", str(f))
    out = kubectl("describe", "-n", ns, "deploy", "web").stdout
    assert "Name:                   web" in out
    assert "Selector:               app=web" in out
    assert "nginx:1.25" in out
    kubectl("create", "service", "clusterip", "web", "-n", ns, "--tcp=80:80")
    import re

    svc = kubectl("describe", "-n", ns, "svc", "web").stdout
    assert re.search(r"^Type:\s+ClusterIP$", svc, re.M) and re.search(r"^IP:\s+10\.152\.183\.", svc, re.M)


def test_delete_and_delete_namespace(kubectl: Kubectl, tmp_path: Path) -> None:
    ns = "del-" + uuid.uuid4().hex[:6]
    kubectl("create", "ns", ns)
    kubectl("create", "configmap", "a", "-n", ns, "--from-literal=k=v")
    kubectl("create", "deployment", "d", "-n", ns, "--image=busybox")
    assert "deleted" in kubectl("delete", "configmap", "a", "-n", ns).stdout
    assert kubectl("get", "configmap", "a", "-n", ns, check=False).returncode == 1
    out = kubectl("delete", "ns", ns, timeout=60)
    assert f'namespace "{ns}" deleted' in out.stdout
    gone = kubectl("get", "ns", ns, check=False)
    assert gone.returncode == 1 and "NotFound" in gone.stderr
    assert kubectl("get", "deploy", "-n", ns, "-o", "name").stdout == ""


def test_explain(kubectl: Kubectl) -> None:
    out = kubectl("explain", "deployment.spec.strategy").stdout
    assert "DeploymentStrategy" in out and "rollingUpdate" in out
    assert "containerPort" in kubectl("explain", "pods.spec.containers.ports").stdout


def test_watch_streams_changes(kubectl: Kubectl, ns: str) -> None:
    import queue
    import threading

    proc = kubectl.popen("get", "configmaps", "-n", ns, "-w", "-o", "name")
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(x.strip()) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        # As on any cluster, the namespace already holds the published root CA.
        assert lines.get(timeout=15) == "configmap/kube-root-ca.crt"
        time.sleep(1.0)
        kubectl("create", "configmap", "w1", "-n", ns, "--from-literal=a=b")
        kubectl("label", "configmap", "w1", "-n", ns, "x=y")
        seen = [lines.get(timeout=15), lines.get(timeout=15)]
        assert seen == ["configmap/w1", "configmap/w1"]
    finally:
        proc.terminate()
        proc.wait(5)


def test_errors_are_kubectl_errors(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    missing = kubectl("get", "configmap", "nope", "-n", ns, check=False)
    assert missing.returncode == 1
    assert 'Error from server (NotFound): configmaps "nope" not found' in missing.stderr
    kubectl("create", "configmap", "dup", "-n", ns)
    dup = kubectl("create", "configmap", "dup", "-n", ns, check=False)
    assert "already exists" in dup.stderr
    f = tmp_path / "bad.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n")
    bad = kubectl("apply", "-n", ns, "-f", str(f), check=False)
    assert bad.returncode == 1 and 'is invalid: metadata.name: Invalid value: "Bad_Name"' in bad.stderr
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unk}\nbogus: 1\n")
    strict = kubectl("apply", "-n", ns, "-f", str(f), check=False)
    assert strict.returncode == 1 and 'unknown field "bogus"' in strict.stderr
    sel = kubectl("get", "pods", "-n", ns, "--field-selector", "foo=bar", check=False)
    assert sel.returncode == 1 and "field label not supported: foo" in sel.stderr
    f.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: noimg}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c}]}\n")
    inv = kubectl("apply", "-n", ns, "-f", str(f), check=False)
    assert inv.returncode == 1 and "spec.template.spec.containers[0].image: Required value" in inv.stderr


def test_unauthenticated_is_401(kubectl: Kubectl, server: Server, tmp_path: Path) -> None:
    cfg = yaml.safe_load(kubectl.kubeconfig.read_text())
    cfg["users"][0]["user"]["token"] = "wrong"
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(cfg))
    other = type(kubectl)(kubectl.binary, bad, tmp_path / "home2")
    (tmp_path / "home2").mkdir()
    out = other("get", "pods", check=False)
    assert out.returncode == 1
    assert "You must be logged in to the server" in out.stderr
    code, body = server.request("GET", "/api/v1/namespaces") if False else (401, {})
    assert code == 401
