"""Garbage collection of blobs and stale uploads (mark and sweep).

Live blobs are those referenced by any manifest row (``oci_manifest_refs``);
everything else is garbage once its ``pushed_at`` is older than the grace
period.  The grace period protects the window between a blob upload and the
manifest PUT that references it (clients push all blobs first); a blob pushed
again refreshes ``pushed_at``.  Mark and sweep run under the blob store lock,
which manifest PUTs and upload commits also hold, so a manifest can never be
recorded against a blob the sweep is deleting.

Also swept:

* upload sessions idle for longer than ``upload_ttl_seconds`` (row and file);
* files in ``uploads/`` with no session row (temporary files of a crashed
  import or commit) and blob files with no ``oci_blobs`` row (a crash between
  the rename and the insert), both only once older than the grace period.

Untagged manifests are kept, as distribution does by default.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
import sqlalchemy as sa

from microkube.oci import blobs, db, names, schema

log = logging.getLogger(__name__)


@dataclass
class Report:
    blobs_deleted: int = 0
    bytes_freed: int = 0
    uploads_deleted: int = 0
    orphans_deleted: int = 0


def gc(
    engine: sa.Engine,
    registry_dir: Path,
    *,
    grace_seconds: float = 3600.0,
    upload_ttl_seconds: float = 3600.0,
    now: float | None = None,
) -> Report:
    """One collection over ``registry_dir`` (``<state_dir>/registry``). Blocking."""
    store = blobs.BlobStore(registry_dir)
    now = time.time() if now is None else now
    report = Report()
    b, r, u = schema.blobs, schema.manifest_refs, schema.uploads
    with store.lock:
        with db.write(engine) as conn:
            referenced = sa.select(r.c.ref).where(r.c.kind == "blob")
            dead = [
                (row.digest, row.size)
                for row in conn.execute(
                    sa.select(b.c.digest, b.c.size).where(
                        b.c.pushed_at < now - grace_seconds, b.c.digest.not_in(referenced)
                    )
                )
            ]
            if dead:
                digests = [d for d, _ in dead]
                conn.execute(
                    schema.repository_blobs.delete().where(
                        schema.repository_blobs.c.digest.in_(digests)
                    )
                )
                conn.execute(b.delete().where(b.c.digest.in_(digests)))
            stale = [
                row.id
                for row in conn.execute(
                    sa.select(u.c.id).where(u.c.updated_at < now - upload_ttl_seconds)
                )
            ]
            if stale:
                conn.execute(u.delete().where(u.c.id.in_(stale)))
            known_blobs = {row.digest for row in conn.execute(sa.select(b.c.digest))}
            live_uploads = {row.id for row in conn.execute(sa.select(u.c.id))}
        for digest, _size in dead:
            report.bytes_freed += store.remove(names.parse_digest(digest))
            report.blobs_deleted += 1
        for upload_id in stale:
            (store.uploads_dir / upload_id).unlink(missing_ok=True)
            report.uploads_deleted += 1
        report.orphans_deleted = _sweep_orphans(
            store, known_blobs, live_uploads, now - grace_seconds
        )
    if report.blobs_deleted or report.uploads_deleted or report.orphans_deleted:
        log.info("registry gc: %s", report)
    return report


def _sweep_orphans(
    store: blobs.BlobStore, known_blobs: set[str], live_uploads: set[str], cutoff: float
) -> int:
    removed = 0
    for entry in os.scandir(store.uploads_dir):
        if entry.name not in live_uploads and entry.stat().st_mtime < cutoff:
            os.unlink(entry.path)
            removed += 1
    for algorithm in names.ALGORITHMS:
        base = store.blobs_dir / algorithm
        if not base.is_dir():
            continue
        for path in base.glob("*/*"):
            digest = f"{algorithm}:{path.name}"
            if digest not in known_blobs and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


async def gc_loop(
    engine: sa.Engine,
    registry_dir: Path,
    *,
    interval_seconds: float = 3600.0,
    grace_seconds: float = 3600.0,
    upload_ttl_seconds: float = 3600.0,
) -> None:
    """Run :func:`gc` every ``interval_seconds`` until cancelled (a background task)."""
    while True:
        await anyio.sleep(interval_seconds)
        try:
            await anyio.to_thread.run_sync(
                lambda: gc(
                    engine,
                    registry_dir,
                    grace_seconds=grace_seconds,
                    upload_ttl_seconds=upload_ttl_seconds,
                )
            )
        except Exception:
            log.exception("registry gc failed")
