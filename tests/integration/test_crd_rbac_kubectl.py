"""CRDs and RBAC with the real kubectl 1.32 against a real microkube server."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.server import Kubectl, Server

CRD = r"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            properties:
              cronSpec: {type: string, pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'}
              image: {type: string}
              replicas: {type: integer, minimum: 1, maximum: 10, default: 1}
              mode: {type: string, enum: [fast, slow]}
          status:
            type: object
            properties:
              phase: {type: string}
"""

CRONTAB = """
apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: my-cron}
spec: {cronSpec: "* * * * */5", image: my-cron-image}
"""

BAD = """
apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: bad-cron}
spec: {cronSpec: nope, replicas: 50, mode: medium}
"""


def test_crd_lifecycle(kubectl132: Kubectl) -> None:
    k = kubectl132
    k("apply", "-f", "-", input=CRD)
    k("wait", "--for=condition=Established", "crd/crontabs.stable.example.com", "--timeout=10s")
    k("apply", "-f", "-", input=CRONTAB)
    table = k("get", "crontabs").stdout.splitlines()
    assert table[0].split() == ["NAME", "SPEC", "REPLICAS"]
    assert table[1].split() == ["my-cron", "*", "*", "*", "*", "*/5", "1"]
    k("patch", "ct", "my-cron", "--type=merge", "-p", '{"spec":{"replicas":3}}')
    k(
        "patch",
        "ct",
        "my-cron",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/image","value":"x"}]',
    )
    out = k(
        "get",
        "ct",
        "my-cron",
        "-o",
        "jsonpath={.spec.replicas} {.spec.image} {.metadata.generation}",
    )
    assert out.stdout == "3 x 3"
    k(
        "patch",
        "ct",
        "my-cron",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Running"}}',
    )
    assert k("get", "ct", "my-cron", "-o", "jsonpath={.status.phase}").stdout == "Running"
    bad = k("apply", "-f", "-", input=BAD, check=False)
    assert bad.returncode != 0
    assert 'The CronTab "bad-cron" is invalid:' in bad.stderr
    assert (
        'spec.cronSpec: Invalid value: "nope": spec.cronSpec in body should match '
        "'^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'" in bad.stderr
    )
    assert 'spec.mode: Unsupported value: "medium": supported values: "fast", "slow"' in bad.stderr
    assert (
        "spec.replicas: Invalid value: 50: spec.replicas in body should be less than or equal to 10"
        in bad.stderr
    )
    k("delete", "ct", "my-cron")
    k("apply", "-f", "-", input=CRONTAB)
    k("delete", "crd", "crontabs.stable.example.com", "--timeout=20s")
    assert "crontabs" not in k("api-resources").stdout


