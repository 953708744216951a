"""Real registry clients (podman, skopeo, buildah) on private storage and configuration.

Everything the clients touch is private to the test: their own ``--root`` and
``--runroot``, a ``containers.conf`` (runc, lower ulimits), a
``registries.conf`` trusting only the test registry, a ``HOME`` whose
``.config/containers/certs.d`` holds the registry's CA, and an auth file
(``REGISTRY_AUTH_FILE``) for ``login``.  The host's configuration is never read
or edited, and images built here never land in the storage a microkube uses,
so a pod running one really pulled it from the registry.

:func:`build_image` builds a multi-layer image offline: ``podman import`` of a
busybox rootfs, then a Containerfile adding one ``COPY`` layer per file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def available(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools) and os.path.exists("/bin/busybox")


class Clients:
    """podman/skopeo/buildah with one private storage and configuration."""

    def __init__(self, base: Path) -> None:
        self.base = base
        # podman refuses a runroot longer than 50 characters: keep it short.
        self.root, self.runroot = base / "root", Path(tempfile.mkdtemp(prefix="mkrr"))
        # Private tmp_dir and network_config_dir too: the defaults (/run/libpod,
        # /etc/containers/networks) are host-wide, and a podman that finds another
        # one's "alive" file missing "refreshes" every container on the host.
        self.tmpdir = Path(tempfile.mkdtemp(prefix="mktd"))
        (base / "networks").mkdir(exist_ok=True)
        (base / "containers.conf").write_text(
            f'[engine]\nruntime="runc"\ntmp_dir="{self.tmpdir}"\n'
            f'[network]\nnetwork_config_dir="{base / "networks"}"\n'
            '[containers]\ndefault_ulimits=["nofile=1024:1024","nproc=4096:4096"]\n'
        )
        self.registries = base / "registries.conf"
        self.registries.write_text("")
        self.home = base / "home"
        self.home.mkdir(exist_ok=True)
        self.authfile = base / "auth.json"
        self.authfile.write_text("{}")
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "CONTAINERS_CONF": str(base / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries),
            "REGISTRY_AUTH_FILE": str(self.authfile),
        }

    def trust(self, address: str, *, ca: bytes | None = None) -> None:
        """Plain HTTP for ``address``, or TLS verified against ``ca``."""
        insecure = "false" if ca else "true"
        self.registries.write_text(f'[[registry]]\nlocation = "{address}"\ninsecure = {insecure}\n')
        certs = self.home / ".config/containers/certs.d"
        shutil.rmtree(certs, ignore_errors=True)
        if ca is not None:
            (certs / address).mkdir(parents=True)
            (certs / address / "ca.crt").write_bytes(ca)

    def run(
        self, *args: str, tool: str = "podman", check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        if tool in ("podman", "buildah"):
            cmd = [tool, "--root", str(self.root), "--runroot", str(self.runroot), *args]
        else:
            cmd = [tool, *args]
        done = subprocess.run(
            cmd, env=self.env, capture_output=True, text=True, timeout=180, check=False, input=input
        )
        if check:
            assert done.returncode == 0, f"{cmd}: {done.stderr}"
        return done

    def out(self, *args: str, tool: str = "podman") -> str:
        return self.run(*args, tool=tool).stdout.strip()

    def fresh(self, name: str) -> Clients:
        """The same configuration over an empty image store (a real pull)."""
        other = Clients.__new__(Clients)
        other.__dict__.update(self.__dict__)
        other.root = self.base / f"{name}-root"
        other.runroot = Path(tempfile.mkdtemp(prefix="mkrr"))
        return other

    def reset(self) -> None:
        """Remove the private images and directories.

        Not ``podman system reset``: even with ``--root`` it deletes every
        network on the host and, with the default ``tmp_dir``, the host-wide
        ``/run/libpod`` (other podmans then "refresh" all their containers).
        """
        cmd = ["podman", "--root", str(self.root), "--runroot", str(self.runroot)]
        subprocess.run(
            [*cmd, "rmi", "-a", "-f"], env=self.env, capture_output=True, timeout=120, check=False
        )
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f]
        for mount in sorted(mounts, reverse=True):
            if mount.startswith((str(self.root) + "/", str(self.runroot) + "/")):
                subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
        for path in (self.root, self.runroot, self.tmpdir):
            shutil.rmtree(path, ignore_errors=True)

    @property
    def storage(self) -> str:
        """skopeo's name for this storage (prefix of an image reference)."""
        return f"containers-storage:[overlay@{self.root}+{self.runroot}]"


def build_image(clients: Clients, tag: str, files: dict[str, str], cmd: list[str]) -> str:
    """A busybox image plus one ``COPY`` layer per file in ``files`` (path → text)."""
    base = clients.base / "build"
    rootfs = base / "rootfs"
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "sleep", "echo"):
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(base / "base.tar"), "."], check=True)
    clients.run("import", str(base / "base.tar"), "localhost/mk-test-base")
    context = base / "context"
    context.mkdir(exist_ok=True)
    lines = ["FROM localhost/mk-test-base"]
    for i, (path, text) in enumerate(files.items()):
        (context / f"f{i}").write_text(text)
        lines.append(f"COPY f{i} {path}")
    lines.append("CMD " + str(cmd).replace("'", '"'))
    (context / "Containerfile").write_text("\n".join(lines) + "\n")
    clients.run("build", "-q", "-t", tag, str(context))
    return tag


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    pm = Clients(tmp_path_factory.mktemp("clients"))
    yield pm
    pm.reset()
