"""Who may reach the registry, and over what: basic-auth credentials and TLS.

Off by default: the registry listens on 127.0.0.1 in plain HTTP with no
access control, like MicroK8s' registry addon, so ``podman push
localhost:32000/app:1`` just works.  A user who exposes it beyond loopback
(``--registry-bind-address``) turns on:

* HTTP basic authentication (``--registry-user`` plus
  ``--registry-password-file``): every request, ``/v2/`` included, needs the
  credentials; otherwise 401 with ``WWW-Authenticate: Basic realm=...`` and
  the spec's ``UNAUTHORIZED`` error body (:func:`microkube.oci.app._check_auth`);
* TLS (``--registry-tls``): a serving certificate ``pki/registry.crt`` signed
  by the instance CA (``pki/ca.crt``, the one in the kubeconfig), with SANs for
  loopback, the host name and IP, and the bind address.

The kubelet's Podman is given the same CA and credentials
(:class:`microkube.kubelet.podman_service.PodmanService`), so pods keep
pulling ``localhost:<port>/...`` images.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path

from microkube.auth import pki as pki_mod
from microkube.settings import RegistrySettings

log = logging.getLogger(__name__)

_LOOPBACK_NAMES = ("localhost", "")


def credentials(s: RegistrySettings) -> tuple[str, str] | None:
    """``(user, password)`` when basic auth is configured, else None.

    The password is the first line of ``s.password_file``; an empty one is refused.
    """
    if not s.username:
        return None
    try:
        password = Path(s.password_file).read_text().splitlines()[0]
    except (OSError, IndexError) as exc:
        raise SystemExit(f"error: cannot read the registry password file: {exc}") from exc
    if not password:
        raise SystemExit("error: the registry password file is empty")
    return s.username, password


def is_loopback(address: str) -> bool:
    if address in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def warn_if_exposed(s: RegistrySettings) -> None:
    if is_loopback(s.bind_address):
        return
    if not s.username:
        log.warning(
            "the registry listens on %s without authentication: anyone who reaches it can "
            "push and delete images (--registry-user/--registry-password-file)",
            s.bind_address,
        )
    if not s.tls:
        log.warning("the registry listens on %s in plain HTTP (--registry-tls)", s.bind_address)


def serving_cert(pki: pki_mod.Pki, s: RegistrySettings, host_ip: str = "") -> tuple[Path, Path]:
    """The registry's (cert, key) paths, issued by the instance CA on first use."""
    ips = ["127.0.0.1", "::1"]
    names = ["localhost", socket.gethostname()]
    for extra in (s.bind_address, host_ip):
        if not extra or extra in ("0.0.0.0", "::"):
            continue
        try:
            ips.append(str(ipaddress.ip_address(extra)))
        except ValueError:
            names.append(extra)
    return pki_mod.ensure_serving_cert(pki, "registry", "microkube-registry", ips=ips, names=names)
