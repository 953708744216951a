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
session.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

BUSYBOX_IMAGE = "localhost/mk-busybox:test"
_BUSYBOX = Path("/bin/busybox")
_PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def busybox_available() -> bool:
    return _BUSYBOX.is_file() and shutil.which("podman") is not None


def _applets() -> list[str]:
    out = subprocess.run([str(_BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    return [a for a in out.stdout.split() if a and a != "busybox"]


def busybox_rootfs_tar() -> bytes:
    """A tar of a minimal root filesystem around the host's static busybox."""
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
    return buf.getvalue()


def busybox_image(env: Mapping[str, str] | None = None, *, tag: str = BUSYBOX_IMAGE) -> str:
    """Import the busybox image into the storage seen with ``env``; return its name."""
    full_env = dict(os.environ if env is None else env)
    subprocess.run(
        ["podman", "import", "--change", 'CMD ["/bin/sh"]', "-", tag],
        input=busybox_rootfs_tar(),
        env=full_env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return tag
