"""Fixtures: a real Store on a real SQLite file in ``tmp_path``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from microkube.settings import StoreSettings
from microkube.store.log import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def settings() -> StoreSettings:
    # No background compaction during tests unless a test asks for it.
    return StoreSettings(compact_interval=3600.0)


@pytest.fixture
async def store(db_path: Path, settings: StoreSettings) -> AsyncIterator[Store]:
    s = await Store.open(db_path, settings)
    try:
        yield s
    finally:
        await s.close()


def obj(name: str, **fields: object) -> dict[str, object]:
    return {"metadata": {"name": name}, **fields}


Obj = Callable[..., dict[str, object]]
