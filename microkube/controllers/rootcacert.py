"""Publishes the cluster CA as ``kube-root-ca.crt`` in every namespace.

Mirrors upstream's root-ca-cert-publisher (pkg/controller/certificates/
rootcacertpublisher): every active namespace holds a ConfigMap
``kube-root-ca.crt`` whose ``ca.crt`` is the API server's CA bundle, with the
upstream description annotation.  It is recreated when deleted and put back
when edited.  The kube-api-access projected volume that pods get at admission
reads it, and so do in-cluster clients that look for it by name.
"""

from __future__ import annotations

from typing import Any

from microkube import errors
from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers.base import Clock, Controller
from microkube.objects import meta

Obj = dict[str, Any]
NAME = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
    "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
    "guaranteed across distributions of Kubernetes clusters."
)


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"

    def __init__(
        self,
        client: LocalClient,
        informers: InformerFactory,
        *,
        ca_pem: str,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(client, informers, clock=clock)
        self.ca_pem = ca_pem
        self.cm_rt = client.resource("", "configmaps")
        self.ns_informer = informers.informer(client.resource("", "namespaces"))
        self.cm_informer = informers.informer(self.cm_rt)
        self.ns_informer.add_handler(
            on_add=self._namespace, on_update=lambda old, new: self._namespace(new)
        )
        self.cm_informer.add_handler(
            on_update=lambda old, new: self._configmap(new), on_delete=self._configmap
        )

    def _namespace(self, ns: Obj) -> None:
        self.queue.add(ns["metadata"]["name"])

    def _configmap(self, cm: Obj) -> None:
        if cm["metadata"].get("name") == NAME:
            self.queue.add(cm["metadata"].get("namespace", ""))

    def _wanted(self, cm: Obj) -> bool:
        annotations = cm["metadata"].get("annotations") or {}
        return (cm.get("data") or {}) == {"ca.crt": self.ca_pem} and annotations.get(
            DESCRIPTION_ANNOTATION
        ) == DESCRIPTION

    async def reconcile(self, key: str) -> None:
        ns = self.ns_informer.get("", key)
        if ns is None or meta.is_deleting(ns):
            return
        cm = self.cm_informer.get(key, NAME)
        try:
            if cm is None:
                await self.client.create(
                    self.cm_rt,
                    key,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": NAME,
                            "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION},
                        },
                        "data": {"ca.crt": self.ca_pem},
                    },
                )
            elif not self._wanted(cm):
                updated = dict(cm)
                m = dict(cm["metadata"])
                m["annotations"] = {**(m.get("annotations") or {}), DESCRIPTION_ANNOTATION: DESCRIPTION}
                updated["metadata"] = m
                updated["data"] = {"ca.crt": self.ca_pem}
                updated.pop("binaryData", None)
                await self.client.update(self.cm_rt, updated)
        except (errors.AlreadyExists, errors.NotFound, errors.Forbidden):
            # The cache is behind (created meanwhile) or the namespace is going away;
            # the next event for either brings us back.
            pass
