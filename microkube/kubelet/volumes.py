"""Pod volumes on the host, bind-mounted into containers.

Every pod gets ``<state_dir>/pods/<uid>/volumes/<plugin>/<name>``; the
container runtime bind-mounts those directories (or ``subPath`` entries in
them).  Supported sources, as the kubelet's volume plugins:

* ``emptyDir`` (``medium: Memory`` is a tmpfs mount, ``sizeLimit`` its size);
* ``hostPath`` with the ``type`` checks (``DirectoryOrCreate`` …);
* ``persistentVolumeClaim``: the claim must be Bound (and not being deleted);
  its PersistentVolume's ``hostPath`` or ``local`` path is mounted, read-only
  when the volume source says ``readOnly`` (as upstream's csi/hostpath plugins
  AND the source's flag into every mount of it);
* ``configMap``, ``secret``, ``downwardAPI`` and ``projected`` (configMap,
  secret, downwardAPI and ``serviceAccountToken`` sources), with ``items``,
  ``defaultMode``/``mode`` and ``optional``.

Content volumes are written like upstream's ``AtomicWriter``: files go into a
fresh ``..<timestamp>`` directory, the ``..data`` symlink is swapped to it
with one ``rename`` and the visible names are symlinks through ``..data``.
Because the *directory* is bind-mounted, updates to a ConfigMap or Secret
reach running pods (not for ``subPath`` mounts, exactly as upstream).

Service-account tokens are issued with the cluster's
:class:`~microkube.auth.tokens.TokenIssuer`, bound to the pod, and re-issued
after 80 % of their lifetime.  A pod that does not opt out of
``automountServiceAccountToken`` and has no mount at
:data:`SA_MOUNT_PATH` gets an implicit ``kube-api-access`` volume there
(token, ``ca.crt``, ``namespace``).  Pods created through the API already
carry that volume in their spec (:mod:`microkube.resources.saadmission`, as
upstream's ServiceAccount admission plugin), so the implicit one only serves
pods that bypassed admission.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from microkube.kubelet import downward
from microkube.kubelet import runtime as rt

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
IMPLICIT_SA_VOLUME = "kube-api-access-microkube"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
_TOKEN_DEFAULT_SECONDS = 3607


class VolumeError(Exception):
    """A volume cannot be set up (the pod waits; a FailedMount event is recorded)."""


def implicit_sa_volume(pod: Obj, registry: Any) -> Obj | None:
    """The kube-api-access projected volume the pod should get, or None."""
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is False:
        return None
    for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
        if any(m.get("mountPath") == SA_MOUNT_PATH for m in c.get("volumeMounts") or []):
            return None
    if spec.get("automountServiceAccountToken") is None:
        sa_rt = registry.catalog.get("", "v1", "serviceaccounts")
        sa = registry.try_get(sa_rt, pod["metadata"]["namespace"], _sa_name(spec))
        if sa is not None and sa.get("automountServiceAccountToken") is False:
            return None
    return {
        "name": IMPLICIT_SA_VOLUME,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": ROOT_CA_CONFIGMAP,
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def _sa_name(spec: Obj) -> str:
    return str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")


def write_atomic(target: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    """Publish ``files`` (relative path → (data, mode)) in ``target``; False if unchanged."""
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    if data_link.is_symlink():
        current = target / os.readlink(data_link)
        if _same(current, files):
            return False
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns() % 10**9}"
    stamp.mkdir()
    for rel, (data, mode) in files.items():
        path = stamp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    stamp.chmod(0o755)
    tmp = target / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(stamp.name)
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp.rename(data_link)
    tops = {rel.split("/", 1)[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            if link.exists():
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(f"..data/{top}")
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            if (
                entry.name not in ("..data", stamp.name)
                and entry.is_dir()
                and not entry.is_symlink()
            ):
                shutil.rmtree(entry, ignore_errors=True)
        elif entry.is_symlink() and entry.name not in tops:
            entry.unlink()
    del old
    return True


def _same(current: Path, files: dict[str, tuple[bytes, int]]) -> bool:
    try:
        have = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()}
        if have != set(files):
            return False
        for rel, (data, mode) in files.items():
            p = current / rel
            if p.read_bytes() != data or (p.stat().st_mode & 0o777) != mode:
                return False
    except OSError:
        return False
    return True


class VolumeManager:
    """Sets up, refreshes and removes the volumes of the pods of one kubelet."""

    def __init__(
        self, registry: Any, root: Path, *, tokens: Any = None, ca_pem: bytes = b""
    ) -> None:
        self.registry = registry
        self.root = Path(root)
        self.tokens = tokens
        self.ca_pem = ca_pem
        self._tokens: dict[tuple[str, str, str], tuple[str, float, int]] = {}
        self._tmpfs: set[Path] = set()
        self._claims: dict[tuple[str, str], Path] = {}  # (pod uid, volume) -> mounted path

    def pod_dir(self, uid: str) -> Path:
        return self.root / uid

    def volumes(self, pod: Obj) -> list[Obj]:
        vols = list((pod.get("spec") or {}).get("volumes") or [])
        implicit = implicit_sa_volume(pod, self.registry) if self.tokens is not None else None
        if implicit is not None:
            vols.append(implicit)
        return vols

    def setup(self, pod: Obj, node: Obj | None = None) -> dict[str, Path]:
        """Create or refresh every volume; name → host directory.  Raises VolumeError."""
        out: dict[str, Path] = {}
        for vol in self.volumes(pod):
            try:
                out[vol["name"]] = self._setup_one(pod, vol, node)
            except (VolumeError, OSError, ValueError) as exc:
                raise VolumeError(
                    f'MountVolume.SetUp failed for volume "{vol["name"]}" : {exc}'
                ) from exc
        return out

    def _setup_one(self, pod: Obj, vol: Obj, node: Obj | None) -> Path:
        uid = pod["metadata"]["uid"]
        name = vol["name"]
        if "hostPath" in vol:
            return self._host_path(vol["hostPath"])
        if "persistentVolumeClaim" in vol:
            # Resolved once per pod: a running pod keeps its volume even when
            # the claim is being deleted (pvc-protection waits for the pod).
            key = (uid, str(name))
            if key not in self._claims:
                self._claims[key] = self._claim(pod, vol["persistentVolumeClaim"] or {})
            return self._claims[key]
        plugin = next((k for k in vol if k != "name"), "emptyDir")
        path: Path = self.pod_dir(uid) / "volumes" / str(plugin) / str(name)
        if plugin == "emptyDir":
            self._empty_dir(path, vol.get("emptyDir") or {})
        elif plugin in ("configMap", "secret", "downwardAPI", "projected"):
            write_atomic(path, self._content(pod, vol, node))
        else:
            raise VolumeError(f"volume type {plugin} is not supported")
        return path

    def _host_path(self, src: Obj) -> Path:
        path = Path(src.get("path") or "/")
        kind = src.get("type") or ""
        if kind == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True, mode=0o755)
        elif kind == "FileOrCreate":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o644, exist_ok=True)
        elif kind == "Directory" and not path.is_dir():
            raise VolumeError(f"hostPath type check failed: {path} is not a directory")
        elif kind == "File" and not path.is_file():
            raise VolumeError(f"hostPath type check failed: {path} is not a file")
        elif kind == "Socket" and not path.is_socket():
            raise VolumeError(f"hostPath type check failed: {path} is not a socket file")
        return path

    def _claim(self, pod: Obj, src: Obj) -> Path:
        """The host path of the volume bound to the claim ``src.claimName``."""
        ns, name = pod["metadata"]["namespace"], str(src.get("claimName") or "")
        pvc = self.registry.try_get(
            self.registry.catalog.get("", "v1", "persistentvolumeclaims"), ns, name
        )
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{name}" not found')
        if pvc["metadata"].get("deletionTimestamp"):
            # Mirrors the kubelet's volume manager: never start with a dying claim.
            raise VolumeError(f"can't start pod because PVC {ns}/{name} is being deleted")
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name:
            raise VolumeError(f'persistentvolumeclaim "{name}" is not bound')
        pv = self.registry.try_get(
            self.registry.catalog.get("", "v1", "persistentvolumes"), "", pv_name
        )
        if pv is None:
            raise VolumeError(f'persistentvolume "{pv_name}" not found')
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("uid") != pvc["metadata"].get("uid"):
            raise VolumeError(f'persistentvolume "{pv_name}" is bound to another claim')
        spec = pv.get("spec") or {}
        if "hostPath" in spec:
            return self._host_path(spec["hostPath"] or {})
        if "local" in spec:
            path = Path((spec["local"] or {}).get("path") or "")
            if not path.exists():
                raise VolumeError(f"local volume path {path} does not exist")
            return path
        raise VolumeError(
            f'persistentvolume "{pv_name}": only hostPath and local volumes are supported'
        )

    def _empty_dir(self, path: Path, src: Obj) -> None:
        if path.exists():
            return
        path.mkdir(parents=True, mode=0o777)
        path.chmod(0o777)
        if src.get("medium") == "Memory":
            opts = "mode=0777"
            if src.get("sizeLimit"):
                from microkube.objects import quantity

                opts += f",size={quantity.value(src['sizeLimit'])}"
            res = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            if res.returncode == 0:
                self._tmpfs.add(path)
            else:
                log.warning("emptyDir medium Memory: tmpfs mount failed: %s", res.stderr.strip())

    # --- content volumes ------------------------------------------------------

    def _content(self, pod: Obj, vol: Obj, node: Obj | None) -> dict[str, tuple[bytes, int]]:
        files: dict[str, tuple[bytes, int]] = {}
        if "projected" in vol:
            src = vol["projected"] or {}
            mode = int(src.get("defaultMode", 420))
            # A VolumeManager without a token issuer (some unit tests) leaves out
            # what it cannot make of the admission-made kube-api-access volume.
            lenient = self.tokens is None and str(vol["name"]).startswith("kube-api-access-")
            for s in src.get("sources") or []:
                kind = next(iter(s), "")
                try:
                    files.update(self._source(pod, vol["name"], kind, s[kind] or {}, mode, node))
                except VolumeError:
                    if not lenient:
                        raise
            return files
        kind = next(k for k in vol if k != "name")
        src = vol[kind] or {}
        return self._source(pod, vol["name"], kind, src, int(src.get("defaultMode", 420)), node)

    def _source(
        self, pod: Obj, vol: str, kind: str, src: Obj, mode: int, node: Obj | None
    ) -> dict[str, tuple[bytes, int]]:
        ns = pod["metadata"]["namespace"]
        if kind in ("configMap", "secret"):
            name = (
                src.get("name") if kind == "configMap" else src.get("secretName", src.get("name"))
            )
            data = self._object_data(kind, ns, str(name or ""), bool(src.get("optional")))
            items = src.get("items")
            if not items:
                return {k: (v, mode) for k, v in data.items()}
            out = {}
            for it in items:
                if it["key"] not in data:
                    if src.get("optional"):
                        continue
                    raise VolumeError(
                        f"configmap references non-existent config key: {it['key']}"
                        if kind == "configMap"
                        else f"references non-existent secret key: {it['key']}"
                    )
                out[it["path"]] = (data[it["key"]], int(it.get("mode", mode)))
            return out
        if kind == "downwardAPI":
            out = {}
            for it in src.get("items") or []:
                if "fieldRef" in it:
                    value = downward.field_value(pod, it["fieldRef"].get("fieldPath", ""))
                else:
                    ref = it.get("resourceFieldRef") or {}
                    value = downward.resource_value(pod, ref, node)
                out[it["path"]] = (value.encode(), int(it.get("mode", mode)))
            return out
        if kind == "serviceAccountToken":
            return {src.get("path", "token"): (self._token(pod, vol, src).encode(), mode)}
        raise VolumeError(f"projected source {kind} is not supported")

    def _object_data(self, kind: str, ns: str, name: str, optional: bool) -> dict[str, bytes]:
        plural = "configmaps" if kind == "configMap" else "secrets"
        obj = self.registry.try_get(self.registry.catalog.get("", "v1", plural), ns, name)
        if obj is None:
            if kind == "configMap" and name == ROOT_CA_CONFIGMAP and self.ca_pem:
                return {"ca.crt": self.ca_pem}
            if optional:
                return {}
            raise VolumeError(f'{kind.lower()} "{name}" not found')
        out: dict[str, bytes] = {}
        if kind == "configMap":
            out.update({k: str(v).encode() for k, v in (obj.get("data") or {}).items()})
            out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        else:
            out.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
            out.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
        return out

    def _token(self, pod: Obj, vol: str, src: Obj) -> str:
        m = pod["metadata"]
        key = (m["uid"], vol, str(src.get("path", "token")))
        seconds = int(src.get("expirationSeconds") or _TOKEN_DEFAULT_SECONDS)
        cached = self._tokens.get(key)
        now = time.time()
        if cached is not None and now < cached[1] + 0.8 * cached[2]:
            return cached[0]
        if self.tokens is None:
            raise VolumeError("service account tokens are not available")
        sa_rt = self.registry.catalog.get("", "v1", "serviceaccounts")
        sa = self.registry.try_get(sa_rt, m["namespace"], _sa_name(pod.get("spec") or {}))
        if sa is None:
            raise VolumeError(f'serviceaccount "{_sa_name(pod.get("spec") or {})}" not found')
        audiences = [src["audience"]] if src.get("audience") else self.tokens.default_audiences
        token, _ = self.tokens.issue(
            sa,
            audiences=audiences,
            seconds=seconds,
            bound={"kind": "Pod", "apiVersion": "v1", "name": m["name"], "uid": m["uid"]},
        )
        self._tokens[key] = (token, now, seconds)
        return str(token)

    # --- mounts and cleanup ---------------------------------------------------

    def mounts(self, pod: Obj, container: Obj, paths: dict[str, Path]) -> list[rt.Mount]:
        out = []
        read_only = {
            v["name"]
            for v in (pod.get("spec") or {}).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("readOnly")
        }
        declared = list(container.get("volumeMounts") or [])
        if IMPLICIT_SA_VOLUME in paths and not any(
            m.get("mountPath") == SA_MOUNT_PATH for m in declared
        ):
            declared.append(
                {"name": IMPLICIT_SA_VOLUME, "mountPath": SA_MOUNT_PATH, "readOnly": True}
            )
        for vm in declared:
            host = paths.get(vm.get("name", ""))
            if host is None:
                raise VolumeError(f"volume {vm.get('name')!r} not found")
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                sub = downward.expand(vm["subPathExpr"], downward.env_for_expansion(pod, container))
            if sub:
                host = host / sub
                if not host.exists() and not host.is_symlink():
                    host.mkdir(parents=True, exist_ok=True)
                host = host.resolve()
            ro = bool(vm.get("readOnly")) or vm.get("name") in read_only
            out.append(rt.Mount(str(host), vm["mountPath"], read_only=ro))
        return out

    def termination_log(self, uid: str, container: str, attempt: int) -> Path:
        """The host file mounted at ``terminationMessagePath`` for one attempt (created empty)."""
        path = self.pod_dir(uid) / "containers" / container / str(attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        path.chmod(0o666)
        return path

    def cleanup(self, uid: str) -> None:
        d = self.pod_dir(uid)
        # Every mount under the pod directory (also those of adopted pods, made
        # before a restart), deepest first, so that rmtree never walks into one.
        for path in sorted(_mounts_under(d), key=lambda p: len(p.parts), reverse=True):
            subprocess.run(["umount", str(path)], capture_output=True, check=False)
            self._tmpfs.discard(path)
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]
        for claim in [k for k in self._claims if k[0] == uid]:
            del self._claims[claim]
        shutil.rmtree(d, ignore_errors=True)


def _mounts_under(directory: Path) -> list[Path]:
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 1:
            mp = Path(fields[1].replace("\\040", " "))
            if directory in mp.parents:
                out.append(mp)
    return out
