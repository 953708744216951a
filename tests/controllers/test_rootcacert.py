"""Root CA publisher: kube-root-ca.crt in every namespace, recreated and repaired."""

from __future__ import annotations

import pytest

from microkube.client.informer import InformerFactory
from microkube.client.local import LocalClient
from microkube.controllers.rootcacert import DESCRIPTION, NAME, RootCACertPublisher

pytestmark = pytest.mark.anyio

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


async def test_published_in_every_namespace_recreated_and_repaired(
    client: LocalClient, informers: InformerFactory
) -> None:
    ns_rt, cm_rt = client.resource("", "namespaces"), client.resource("", "configmaps")
    await client.create(ns_rt, "", {"metadata": {"name": "team"}})
    ctl = RootCACertPublisher(client, informers, ca_pem=CA)
    informers.prime()
    for ns in ("default", "team"):
        await ctl.reconcile(ns)
        cm = client.get(cm_rt, ns, NAME)
        assert cm["data"] == {"ca.crt": CA}
        assert cm["metadata"]["annotations"]["kubernetes.io/description"] == DESCRIPTION

    # Edited: put back, other annotations kept.
    cm = client.get(cm_rt, "team", NAME)
    cm["data"] = {"ca.crt": "forged"}
    cm["metadata"]["annotations"]["mine"] = "x"
    await client.update(cm_rt, cm)
    informers.prime()
    await ctl.reconcile("team")
    cm = client.get(cm_rt, "team", NAME)
    assert cm["data"] == {"ca.crt": CA} and cm["metadata"]["annotations"]["mine"] == "x"

    # Deleted: recreated.
    await client.delete(cm_rt, "team", NAME)
    informers.prime()
    await ctl.reconcile("team")
    assert client.get(cm_rt, "team", NAME)["data"] == {"ca.crt": CA}

    # A namespace being deleted gets nothing new.
    await client.delete(cm_rt, "team", NAME)
    await client.create(cm_rt, "team", {"metadata": {"name": "keep", "finalizers": ["x/y"]}})
    await client.delete(ns_rt, "", "team")
    informers.prime()
    await ctl.reconcile("team")
    assert client.try_get(cm_rt, "team", NAME) is None
