"""The ServiceAccount admission plugin, applied when a Pod is created.

Mirrors ``plugin/pkg/admission/serviceaccount/admission.go``:

* ``spec.serviceAccountName`` defaults to ``default`` (``serviceAccount``, the
  deprecated alias, follows it);
* unless the pod or its ServiceAccount sets ``automountServiceAccountToken:
  false``, a projected volume ``kube-api-access-<5 random characters>``
  (a bound token expiring after 3607 s, ``ca.crt`` from the
  ``kube-root-ca.crt`` ConfigMap and the ``namespace`` from the downward API)
  is added, and mounted read-only at
  ``/var/run/secrets/kubernetes.io/serviceaccount`` in every container and
  init container that has no mount there yet, so ``kubectl get pod -o yaml``
  shows what upstream shows;
* a pod without ``imagePullSecrets`` gets its ServiceAccount's.

Unlike upstream, a missing ServiceAccount does not reject the pod (the
``default`` one is created asynchronously by a controller, and upstream only
hides that race by retrying); the pod then mounts a token as if the account
allowed it.
"""

from __future__ import annotations

import random
from typing import Any

Obj = dict[str, Any]
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # utilrand.String's, no vowels or look-alikes


def token_volume_source() -> Obj:
    """``TokenVolumeSource()`` with the defaults the apiserver then fills in."""
    return {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
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
    }


def admit(pod: Obj, reg: Any) -> None:
    """Apply the plugin to ``pod`` (a create) in place."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    if (pod.get("metadata") or {}).get("annotations", {}).get("kubernetes.io/config.mirror"):
        return
    spec["serviceAccountName"] = spec.get("serviceAccountName") or "default"
    spec["serviceAccount"] = spec["serviceAccountName"]
    sa: Obj | None = None
    ns = (pod.get("metadata") or {}).get("namespace") or "default"
    if reg is not None:
        sa_rt = reg.catalog.get("", "v1", "serviceaccounts")
        sa = reg.try_get(sa_rt, ns, spec["serviceAccountName"])
    automount = spec.get("automountServiceAccountToken")
    if automount is None and sa is not None:
        automount = sa.get("automountServiceAccountToken")
    if automount is not False:
        _mount_token(spec)
    if not spec.get("imagePullSecrets") and sa is not None and sa.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [
            {"name": s["name"]} for s in sa["imagePullSecrets"] if s.get("name")
        ]


def _mount_token(spec: Obj) -> None:
    volumes = spec.get("volumes") or []
    if not isinstance(volumes, list):
        return  # validation reports it
    existing = next(
        (
            v["name"]
            for v in volumes
            if isinstance(v, dict) and str(v.get("name", "")).startswith(VOLUME_PREFIX)
        ),
        None,
    )
    name = existing or VOLUME_PREFIX + "".join(random.choices(_ALPHABET, k=5))
    needed = False
    for key in ("initContainers", "containers"):
        containers = spec.get(key) or []
        for c in containers if isinstance(containers, list) else []:
            if not isinstance(c, dict) or not isinstance(c.get("volumeMounts", []), list):
                continue
            mounts = c.setdefault("volumeMounts", [])
            if any(m.get("mountPath") == MOUNT_PATH for m in mounts if isinstance(m, dict)):
                continue
            mounts.append({"name": name, "readOnly": True, "mountPath": MOUNT_PATH})
            needed = True
    if needed and existing is None:
        spec["volumes"] = [*volumes, {"name": name, "projected": token_volume_source()}]
