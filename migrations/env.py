"""Alembic environment of microkube's database (no alembic.ini).

Run programmatically by :func:`microkube.store.engine.migrate`, which hands
over an open connection in ``config.attributes["connection"]``; without one
(the ``alembic`` command line with ``-x``/a config setting ``sqlalchemy.url``)
an engine with microkube's SQLite settings is created from the URL.

The target metadata is the one shared :data:`microkube.store.schema.metadata`;
modules declaring further tables on it are imported here so autogenerate sees
them (the OCI registry's tables are optional while it is being written).
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

from alembic import context

from microkube.store import engine as store_engine
from microkube.store import schema

for _module in ("microkube.oci.schema",):
    with contextlib.suppress(ModuleNotFoundError):
        importlib.import_module(_module)

target_metadata = schema.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: copy-and-move instead
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or ""
    engine = store_engine.create_engine(Path(url.removeprefix("sqlite+pysqlite:///")))
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
