"""Registry credentials for an image from the pod's ``imagePullSecrets``.

Mirrors the kubelet's credential keyring (``pkg/credentialprovider``) in the
small: each secret of type ``kubernetes.io/dockerconfigjson`` (``{"auths":
{...}}``) or ``kubernetes.io/dockercfg`` (the bare map) contributes entries
keyed by a registry location; an entry matches an image when the hosts are
equal (``*`` globs allowed in the host, ``index.docker.io`` and
``registry-1.docker.io`` mean ``docker.io``) and its path, if any, is a prefix
of the repository.  Matches come most specific first, in secret order, and the
kubelet tries them one by one until a pull succeeds (then anonymously when
none matched).  Entries carry ``username``/``password`` or ``auth``
(base64 ``user:password``).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Iterable
from typing import Any

from microkube.kubelet import runtime as rt

Obj = dict[str, Any]
_DOCKER_HUB = {"index.docker.io", "registry-1.docker.io", "docker.io"}


def _location(key: str) -> tuple[str, str]:
    """(host, path) of a keyring key such as ``https://index.docker.io/v1/`` or ``r:5000/team``."""
    rest = key.strip()
    for scheme in ("https://", "http://"):
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
    host, _, path = rest.partition("/")
    host = "docker.io" if host in _DOCKER_HUB else host
    path = path.strip("/")
    if host == "docker.io" and path in ("v1", "v2"):
        path = ""
    return host.lower(), path


def _entries(secret: Obj) -> dict[str, Obj]:
    """The location → auth entry map of one pull secret ({} if it is not one)."""
    data = secret.get("data") or {}
    kind = secret.get("type")
    field = ".dockerconfigjson" if kind == "kubernetes.io/dockerconfigjson" else ".dockercfg"
    if kind not in ("kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"):
        return {}
    try:
        doc = json.loads(base64.b64decode(data.get(field) or ""))
    except (ValueError, binascii.Error):
        return {}
    if kind == "kubernetes.io/dockerconfigjson":
        doc = doc.get("auths") if isinstance(doc, dict) else None
    return {str(k): v for k, v in (doc or {}).items() if isinstance(v, dict)}


def _auth(entry: Obj) -> rt.RegistryAuth | None:
    user, password = entry.get("username"), entry.get("password")
    if not user and entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
    if not user:
        return None
    return rt.RegistryAuth(username=str(user), password=str(password or ""))


def matching(image: str, secrets: Iterable[Obj]) -> list[rt.RegistryAuth]:
    """Credentials to try for ``image``, most specific location first."""
    host, _, repo = rt.normalize_image(image).split("@")[0].partition("/")
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    found: list[tuple[tuple[bool, int, int], rt.RegistryAuth]] = []
    for order, (key, entry) in enumerate(e for s in secrets for e in _entries(s).items()):
        khost, kpath = _location(key)
        if not fnmatch.fnmatchcase(host.lower(), khost):
            continue
        if kpath and not (repo == kpath or repo.startswith(kpath + "/")):
            continue
        auth = _auth(entry)
        if auth is not None:
            found.append((("*" in khost, -len(kpath), order), auth))
    out: list[rt.RegistryAuth] = []
    for _, auth in sorted(found, key=lambda f: f[0]):
        if auth not in out:
            out.append(auth)
    return out


def pod_secrets(pod: Obj, registry: Any) -> tuple[list[Obj], list[str]]:
    """The pod's pull secrets that exist, and the names of those that do not."""
    secrets_rt = registry.catalog.get("", "v1", "secrets")
    ns = pod["metadata"]["namespace"]
    found, missing = [], []
    for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
        name = ref.get("name") or ""
        secret = registry.try_get(secrets_rt, ns, name) if name else None
        if secret is None:
            missing.append(name)
        else:
            found.append(secret)
    return found, missing
