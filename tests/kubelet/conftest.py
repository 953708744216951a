"""Fixtures: a real Store in tmp_path and a bootstrapped Registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from microkube.resources import bootstrap
from microkube.resources.catalog import default_catalog
from microkube.resources.registry import Registry
from microkube.settings import Settings, StoreSettings
from microkube.store.log import Store


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = await Store.open(tmp_path / "state.db", StoreSettings(compact_interval=3600.0))
    reg = Registry(store, default_catalog())
    await bootstrap.ensure(reg, Settings(state_dir=tmp_path))
    try:
        yield reg
    finally:
        await store.close()
