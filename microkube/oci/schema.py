"""The registry's SQLite tables, declared on the store's shared ``metadata``.

Blob *bytes* live in files (``<state_dir>/registry/blobs/<alg>/<xx>/<hex>``);
everything else is rows, so that one transaction can check and record a
manifest together with the references that keep its blobs alive::

    oci_repositories  name ──┬── oci_tags            (repository, tag) → digest
                             ├── oci_manifests       (repository, digest) → bytes, media type
                             │      └── oci_manifest_refs  manifest → blob/manifest digests
                             ├── oci_repository_blobs (repository, digest): blob visible here
                             └── oci_uploads          upload sessions (uuid, offset)
    oci_blobs         digest → size, pushed_at          (one row per file on disk)

* A blob is *visible* in a repository only once linked to it (pushed there,
  mounted there, or imported there), as in distribution; this is what makes a
  cross-repository mount meaningful.
* ``oci_manifest_refs`` is the garbage collector's mark set: a blob referenced
  by any manifest row is live; other blobs die once ``pushed_at`` is older than
  the grace period (see :mod:`microkube.oci.gc`).
* Manifests are small (spec: at most 4 MiB) and read hot, so their bytes are
  kept in the row rather than as blob files.

Migration ``0002_oci`` creates exactly these tables.
"""

from __future__ import annotations

import sqlalchemy as sa

from microkube.store.schema import metadata

repositories = sa.Table(
    "oci_repositories",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

blobs = sa.Table(
    "oci_blobs",
    metadata,
    sa.Column("digest", sa.Text, primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("pushed_at", sa.Float, nullable=False),
)

repository_blobs = sa.Table(
    "oci_repository_blobs",
    metadata,
    sa.Column(
        "repository",
        sa.Text,
        sa.ForeignKey("oci_repositories.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "digest", sa.Text, sa.ForeignKey("oci_blobs.digest", ondelete="CASCADE"), primary_key=True
    ),
    sa.Index("oci_repository_blobs_digest", "digest"),
)

manifests = sa.Table(
    "oci_manifests",
    metadata,
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
    sa.Index("oci_manifests_subject", "repository", "subject"),
)

manifest_refs = sa.Table(
    "oci_manifest_refs",
    metadata,
    sa.Column("repository", sa.Text, primary_key=True),
    sa.Column("manifest", sa.Text, primary_key=True),
    sa.Column("ref", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),  # "blob" | "manifest"
    sa.ForeignKeyConstraint(
        ["repository", "manifest"],
        ["oci_manifests.repository", "oci_manifests.digest"],
        ondelete="CASCADE",
    ),
    sa.Index("oci_manifest_refs_ref", "ref"),
)

tags = sa.Table(
    "oci_tags",
    metadata,
    sa.Column("repository", sa.Text, primary_key=True),
    sa.Column("tag", sa.Text, primary_key=True),
    sa.Column("digest", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.ForeignKeyConstraint(
        ["repository", "digest"],
        ["oci_manifests.repository", "oci_manifests.digest"],
        ondelete="CASCADE",
    ),
    sa.Index("oci_tags_digest", "repository", "digest"),
)

uploads = sa.Table(
    "oci_uploads",
    metadata,
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
