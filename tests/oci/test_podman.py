"""The registry against the real clients: podman and skopeo (and image import).

The clients run on private storage and configuration
(:mod:`tests.support.oci_clients`); the test image is built offline: a busybox
rootfs plus a ``COPY`` layer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from microkube.oci import app as oci_app
from microkube.oci import imports
from microkube.store import engine as store_engine
from tests.oci.conftest import Server
from tests.support import oci_clients
from tests.support.oci_clients import Clients

pytestmark = [
    pytest.mark.podman,
    pytest.mark.skipif(
        not oci_clients.available("podman", "skopeo"), reason="needs podman, skopeo and busybox"
    ),
]

IMAGE = "localhost/mk-test-img:latest"


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    pm = Clients(tmp_path_factory.mktemp("podman"))
    oci_clients.build_image(pm, IMAGE, {"/hello.txt": "hello from microkube\n"}, ["/bin/sh"])
    yield pm
    pm.reset()


@pytest.fixture
def registry(tmp_path: Path, podman: Clients):  # type: ignore[no-untyped-def]
    engine = store_engine.create_engine(tmp_path / "state.db")
    store_engine.migrate(engine)
    with Server(oci_app.create_app(tmp_path, engine)) as server:
        podman.trust(server.address)
        yield server, engine, tmp_path
    engine.dispose()


def _head_digest(address: str, repo: str, ref: str) -> str:
    r = httpx.head(
        f"http://{address}/v2/{repo}/manifests/{ref}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 200
    return r.headers["Docker-Content-Digest"]


def test_podman_push_and_pull(podman: Clients, registry) -> None:  # type: ignore[no-untyped-def]
    server, _, tmp_path = registry
    target = f"{server.address}/mk/test:v1"
    digestfile = tmp_path / "digest"
    podman.out("push", "--tls-verify=false", "--digestfile", str(digestfile), IMAGE, target)
    pushed = digestfile.read_text().strip()
    assert _head_digest(server.address, "mk/test", "v1") == pushed
    tags = httpx.get(f"http://{server.address}/v2/mk/test/tags/list").json()
    assert tags == {"name": "mk/test", "tags": ["v1"]}

    puller = podman.fresh("pull")
    try:
        puller.out("pull", "--tls-verify=false", target)
        assert puller.out("image", "inspect", "--format", "{{.Digest}}", target) == pushed
        layers = puller.out("image", "inspect", "--format", "{{len .RootFS.Layers}}", target)
        assert layers == "2"
        original = podman.out("image", "inspect", "--format", "{{.RootFS.Layers}}", IMAGE)
        assert puller.out("image", "inspect", "--format", "{{.RootFS.Layers}}", target) == original
    finally:
        puller.reset()


def test_skopeo_copy_mount_and_roundtrip(podman: Clients, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, _, _ = registry
    first = f"docker://{server.address}/skopeo/one:latest"
    podman.out("copy", "--dest-tls-verify=false", f"{podman.storage}{IMAGE}", first, tool="skopeo")
    # Registry to registry in another repository: blobs are mounted, not re-sent.
    second = f"docker://{server.address}/skopeo/two:latest"
    podman.out(
        "copy", "--src-tls-verify=false", "--dest-tls-verify=false", first, second, tool="skopeo"
    )
    one = _head_digest(server.address, "skopeo/one", "latest")
    assert _head_digest(server.address, "skopeo/two", "latest") == one
    out = tmp_path / "layout"
    podman.out("copy", "--src-tls-verify=false", second, f"oci:{out}:latest", tool="skopeo")
    index = json.loads((out / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    # Compare by content: skopeo may convert media types on the way to an OCI layout.
    manifest = json.loads((out / "blobs/sha256" / manifest_digest.split(":")[1]).read_bytes())
    for layer in manifest["layers"]:
        blob = out / "blobs/sha256" / layer["digest"].split(":")[1]
        assert blob.stat().st_size == layer["size"]
    inspect = json.loads(podman.out("inspect", "--tls-verify=false", second, tool="skopeo"))
    assert inspect["Digest"] == one


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_import_saved_archive(podman: Clients, registry, fmt: str) -> None:  # type: ignore[no-untyped-def]
    server, engine, state_dir = registry
    archive = state_dir / f"image-{fmt}.tar"
    podman.out("save", "--format", fmt, "-o", str(archive), IMAGE)
    refs = imports.import_archive(archive, engine, state_dir)
    assert [(r.repository, r.tag) for r in refs] == [("mk-test-img", "latest")]
    listed = imports.list_images(engine)
    assert [(i.repository, i.tag, i.digest) for i in listed] == [
        ("mk-test-img", "latest", refs[0].digest)
    ]
    assert listed[0].size > 1_000_000  # busybox is in there
    # The imported image is pullable by the real client.
    target = f"{server.address}/mk-test-img:latest"
    puller = podman.fresh(f"import-{fmt}")
    try:
        puller.out("pull", "--tls-verify=false", target)
        original = podman.out("image", "inspect", "--format", "{{.RootFS.Layers}}", IMAGE)
        assert puller.out("image", "inspect", "--format", "{{.RootFS.Layers}}", target) == original
        assert puller.out("image", "inspect", "--format", "{{.Id}}", target) == podman.out(
            "image", "inspect", "--format", "{{.Id}}", IMAGE
        )
    finally:
        puller.reset()


@pytest.mark.skipif(not oci_clients.available("buildah"), reason="buildah not installed")
def test_buildah_push_docker_format(podman: Clients, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, _, _ = registry
    target = f"{server.address}/buildah/img:v1"
    digestfile = tmp_path / "digest"
    # Docker schema 2 on the wire (buildah converts the OCI image), blobs pushed by buildah.
    podman.out(
        "push", "--format", "v2s2", "--digestfile", str(digestfile), IMAGE,
        f"docker://{target}", tool="buildah",
    )
    pushed = digestfile.read_text().strip()
    r = httpx.get(
        f"http://{server.address}/v2/buildah/img/manifests/v1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == pushed
    assert r.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert len(r.json()["layers"]) == 2
    puller = podman.fresh("buildah")
    try:
        puller.out("pull", "--tls-verify=false", target)
        assert puller.out("image", "inspect", "--format", "{{.Digest}}", target) == pushed
        original = podman.out("image", "inspect", "--format", "{{.RootFS.Layers}}", IMAGE)
        assert puller.out("image", "inspect", "--format", "{{.RootFS.Layers}}", target) == original
    finally:
        puller.reset()


def _docker_daemon() -> bool:
    if not shutil.which("docker"):
        return False
    done = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not _docker_daemon(), reason="no Docker daemon on this host")
def test_docker_push_and_pull(podman: Clients, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``docker push`` to 127.0.0.1:<port> (Docker trusts loopback registries over HTTP)."""
    server, _, _ = registry
    archive = tmp_path / "img.tar"
    podman.out("save", "--format", "docker-archive", "-o", str(archive), IMAGE)
    tag = f"127.0.0.1:{server.port}/docker/img:v1"

    def docker(*args: str) -> str:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, f"docker {args}: {done.stderr}"
        return done.stdout

    loaded = docker("load", "-i", str(archive)).strip().rsplit(" ", 1)[-1]
    try:
        docker("tag", loaded, tag)
        out = docker("push", tag)
        pushed = out.split("digest: ")[1].split()[0]
        assert _head_digest(server.address, "docker/img", "v1") == pushed
        docker("rmi", tag)
        docker("pull", tag)
        assert pushed in docker("image", "inspect", "--format", "{{json .RepoDigests}}", tag)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag, loaded], capture_output=True, check=False)
