"""A real kopf operator's admission webhooks against microkube, unchanged.

The operator (PyPI kopf) runs as its own process with ``@kopf.on.validate``
and ``@kopf.on.mutate`` handlers and its own ``kopf.WebhookServer`` on
127.0.0.1; it registers its Validating/MutatingWebhookConfiguration itself
(``settings.admission.managed``).  The server certificate is handed to kopf
as files: kopf's own self-signed generation needs oscrypto, which cannot
load OpenSSL 3 on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import make_kubectl, serve
from tests.support.server import Kubectl, Server, free_port
from tests.support.webhooks import make_ca_and_cert

pytest.importorskip("kopf")
pytestmark = pytest.mark.kubectl

OPERATOR = """
import os
import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.admission.server = kopf.WebhookServer(
        addr="127.0.0.1",
        port=int(os.environ["HOOK_PORT"]),
        host="127.0.0.1",
        certfile=os.environ["HOOK_CERT"],
        pkeyfile=os.environ["HOOK_KEY"],
        cafile=os.environ["HOOK_CA"],
    )
    settings.admission.managed = "auto.kopf.dev"


@kopf.on.validate("configmaps", id="no-bad-data")
def no_bad_data(body, warnings, **_):
    data = body.get("data") or {}
    if "bad" in data:
        raise kopf.AdmissionError("data.bad is not allowed here", code=422)
    if "old" in data:
        warnings.append("data.old is deprecated")


@kopf.on.mutate("configmaps", id="stamp")
def stamp(patch, **_):
    patch.metadata.labels["stamped-by"] = "kopf"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(tmp_path_factory, "none")


@pytest.fixture(scope="module")
def kubectl(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    d = tmp_path_factory.mktemp("kc")
    return make_kubectl("1.32", server.kubeconfig(d), d / "home")


@pytest.fixture(scope="module")
def operator(
    server: Server, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    d = tmp_path_factory.mktemp("kopf")
    ca, cert, key = make_ca_and_cert(["localhost"], ["127.0.0.1"])
    (d / "ca.crt").write_bytes(ca)
    (d / "tls.crt").write_bytes(cert)
    (d / "tls.key").write_bytes(key)
    (d / "operator.py").write_text(OPERATOR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
    env.update(
        KUBECONFIG=str(kubectl.kubeconfig),
        HOOK_PORT=str(free_port()),
        HOOK_CERT=str(d / "tls.crt"),
        HOOK_KEY=str(d / "tls.key"),
        HOOK_CA=str(d / "ca.crt"),
    )
    log = open(d / "kopf.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "--all-namespaces",
            str(d / "operator.py"),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            p = kubectl(
                "get", "validatingwebhookconfiguration", "auto.kopf.dev", "-o", "json", check=False
            )
            if p.returncode == 0 and json.loads(p.stdout).get("webhooks"):
                m = kubectl("get", "mutatingwebhookconfiguration", "auto.kopf.dev", check=False)
                if m.returncode == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "kopf did not register its webhooks:\n" + (d / "kopf.log").read_text()[-4000:]
                )
            time.sleep(0.3)
        kubectl("create", "namespace", "kopf-test")
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def cm(name: str, **data: str) -> str:
    return json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    )


def test_kopf_validates_and_mutates(kubectl: Kubectl, operator: None) -> None:
    p = kubectl("-n", "kopf-test", "create", "-f", "-", input=cm("nope", bad="1"), check=False)
    assert p.returncode == 1
    assert "denied the request: data.bad is not allowed here" in p.stderr, p.stderr
    assert 'admission webhook "no-bad-data.auto.kopf.dev"' in p.stderr, p.stderr
    p = kubectl("-n", "kopf-test", "create", "-f", "-", input=cm("fine", old="1"))
    assert "Warning: data.old is deprecated" in p.stderr, p.stderr
    got = json.loads(kubectl("-n", "kopf-test", "get", "configmap", "fine", "-o", "json").stdout)
    assert got["metadata"]["labels"]["stamped-by"] == "kopf"
    cfg = json.loads(
        kubectl("get", "validatingwebhookconfiguration", "auto.kopf.dev", "-o", "json").stdout
    )
    assert cfg["webhooks"][0]["clientConfig"]["url"].startswith("https://127.0.0.1:")
