"""End to end: an admission webhook running in a pod behind a Service (clientConfig.service).

The webhook is socat (the host's Debian binary and its libraries, copied into
the busybox test image) terminating TLS with a certificate for
``hook.default.svc`` from a Secret, running a busybox ``sh`` script per
connection that answers AdmissionReviews: ``/validate`` denies names starting
with ``forbidden-``, ``/mutate`` adds a label with a JSONPatch.  microkube
resolves the Service to the pod's ready endpoint and verifies the
certificate against the configuration's caBundle with the service DNS name.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
from collections.abc import Iterator

import pytest
import yaml

from tests.support import images
from tests.support.kube import PODMAN_E2E, eventually, get_json
from tests.support.server import Kubectl, Server, podman_server
from tests.support.webhooks import make_ca_and_cert

pytestmark = [
    *PODMAN_E2E,
    pytest.mark.kubectl,
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed"),
]
R = random.randint(1, 199)
SOCAT_IMAGE = "localhost/mk-socat:test"
PATCH = base64.b64encode(
    json.dumps(
        [{"op": "add", "path": "/metadata/labels", "value": {"mutated-in-pod": "yes"}}]
    ).encode()
).decode()

HANDLER = r"""#!/bin/sh
read -r method path proto
len=0
while read -r line; do
  line=$(printf %s "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in
    [Cc]ontent-[Ll]ength:*) len=$(echo "${line#*:}" | tr -d ' ');;
  esac
done
body=$(head -c "$len")
uid=$(printf %s "$body" | sed -n 's/.*"request":{"uid":"\([^"]*\)".*/\1/p')
case "$path" in
  /mutate*)
    resp='{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"'$uid'","allowed":true,"patchType":"JSONPatch","patch":"PATCH"}}';;
  *)
    case "$body" in
      *'"name":"forbidden-'*)
        resp='{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"'$uid'","allowed":false,"status":{"code":403,"message":"pods said no"}}}';;
      *)
        resp='{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"'$uid'","allowed":true}}';;
    esac;;
esac
printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' "${#resp}" "$resp"
""".replace("PATCH", PATCH)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    extra = images._with_libraries(shutil.which("socat") or "/usr/bin/socat")  # noqa: SLF001
    images.busybox_image(tag=SOCAT_IMAGE, rootfs=images.busybox_rootfs_tar(extra))
    base = tmp_path_factory.mktemp("wh")
    with podman_server(base, pod_cidr=f"10.218.{R}.0/24", service_cidr=f"10.219.{R}.0/24") as srv:
        yield srv


def manifests(ca: bytes, cert: bytes, key: bytes) -> list[dict]:
    labels = {"app": "hook"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook-tls"},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64.b64encode(cert).decode(),
                "tls.key": base64.b64encode(key).decode(),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "hook-script"},
            "data": {"handler.sh": HANDLER},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hook", "labels": labels},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "socat",
                        "image": SOCAT_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": [
                            "/usr/bin/socat",
                            "OPENSSL-LISTEN:8443,reuseaddr,fork,cert=/tls/tls.crt,key=/tls/tls.key,verify=0",
                            "EXEC:/bin/sh /scripts/handler.sh",
                        ],
                        "ports": [{"name": "https", "containerPort": 8443}],
                        "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
                        "volumeMounts": [
                            {"name": "tls", "mountPath": "/tls"},
                            {"name": "scripts", "mountPath": "/scripts"},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "tls", "secret": {"secretName": "hook-tls"}},
                    {"name": "scripts", "configMap": {"name": "hook-script"}},
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hook"},
            "spec": {
                "selector": labels,
                "ports": [{"name": "https", "port": 443, "targetPort": "https"}],
            },
        },
    ]


def configurations(ca: bytes) -> list[dict]:
    def wh(name: str, path: str) -> dict:
        return {
            "name": name,
            "clientConfig": {
                "service": {"namespace": "default", "name": "hook", "path": path},
                "caBundle": base64.b64encode(ca).decode(),
            },
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["configmaps"],
                }
            ],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "guarded"}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }

    g = "admissionregistration.k8s.io/v1"
    return [
        {
            "apiVersion": g,
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "pod-m"},
            "webhooks": [wh("m.pod.example.com", "/mutate")],
        },
        {
            "apiVersion": g,
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "pod-v"},
            "webhooks": [wh("v.pod.example.com", "/validate")],
        },
    ]


def test_webhook_in_a_pod_behind_a_service(kubectl: Kubectl) -> None:
    ca, cert, key = make_ca_and_cert(["hook.default.svc"], [])
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests(ca, cert, key)))
    kubectl("wait", "--for=condition=Ready", "pod/hook", "--timeout=120s", timeout=150)
    eventually(
        lambda: (get_json(kubectl, "endpoints", "hook").get("subsets") or [{}])[0].get("addresses"),
        "the hook endpoints",
    )
    kubectl("create", "namespace", "guarded")
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(configurations(ca)))
    doc = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "forbidden-x"}})
    p = kubectl("-n", "guarded", "create", "-f", "-", input=doc, check=False)
    assert p.returncode == 1
    assert 'admission webhook "v.pod.example.com" denied the request: pods said no' in p.stderr, (
        p.stderr
    )
    doc = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ok"}})
    kubectl("-n", "guarded", "create", "-f", "-", input=doc)
    got = get_json(kubectl, "-n", "guarded", "configmap", "ok")
    assert got["metadata"]["labels"] == {"mutated-in-pod": "yes"}
    kubectl("delete", "mutatingwebhookconfiguration", "pod-m")
    kubectl("delete", "validatingwebhookconfiguration", "pod-v")
    kubectl("delete", "pod", "hook", "--wait=false")
