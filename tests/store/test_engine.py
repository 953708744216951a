"""Engine settings, SQLite version gate, migrations and the database-level guards."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from microkube import errors
from microkube.store import engine
from microkube.store.log import Store
from tests.store.conftest import obj


def test_old_sqlite_is_refused() -> None:
    with pytest.raises(engine.StoreOpenError, match=r"SQLite 3\.31\.1 is too old.*>= 3\.35\.0"):
        engine.check_sqlite_version("3.31.1")
    engine.check_sqlite_version("3.35.0")
    engine.check_sqlite_version("3.45.1")


def test_connection_pragmas(tmp_path: Path) -> None:
    eng = engine.create_engine(tmp_path / "x.db")
    try:
        with eng.connect() as conn:
            pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("synchronous") == 2  # FULL
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 10000
            assert pragma("auto_vacuum") == 2  # INCREMENTAL, set before any table
            assert pragma("temp_store") == 2  # MEMORY
    finally:
        eng.dispose()


def test_migrate_is_idempotent_and_reaches_head(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    engine.migrate(db)
    engine.migrate(db)
    head = ScriptDirectory.from_config(engine.alembic_config()).get_current_head()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"log", "meta"} <= tables
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2


def test_missing_migrations_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MICROKUBE_MIGRATIONS", str(tmp_path / "nowhere"))
    with pytest.raises(engine.StoreOpenError, match="pip install -e"):
        engine.migrations_dir()


@pytest.mark.anyio
async def test_unique_index_turns_a_lost_update_into_conflict(tmp_path: Path) -> None:
    """Even if memory were wrong, the database refuses a second successor of a row."""
    db = tmp_path / "x.db"
    store = await Store.open(db)
    try:
        a = await store.create("/k/a", obj("a"))
        with sqlite3.connect(db) as conn:  # a write behind the store's back
            conn.execute(
                "INSERT INTO log (id, key, created, deleted, create_revision, prev_revision, value)"
                " VALUES (1000, '/k/a', 0, 0, 1, 1, x'7b7d')"
            )
        # both ops land in one batch: the batch fails, is retried op by op,
        # and only the op hitting the unique index fails
        update = asyncio.ensure_future(store.update("/k/a", obj("a"), expected_revision=a.revision))
        create = asyncio.ensure_future(store.create("/k/b", obj("b")))
        with pytest.raises(errors.Conflict):
            await update
        kv = await create
        assert store.get("/k/b") == kv
        assert store.get("/k/a") == a
    finally:
        await store.close()
