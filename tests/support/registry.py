"""A Registry on a real SQLite store in a test's directory, closed afterwards.

The unit-test packages (auth, client, controllers, dns, kubelet, …) all start
from the same thing: ``<dir>/state.db`` opened with background compaction out
of the way, the default catalog, and a few namespaces.  A package's fixture is
then two lines::

    async with open_registry(tmp_path, ("default", "dev")) as reg:
        yield reg
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from microkube.resources import bootstrap as cluster_bootstrap
from microkube.resources.catalog import default_catalog
from microkube.resources.registry import Registry
from microkube.settings import Settings, StoreSettings
from microkube.store.log import Store


@contextlib.asynccontextmanager
async def open_registry(
    state_dir: Path, namespaces: Iterable[str] = ("default",), *, bootstrap: bool = False
) -> AsyncIterator[Registry]:
    """``state_dir/state.db`` as a Registry holding ``namespaces``.

    With ``bootstrap``, first the objects every cluster starts with
    (:func:`microkube.resources.bootstrap.ensure`: the four system namespaces
    and the ``kubernetes`` Service); namespaces already there are not created
    again.  No background compaction runs unless a test asks for it.
    """
    store = await Store.open(state_dir / "state.db", StoreSettings(compact_interval=3600.0))
    try:
        reg = Registry(store, default_catalog())
        if bootstrap:
            await cluster_bootstrap.ensure(reg, Settings(state_dir=state_dir))
        ns = reg.catalog.get("", "v1", "namespaces")
        assert ns is not None
        for name in namespaces:
            if reg.try_get(ns, "", name) is None:
                await reg.create(ns, "", {"metadata": {"name": name}})
        yield reg
    finally:
        await store.close()