def test_view_user_can_get_but_not_delete(
    server: Server, kubectl132: Kubectl, tmp_path: Path
) -> None:
    admin = kubectl132
    cfg = subprocess.run(
        [
            sys.executable,
            "-m",
            "microkube",
            "add-user",
            "bob",
            "--group",
            "devs",
            "--state-dir",
            str(server.state_dir),
            "--port",
            str(server.port),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "client-certificate-data" in cfg and "token" not in cfg
    (tmp_path / "bob.kc").write_text(cfg)
    bob = Kubectl(admin.binary, tmp_path / "bob.kc", tmp_path / "bobhome")
    who = json.loads(bob("auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"] == {
        "username": "bob",
        "groups": ["devs", "system:authenticated"],
    }
    denied = bob("get", "pods", check=False)
    assert denied.returncode != 0
    assert (
        'Error from server (Forbidden): pods is forbidden: User "bob" cannot list resource "pods" '
        'in API group "" in the namespace "default"'
    ) in denied.stderr
    admin("create", "clusterrolebinding", "bob-view", "--clusterrole=view", "--user=bob")
    admin("create", "configmap", "cfg", "--from-literal=a=b")
    assert bob("get", "configmap", "cfg", "-o", "name").stdout.strip() == "configmap/cfg"
    gone = bob("delete", "configmap", "cfg", check=False)
    assert gone.returncode != 0
    assert (
        'configmaps "cfg" is forbidden: User "bob" cannot delete resource "configmaps" '
        'in API group "" in the namespace "default"'
    ) in gone.stderr
    assert bob("auth", "can-i", "get", "configmaps").stdout.strip() == "yes"
    assert bob("auth", "can-i", "delete", "configmaps", check=False).stdout.strip() == "no"
    assert admin("auth", "can-i", "list", "pods", "--as", "bob").stdout.strip() == "yes"
    # --as impersonates: the admin sees bob's permissions, not its own.
    as_bob = admin("auth", "can-i", "delete", "configmaps", "--as", "bob", check=False)
    assert as_bob.stdout.strip() == "no"
    assert admin("auth", "whoami", "--as", "bob").stdout.split("\n")[1].split() == [
        "Username",
        "bob",
    ]
    assert bob("auth", "can-i", "get", "nodes", check=False).stdout.strip() == "no"
    cluster = bob("delete", "namespace", "kube-public", check=False)
    assert (
        'namespaces "kube-public" is forbidden: User "bob" cannot delete resource "namespaces" '
        'in API group "" at the cluster scope'
    ) in cluster.stderr


def test_crd_established_within_a_second(kubectl132: Kubectl) -> None:
    k = kubectl132
    crd = (
        CRD.replace("crontabs", "backups").replace("CronTab", "Backup").replace("crontab", "backup")
    )
    crd = crd.replace("shortNames: [ct]", "shortNames: [bk]")
    start = time.monotonic()
    k("create", "-f", "-", input=crd)
    k("wait", "--for=condition=Established", "crd/backups.stable.example.com", "--timeout=10s")
    assert time.monotonic() - start < 3.0
    accepted = k(
        "get", "crd", "backups.stable.example.com", "-o", "jsonpath={.status.acceptedNames.kind}"
    )
    assert accepted.stdout == "Backup"
    k("delete", "crd", "backups.stable.example.com")


CEL_CRD = r"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: pools.cel.example.com
spec:
  group: cel.example.com
  scope: Namespaced
  names: {plural: pools, singular: pool, kind: Pool}
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
            x-kubernetes-validations:
            - rule: self.minReplicas <= self.maxReplicas
              message: minReplicas must not exceed maxReplicas
              fieldPath: .minReplicas
            - rule: self.maxReplicas >= oldSelf.maxReplicas
              messageExpression: "'maxReplicas may not shrink below ' + string(oldSelf.maxReplicas)"
            properties:
              minReplicas: {type: integer}
              maxReplicas: {type: integer}
              zone:
                type: string
                x-kubernetes-validations:
                - {rule: "self.lowerAscii() == self", reason: FieldValueForbidden, message: must be lower case}
"""


def test_crd_cel_rules(kubectl132: Kubectl) -> None:
    k = kubectl132
    broken = CEL_CRD.replace("self.minReplicas <= self.maxReplicas", "self.minReplicas <=")
    refused = k("apply", "-f", "-", input=broken, check=False)
    assert refused.returncode != 0
    assert (
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: "
        'Invalid value: "self.minReplicas <=": compilation failed: ERROR: <input>:1:'
    ) in refused.stderr
    assert "Syntax error" in refused.stderr
    k("apply", "-f", "-", input=CEL_CRD)
    k("wait", "--for=condition=Established", "crd/pools.cel.example.com", "--timeout=10s")
    pool = "apiVersion: cel.example.com/v1\nkind: Pool\nmetadata: {name: p}\nspec: %s\n"
    bad = k(
        "apply", "-f", "-", input=pool % "{minReplicas: 5, maxReplicas: 2, zone: EU}", check=False
    )
    assert bad.returncode != 0
    assert 'The Pool "p" is invalid: ' in bad.stderr
    assert (
        'spec.minReplicas: Invalid value: "object": minReplicas must not exceed maxReplicas'
        in bad.stderr
    )
    assert "spec.zone: Forbidden: must be lower case" in bad.stderr
    k("apply", "-f", "-", input=pool % "{minReplicas: 1, maxReplicas: 4, zone: eu}")
    shrink = k(
        "patch", "pool", "p", "--type=merge", "-p", '{"spec":{"maxReplicas":3}}', check=False
    )
    assert shrink.returncode != 0
    assert 'spec: Invalid value: "object": maxReplicas may not shrink below 4' in shrink.stderr
    k("patch", "pool", "p", "--type=merge", "-p", '{"spec":{"maxReplicas":6}}')
    assert k("get", "pool", "p", "-o", "jsonpath={.spec.maxReplicas}").stdout == "6"
    k("delete", "crd", "pools.cel.example.com", "--timeout=20s")


def _add_user(server: Server, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "microkube", "add-user", *args]
        + ["--state-dir", str(server.state_dir), "--port", str(server.port)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_token_users_and_foreign_certificates(
    server: Server, kubectl132: Kubectl, tmp_path: Path
) -> None:
    from microkube.auth import pki

    (tmp_path / "tok.kc").write_text(_add_user(server, "tina", "--token", "--group", "qa"))
    tina = Kubectl(kubectl132.binary, tmp_path / "tok.kc", tmp_path / "tinahome")
    who = json.loads(tina("auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "tina"
    assert who["status"]["userInfo"]["groups"] == ["qa", "system:authenticated"]
    # A certificate from another CA fails the TLS handshake: no identity at all.
    other = pki.ensure(tmp_path / "other")
    cert, key = pki.issue_client_cert(other, "admin", ["system:masters"])
    (tmp_path / "evil.crt").write_bytes(cert)
    (tmp_path / "evil.key").write_bytes(key)
    ctx = ssl.create_default_context(cafile=str(server.ca))
    ctx.load_cert_chain(str(tmp_path / "evil.crt"), str(tmp_path / "evil.key"))
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(server.url + "/api/v1/namespaces", context=ctx, timeout=10)
    # One signed by our CA (here in system:masters) is an identity.
    (tmp_path / "dan.kc").write_text(_add_user(server, "dan", "--group", "system:masters"))
    dan = Kubectl(kubectl132.binary, tmp_path / "dan.kc", tmp_path / "danhome")
    assert "default" in dan("get", "namespaces", "-o", "name").stdout
