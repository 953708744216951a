"""The registry against the real clients: podman and skopeo (and image import).

Everything podman touches is private to the test: its own ``--root`` and
``--runroot``, a ``containers.conf`` (runc, lower ulimits) and a
``registries.conf`` marking the test registry insecure, passed through
``CONTAINERS_CONF``/``CONTAINERS_REGISTRIES_CONF``; host configuration is
never read or edited.  The test image is built offline: ``podman import`` of a
busybox rootfs, plus a ``COPY`` layer from a Containerfile.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from microkube.oci import app as oci_app
from microkube.oci import imports
from microkube.store import engine as store_engine
from tests.oci.conftest import Server

pytestmark = [
    pytest.mark.podman,
    pytest.mark.skipif(
        not (shutil.which("podman") and shutil.which("skopeo") and os.path.exists("/bin/busybox")),
        reason="needs podman, skopeo and busybox",
    ),
]

IMAGE = "localhost/mk-test-img:latest"


class Podman:
    def __init__(self, base: Path) -> None:
        self.base = base
        # podman refuses a runroot longer than 50 characters: keep it short.
        self.root, self.runroot = base / "root", Path(tempfile.mkdtemp(prefix="mkrr"))
        (base / "containers.conf").write_text(
            '[engine]\nruntime="runc"\n[containers]\n'
            'default_ulimits=["nofile=1024:1024","nproc=4096:4096"]\n'
        )
        self.registries = base / "registries.conf"
        self.registries.write_text("")
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(base / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries),
        }

    def trust(self, address: str) -> None:
        self.registries.write_text(f'[[registry]]\nlocation = "{address}"\ninsecure = true\n')

    def run(self, *args: str, tool: str = "podman") -> str:
        cmd = [tool, "--root", str(self.root), "--runroot", str(self.runroot), *args]
        if tool == "skopeo":
            cmd = ["skopeo", *args]
        done = subprocess.run(
            cmd, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{cmd}: {done.stderr}"
        return done.stdout.strip()

    def fresh(self, name: str) -> Podman:
        """The same configuration over an empty image store (a real pull)."""
        other = Podman.__new__(Podman)
        other.__dict__.update(self.__dict__)
        other.root = self.base / f"{name}-root"
        other.runroot = Path(tempfile.mkdtemp(prefix="mkrr"))
        return other

    def reset(self) -> None:
        subprocess.run(
            [
                "podman",
                "--root",
                str(self.root),
                "--runroot",
                str(self.runroot),
                "system",
                "reset",
                "-f",
            ],
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(self.runroot, ignore_errors=True)

    @property
    def storage(self) -> str:
        return f"containers-storage:[overlay@{self.root}+{self.runroot}]"


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("podman")
    pm = Podman(base)
    rootfs = base / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    subprocess.run(["/bin/busybox", "--install", "-s", str(rootfs / "bin")], check=False)
    for applet in ("sh", "ls", "cat"):
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(base / "base.tar"), "."], check=True)
    pm.run("import", str(base / "base.tar"), "localhost/mk-test-base")
    context = base / "context"
    context.mkdir()
    (context / "hello.txt").write_text("hello from microkube\n")
    (context / "Containerfile").write_text(
        "FROM localhost/mk-test-base\nCOPY hello.txt /hello.txt\n"
    )
    pm.run("build", "-q", "-t", IMAGE, str(context))
    yield pm
    pm.reset()


@pytest.fixture
def registry(tmp_path: Path, podman: Podman):  # type: ignore[no-untyped-def]
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


def test_podman_push_and_pull(podman: Podman, registry) -> None:  # type: ignore[no-untyped-def]
    server, _, tmp_path = registry
    target = f"{server.address}/mk/test:v1"
    digestfile = tmp_path / "digest"
    podman.run("push", "--tls-verify=false", "--digestfile", str(digestfile), IMAGE, target)
    pushed = digestfile.read_text().strip()
    assert _head_digest(server.address, "mk/test", "v1") == pushed
    tags = httpx.get(f"http://{server.address}/v2/mk/test/tags/list").json()
    assert tags == {"name": "mk/test", "tags": ["v1"]}

    puller = podman.fresh("pull")
    try:
        puller.run("pull", "--tls-verify=false", target)
        assert puller.run("image", "inspect", "--format", "{{.Digest}}", target) == pushed
        layers = puller.run("image", "inspect", "--format", "{{len .RootFS.Layers}}", target)
        assert layers == "2"
        original = podman.run("image", "inspect", "--format", "{{.RootFS.Layers}}", IMAGE)
        assert puller.run("image", "inspect", "--format", "{{.RootFS.Layers}}", target) == original
    finally:
        puller.reset()


def test_skopeo_copy_mount_and_roundtrip(podman: Podman, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server, _, _ = registry
    first = f"docker://{server.address}/skopeo/one:latest"
    podman.run("copy", "--dest-tls-verify=false", f"{podman.storage}{IMAGE}", first, tool="skopeo")
    # Registry to registry in another repository: blobs are mounted, not re-sent.
    second = f"docker://{server.address}/skopeo/two:latest"
    podman.run(
        "copy", "--src-tls-verify=false", "--dest-tls-verify=false", first, second, tool="skopeo"
    )
    one = _head_digest(server.address, "skopeo/one", "latest")
    assert _head_digest(server.address, "skopeo/two", "latest") == one
    out = tmp_path / "layout"
    podman.run("copy", "--src-tls-verify=false", second, f"oci:{out}:latest", tool="skopeo")
    index = json.loads((out / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"]
    # Compare by content: skopeo may convert media types on the way to an OCI layout.
    manifest = json.loads((out / "blobs/sha256" / manifest_digest.split(":")[1]).read_bytes())
    for layer in manifest["layers"]:
        blob = out / "blobs/sha256" / layer["digest"].split(":")[1]
        assert blob.stat().st_size == layer["size"]
    inspect = json.loads(podman.run("inspect", "--tls-verify=false", second, tool="skopeo"))
    assert inspect["Digest"] == one


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_import_saved_archive(podman: Podman, registry, fmt: str) -> None:  # type: ignore[no-untyped-def]
    server, engine, state_dir = registry
    archive = state_dir / f"image-{fmt}.tar"
    podman.run("save", "--format", fmt, "-o", str(archive), IMAGE)
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
        puller.run("pull", "--tls-verify=false", target)
        original = podman.run("image", "inspect", "--format", "{{.RootFS.Layers}}", IMAGE)
        assert puller.run("image", "inspect", "--format", "{{.RootFS.Layers}}", target) == original
        assert puller.run("image", "inspect", "--format", "{{.Id}}", target) == podman.run(
            "image", "inspect", "--format", "{{.Id}}", IMAGE
        )
    finally:
        puller.reset()
