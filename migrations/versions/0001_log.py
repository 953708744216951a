"""The store's revisioned log and its meta table.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Spelled out rather than imported from ``microkube.store.schema`` so that this
migration keeps creating exactly these tables when the schema module evolves.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("created", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deleted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("create_revision", sa.Integer, nullable=False),
        sa.Column("prev_revision", sa.Integer, nullable=False, server_default="0"),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("log_key_prev_revision", "log", ["key", "prev_revision"], unique=True)
    op.create_table(
        "meta",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_index("log_key_prev_revision", table_name="log")
    op.drop_table("log")
