"""The OCI registry's tables (see microkube/oci/schema.py for their design).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-01

Spelled out rather than imported from ``microkube.oci.schema`` so that this
migration keeps creating exactly these tables when the schema module evolves.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oci_repositories",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "oci_blobs",
        sa.Column("digest", sa.Text, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("pushed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "oci_repository_blobs",
        sa.Column(
            "repository",
            sa.Text,
            sa.ForeignKey("oci_repositories.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "digest",
            sa.Text,
            sa.ForeignKey("oci_blobs.digest", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    op.create_index("oci_repository_blobs_digest", "oci_repository_blobs", ["digest"])
    op.create_table(
        "oci_manifests",
        sa.Column(
            "repository",
            sa.Text,
            sa.ForeignKey("oci_repositories.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("digest", sa.Text, primary_key=True),
        sa.Column("media_type", sa.Text, nullable=False),
        sa.Column("artifact_type", sa.Text, nullable=True),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("oci_manifests_subject", "oci_manifests", ["repository", "subject"])
    op.create_table(
        "oci_manifest_refs",
        sa.Column("repository", sa.Text, primary_key=True),
        sa.Column("manifest", sa.Text, primary_key=True),
        sa.Column("ref", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["repository", "manifest"],
            ["oci_manifests.repository", "oci_manifests.digest"],
            ondelete="CASCADE",
        ),
    )
    op.create_index("oci_manifest_refs_ref", "oci_manifest_refs", ["ref"])
    op.create_table(
        "oci_tags",
        sa.Column("repository", sa.Text, primary_key=True),
        sa.Column("tag", sa.Text, primary_key=True),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(
            ["repository", "digest"],
            ["oci_manifests.repository", "oci_manifests.digest"],
            ondelete="CASCADE",
        ),
    )
    op.create_index("oci_tags_digest", "oci_tags", ["repository", "digest"])
    op.create_table(
        "oci_uploads",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column(
            "repository",
            sa.Text,
            sa.ForeignKey("oci_repositories.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("oci_uploads")
    op.drop_index("oci_tags_digest", table_name="oci_tags")
    op.drop_table("oci_tags")
    op.drop_index("oci_manifest_refs_ref", table_name="oci_manifest_refs")
    op.drop_table("oci_manifest_refs")
    op.drop_index("oci_manifests_subject", table_name="oci_manifests")
    op.drop_table("oci_manifests")
    op.drop_index("oci_repository_blobs_digest", table_name="oci_repository_blobs")
    op.drop_table("oci_repository_blobs")
    op.drop_table("oci_blobs")
    op.drop_table("oci_repositories")
