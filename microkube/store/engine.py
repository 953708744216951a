"""The SQLAlchemy engine over microkube's SQLite file, and its migrations.

SQLite settings (applied on every new DBAPI connection, see ``_PRAGMAS``):

* ``auto_vacuum=INCREMENTAL`` first: it only takes effect before any table
  exists, and lets compaction give freed pages back to the filesystem with
  ``PRAGMA incremental_vacuum`` without a full ``VACUUM`` (which would rewrite
  the whole file under an exclusive lock).
* ``journal_mode=WAL``: readers never block the writer and vice versa, and a
  commit is one sequential append to the WAL.
* ``synchronous=FULL``: the WAL is fsynced at *every* commit, so a write the
  store acknowledged survives power loss (``NORMAL`` would only be safe against
  a process crash).  Group commit in :mod:`microkube.store.writer` amortises the
  fsync over concurrent writes.
* ``foreign_keys=ON``: the OCI tables use foreign keys; SQLite ignores them
  unless asked.
* ``busy_timeout=10000`` ms: other users of this engine (the OCI registry)
  wait for the write lock instead of failing with "database is locked".
* ``journal_size_limit=64 MiB``: after a checkpoint the WAL file is truncated to
  at most this size, so one burst does not leave a huge WAL behind forever.
* ``cache_size=-32768`` (KiB, i.e. 32 MiB of page cache) and
  ``temp_store=MEMORY``: the database is small and hot; temp b-trees (sorts of
  the load at open) stay off disk.

Transactions: Python's sqlite3 module begins transactions lazily and only
before DML, which makes read-then-write transactions race.  We use
SQLAlchemy's documented recipe instead: the driver's own handling is turned off
(``isolation_level=None``) and every SQLAlchemy transaction starts with
``BEGIN IMMEDIATE`` — it takes the write lock up front, so a writer can never
fail half way through with ``SQLITE_BUSY`` on lock upgrade.  Pure readers may
pass ``execution_options(sqlite_deferred=True)`` to start a plain deferred
``BEGIN`` and run concurrently with the writer.

Migrations: alembic runs programmatically at open (:func:`migrate`) with its
script directory at the top-level ``migrations/`` of the source tree, located
relative to this file.  microkube is therefore installed from its source tree
(``pip install -e .``, which is how ``.ci`` and the systemd unit run it); a
wheel built without the tree fails loudly at open with instructions, or the
``MICROKUBE_MIGRATIONS`` environment variable may point at the directory.  We
refuse to fall back to ``metadata.create_all``: a database created that way
would carry no alembic revision and the next real migration would break it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIN_SQLITE = (3, 35, 0)
"""Oldest SQLite we accept: RETURNING and the UPSERT/WAL behaviour we rely on."""

_PRAGMAS = (
    "PRAGMA auto_vacuum=INCREMENTAL",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
    f"PRAGMA journal_size_limit={64 * 1024 * 1024}",
    "PRAGMA cache_size=-32768",
    "PRAGMA temp_store=MEMORY",
)


class StoreOpenError(RuntimeError):
    """The database cannot be opened (old SQLite, missing migrations, in use)."""


def check_sqlite_version(version: str = sqlite3.sqlite_version) -> None:
    """Refuse SQLite older than :data:`MIN_SQLITE` with an actionable message."""
    found = tuple(int(part) for part in version.split(".")[:3])
    if found < MIN_SQLITE:
        need = ".".join(map(str, MIN_SQLITE))
        raise StoreOpenError(
            f"SQLite {version} is too old: microkube needs SQLite >= {need} "
            "(RETURNING, UPSERT, WAL). Upgrade libsqlite3 or use a newer Python build."
        )


def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see _on_begin
    for pragma in _PRAGMAS:
        dbapi_connection.execute(pragma).fetchall()


def _on_begin(conn: sa.Connection) -> None:
    deferred = conn.get_execution_options().get("sqlite_deferred", False)
    conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def create_engine(db_path: Path) -> sa.Engine:
    """An engine on ``db_path`` with microkube's SQLite settings (see module doc)."""
    check_sqlite_version()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        f"sqlite+pysqlite:///{db_path}",
        connect_args={"check_same_thread": False},
        pool_size=4,
        max_overflow=4,
    )
    sa.event.listen(engine, "connect", _on_connect)
    sa.event.listen(engine, "begin", _on_begin)
    return engine


def migrations_dir() -> Path:
    """The alembic script directory (see the module doc for why it lives here)."""
    override = os.environ.get("MICROKUBE_MIGRATIONS")
    path = Path(override) if override else Path(__file__).resolve().parents[2] / "migrations"
    if not (path / "env.py").is_file():
        raise StoreOpenError(
            f"alembic migrations not found at {path}: install microkube from its source "
            "tree (pip install -e .) or set MICROKUBE_MIGRATIONS to the migrations directory"
        )
    return path


def alembic_config(engine: sa.Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def migrate(target: Path | sa.Engine) -> None:
    """Upgrade the database (a path or an engine) to the newest migration.

    Blocking: call it from a thread when an event loop is running.
    """
    engine = target if isinstance(target, sa.Engine) else create_engine(target)
    try:
        cfg = alembic_config(engine)
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    finally:
        if engine is not target:
            engine.dispose()


class ProcessLock:
    """An exclusive ``flock`` next to the database: one process owns the store.

    The store keeps the current state and the revision counter in memory, so
    two processes writing one database would silently diverge.  The lock dies
    with the process (also on ``kill -9``), so it never needs cleaning up.
    """

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "ab")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise StoreOpenError(f"{self.path.with_suffix('')} is in use by another store") from exc
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
