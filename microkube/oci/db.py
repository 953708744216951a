"""Transactions on the shared engine, and the rows every write path touches.

The store's engine starts every transaction with ``BEGIN IMMEDIATE`` (it takes
SQLite's write lock up front) unless asked for a deferred one; readers ask for
a deferred ``BEGIN`` so that a pull never waits for a writer.  All of this is
blocking SQLAlchemy: the HTTP layer calls it through ``anyio.to_thread``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert

from microkube.oci import schema


@contextmanager
def read(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read-only (deferred) transaction."""
    with engine.connect().execution_options(sqlite_deferred=True) as conn, conn.begin():
        yield conn


@contextmanager
def write(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction (``BEGIN IMMEDIATE`` on the store's engine)."""
    with engine.begin() as conn:
        yield conn


def ensure_repository(conn: sa.Connection, name: str) -> None:
    conn.execute(
        insert(schema.repositories)
        .values(name=name, created_at=time.time())
        .on_conflict_do_nothing(index_elements=["name"])
    )


def repository_exists(conn: sa.Connection, name: str) -> bool:
    row = conn.execute(
        sa.select(schema.repositories.c.name).where(schema.repositories.c.name == name)
    ).first()
    return row is not None


def record_blob(conn: sa.Connection, repository: str, digest: str, size: int) -> None:
    """Record a blob file that is now on disk and link it to ``repository``.

    ``pushed_at`` is refreshed even when the blob already existed: a blob
    pushed again is about to be referenced by a manifest, so the garbage
    collector's grace period starts over.
    """
    now = time.time()
    ensure_repository(conn, repository)
    conn.execute(
        insert(schema.blobs)
        .values(digest=digest, size=size, pushed_at=now)
        .on_conflict_do_update(index_elements=["digest"], set_={"pushed_at": now})
    )
    link_blob(conn, repository, digest)


def link_blob(conn: sa.Connection, repository: str, digest: str) -> None:
    ensure_repository(conn, repository)
    conn.execute(
        insert(schema.repository_blobs)
        .values(repository=repository, digest=digest)
        .on_conflict_do_nothing()
    )


def _blob_size_statements() -> tuple[sa.Select[Any], sa.Select[Any]]:
    b, rb = schema.blobs, schema.repository_blobs
    anywhere = sa.select(b.c.size).where(b.c.digest == sa.bindparam("digest"))
    in_repository = anywhere.join(rb, rb.c.digest == b.c.digest).where(
        rb.c.repository == sa.bindparam("repository")
    )
    return anywhere, in_repository


_BLOB_SIZE, _BLOB_SIZE_IN_REPOSITORY = _blob_size_statements()
"""Built once: blob HEADs and GETs are hot, and building a statement costs more than running it."""


def blob_size(conn: sa.Connection, digest: str, repository: str | None = None) -> int | None:
    """Size of a blob visible in ``repository`` (anywhere if None), else None."""
    if repository is None:
        row = conn.execute(_BLOB_SIZE, {"digest": digest}).first()
    else:
        row = conn.execute(
            _BLOB_SIZE_IN_REPOSITORY, {"digest": digest, "repository": repository}
        ).first()
    return None if row is None else int(row[0])


def total_blob_bytes(conn: sa.Connection) -> int:
    return int(
        conn.execute(sa.select(sa.func.coalesce(sa.func.sum(schema.blobs.c.size), 0))).scalar_one()
    )
