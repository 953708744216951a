"""SQLAlchemy Core tables of microkube's database (alembic's target metadata).

There is ONE :data:`metadata` object for the whole database: the store's tables
are declared here and the OCI registry adds its own (``microkube/oci/schema.py``)
to the same object, so ``migrations/env.py`` sees every table.

The ``log`` table is kine's revisioned log:

* ``id`` is ``INTEGER PRIMARY KEY AUTOINCREMENT`` and *is* the revision (the
  Kubernetes ``resourceVersion``).  ``AUTOINCREMENT`` (not a bare rowid) makes
  SQLite remember the highest id ever used in ``sqlite_sequence``, so a revision
  is never reused even after compaction deleted the newest rows of a key.
* One row per write: a create (``created=1``), an update, or a delete
  *tombstone* (``deleted=1``, value = the last object at the deletion revision).
* ``prev_revision`` is the id of the key's previous row (0 for the first row
  of a key).  The unique index on ``(key, prev_revision)`` turns a lost update
  (two writers both superseding the same row) into an ``IntegrityError`` inside
  the database, whatever happens above it.
* ``value`` is the JSON encoding of the object; the store knows no kinds, so
  API changes never need a migration.

``meta`` is a tiny key/value table for store bookkeeping (the compacted
revision, see :mod:`microkube.store.compact`).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
"""The database's only MetaData: every table of microkube joins it."""

log = sa.Table(
    "log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("created", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("create_revision", sa.Integer, nullable=False),
    sa.Column("prev_revision", sa.Integer, nullable=False, server_default="0"),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Index("log_key_prev_revision", "key", "prev_revision", unique=True),
    sqlite_autoincrement=True,
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

COMPACTED_REVISION = "compacted_revision"
"""``meta.name`` of the revision up to which the log has been compacted."""
