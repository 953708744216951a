"""Build test images without internet access.

No registry is reachable from the test machines, so test images are made
locally: :func:`busybox_image` builds a root filesystem from the host's static
``/bin/busybox`` (``busybox --install -s``, plus ``/etc/passwd``, ``/etc/group``
and ``/tmp``), tars it and runs ``podman import``.  The result,
``localhost/mk-busybox:test``, has ``CMD ["/bin/sh"]`` and every busybox applet
(``sh``, ``nc``, ``sleep``, ``cat`` …).

Tests must run ``podman`` with microkube's configuration, i.e. the environment
returned by :meth:`microkube.kubelet.podman_service.PodmanService.env`
(``CONTAINERS_CONF`` and ``CONTAINERS_REGISTRIES_CONF`` pointing at the files
under ``<state_dir>/podman/``), so that the image lands in the storage the
service uses.  The import is idempotent and cheap (~0.1 s); callers cache it per
session.  :func:`curl_image` adds the host's dynamically linked ``curl`` and
``getent`` with their libraries, for clients that resolve names through glibc.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

BUSYBOX_IMAGE = "localhost/mk-busybox:test"
CURL_IMAGE = "localhost/mk-curl:test"
_ROOTFS_LABEL = "io.microkube.test.rootfs"
_BUSYBOX = Path("/bin/busybox")
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def busybox_available() -> bool:
    return _BUSYBOX.is_file() and shutil.which("podman") is not None


def _applets() -> list[str]:
    out = subprocess.run([str(_BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    return [a for a in out.stdout.split() if a and a != "busybox"]


def busybox_rootfs_tar(extra: Mapping[str, bytes] | None = None) -> bytes:
    """A tar of a minimal root filesystem around the host's static busybox (plus ``extra`` files)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "root", "proc", "sys", "dev", "var", "usr", "usr/bin"):
            add_dir(d, 0o700 if d == "root" else 0o755)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", _BUSYBOX.read_bytes(), 0o755)
        for applet in _applets():
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
        add_file("etc/passwd", _PASSWD.encode())
        add_file("etc/group", _GROUP.encode())
        dirs = {"bin", "etc", "root", "proc", "sys", "dev", "var", "usr", "usr/bin", "tmp"}
        for name, data in sorted((extra or {}).items()):
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    add_dir(d)
            add_file(name, data, 0o644 if name.startswith("etc/") else 0o755)
    return buf.getvalue()


def curl_available() -> bool:
    tools = ("curl", "getent", "ldd")
    return busybox_available() and all(shutil.which(t) is not None for t in tools)


def _with_libraries(binary: str) -> dict[str, bytes]:
    """``binary`` at its host path plus every shared library ``ldd`` lists (dereferenced)."""
    files = {binary.lstrip("/"): Path(binary).read_bytes()}
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            files[path.lstrip("/")] = Path(path).read_bytes()
    return files


def curl_image(env: Mapping[str, str] | None = None) -> str:
    """busybox plus the host's dynamically linked ``curl`` and ``getent``.

    Unlike the static busybox applets (busybox ``nslookup`` applies the search
    list only to names without a dot), glibc's resolver honours the pod's
    resolv.conf (``search`` list, ``ndots:5``) exactly as a real image does.
    """
    extra = _with_libraries(shutil.which("curl") or "/usr/bin/curl")
    extra.update(_with_libraries(shutil.which("getent") or "/usr/bin/getent"))
    libc = next(name for name in extra if name.endswith("/libc.so.6"))
    for nss in ("libnss_dns.so.2", "libnss_files.so.2"):  # dlopen()ed, so not in ldd's list
        path = Path("/", libc).parent / nss
        if path.exists():
            extra[str(path).lstrip("/")] = path.read_bytes()
    extra["etc/nsswitch.conf"] = b"hosts: files dns\n"
    return busybox_image(env, tag=CURL_IMAGE, rootfs=busybox_rootfs_tar(extra))


def busybox_image(
    env: Mapping[str, str] | None = None, *, tag: str = BUSYBOX_IMAGE, rootfs: bytes | None = None
) -> str:
    """Import the busybox image (or ``rootfs``) into the storage seen with ``env``; return its name.

    The image is labelled with the rootfs digest; when ``tag`` already holds
    those exact bytes nothing is imported, so repeated runs do not pile up
    dangling images (each import makes a new image ID: its config has a date).
    """
    full_env = dict(os.environ if env is None else env)
    data = busybox_rootfs_tar() if rootfs is None else rootfs
    digest = hashlib.sha256(data).hexdigest()
    have = subprocess.run(
        ["podman", "image", "inspect", "--format", '{{index .Labels "' + _ROOTFS_LABEL + '"}}', tag],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if have.returncode == 0 and have.stdout.strip() == digest:
        return tag
    subprocess.run(
        ["podman", "import", "--change", 'CMD ["/bin/sh"]', "--change", f"LABEL {_ROOTFS_LABEL}={digest}", "-", tag],
        input=data,
        env=full_env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    subprocess.run(  # the image the tag pointed at before, if nothing else uses it
        ["podman", "image", "prune", "-f", "--filter", f"label={_ROOTFS_LABEL}"],
        env=full_env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return tag
