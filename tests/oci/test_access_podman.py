"""The registry with basic auth and TLS, against real podman/skopeo and the kubelet.

One ``microkube serve --registry-tls --registry-user ... --registry-password-file ...``
with real Podman (pod CIDR 10.224.X.0/24, X ≥ 128; service CIDR 10.225.X.0/24).
Clients verify the registry's certificate against the instance CA (``pki/ca.crt``)
and must log in; the kubelet's Podman is given the CA and credentials by microkube,
so a Deployment of a pushed image still runs.
"""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.oci.test_kubectl_pull import CMD, FILES, logs, remove_host_images, wait_running
from tests.support import oci_clients
from tests.support.kube import NEEDS_KUBECTL
from tests.support.oci_clients import Clients, clients  # noqa: F401 - fixture
from tests.support.server import Kubectl, Server, free_port, kubectl_for, podman_server

pytestmark = [
    pytest.mark.podman,
    pytest.mark.skipif(
        not oci_clients.available("podman", "skopeo"), reason="needs podman, skopeo, busybox"
    ),
    NEEDS_KUBECTL,
    pytest.mark.timeout(300),
]

USER, PASSWORD = "alice", "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    r = random.randint(128, 254)
    port = free_port()
    base = tmp_path_factory.mktemp("regaccess")
    secret = base / "password"
    secret.write_text(PASSWORD + "\n")
    args = ["--registry-port", str(port), "--registry-tls"]
    args += ["--registry-user", USER, "--registry-password-file", str(secret)]
    with podman_server(
        base, pod_cidr=f"10.224.{r}.0/24", service_cidr=f"10.225.{r}.0/24", registry_args=args
    ) as srv:
        yield srv, f"localhost:{port}"
    remove_host_images(f"localhost:{port}/")


@pytest.fixture(scope="module")
def kubectl(server: tuple[Server, str], tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return kubectl_for(server[0], tmp_path_factory)


def test_https_and_401(server: tuple[Server, str]) -> None:
    srv, address = server
    verify = ssl.create_default_context(cafile=str(srv.ca))
    with httpx.Client(base_url=f"https://{address}", verify=verify) as c:
        r = c.get("/v2/")
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="microkube"'
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert c.get("/v2/_catalog", auth=(USER, "wrong")).status_code == 401
        assert c.get("/v2/", auth=(USER, PASSWORD)).status_code == 200
        assert c.get("/v2/_catalog", auth=(USER, PASSWORD)).json() == {"repositories": []}
    # Plain HTTP on the TLS port is not served.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{address}/v2/", timeout=5)
    # The ConfigMap of KEP-1755 names the registry.
    code, cm = srv.request("GET", "/api/v1/namespaces/kube-public/configmaps/local-registry-hosting")
    assert code == 200 and f'host: "{address}"' in cm["data"]["localRegistryHosting.v1"]


def test_login_push_and_run(
    server: tuple[Server, str], kubectl: Kubectl, clients: Clients, tmp_path: Path  # noqa: F811
) -> None:
    srv, address = server
    clients.registries.write_text("")  # TLS verified against the system roots only
    untrusted = clients.run("inspect", f"docker://{address}/x:1", tool="skopeo", check=False)
    assert "certificate" in untrusted.stderr, untrusted.stderr
    clients.trust(address, ca=srv.ca.read_bytes())
    image = oci_clients.build_image(clients, "localhost/mk-app:1", FILES, CMD)
    target = f"{address}/secure/app:1"

    denied = clients.run("push", image, target, check=False)
    assert denied.returncode != 0 and "unauthorized" in denied.stderr.lower(), denied.stderr
    bad = clients.run(
        "login", "-u", USER, "--password-stdin", address, input="nope\n", check=False
    )
    assert bad.returncode != 0
    clients.run("login", "-u", USER, "--password-stdin", address, input=PASSWORD + "\n")
    digestfile = tmp_path / "digest"
    clients.run("push", "--digestfile", str(digestfile), image, target)
    pushed = digestfile.read_text().strip()
    # skopeo shares the auth file and the certs.d trust (TLS verified, no --tls-verify=false).
    inspected = json.loads(clients.out("inspect", f"docker://{target}", tool="skopeo"))
    assert inspected["Digest"] == pushed
    clients.run("logout", address)
    out = clients.run("inspect", f"docker://{target}", tool="skopeo", check=False)
    assert out.returncode != 0
    clients.out("login", "-u", USER, "-p", PASSWORD, address, tool="skopeo")
    assert json.loads(clients.out("inspect", f"docker://{target}", tool="skopeo"))["Digest"] == pushed

    # The kubelet pulls over TLS with microkube's CA and the registry credentials.
    kubectl("create", "deployment", "secure", f"--image={target}")
    pod = wait_running(kubectl, "app=secure")
    assert "layer two" in logs(kubectl, pod["metadata"]["name"], "layer two")
    assert pushed in pod["status"]["containerStatuses"][0]["imageID"]
    kubectl("delete", "deployment", "secure", "--wait=false")
