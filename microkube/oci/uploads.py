"""Blob upload sessions: streamed to disk, hashed incrementally, resumable.

One session is a row in ``oci_uploads`` (its committed ``offset``) plus the
file ``uploads/<uuid>``.  Request bodies are never held whole in memory: the
received chunks are collected up to :data:`blobs.CHUNK` bytes (a list, not
joined: no copy) and each batch is written, fed to a running sha256 and handed
to the disk's writeback (:func:`blobs.start_writeback`) in a worker thread.

The running hash lives in memory (:class:`_Progress`), because ``hashlib``
cannot serialise its state.  When it is missing or stale (after a restart,
or after another worker advanced the row) the partial file is re-hashed up to
the committed offset; the file is first truncated to that offset, and if the
file is *shorter* (bytes acknowledged but not fsynced before a crash) the
offset shrinks to the file size, which the client then learns from
``GET …/uploads/<uuid>`` and resumes from.  A request that dies half way (the
client disconnected) keeps the bytes that arrived: that is what makes resume
after a disconnect possible.  A request that fails (bad length, full disk)
is rolled back to its starting offset: file truncated, hash restored.

Requests on one session are serialised by an ``asyncio.Lock``; a chunk whose
``Content-Range`` does not start at the current offset gets 416.

The size quota is enforced while the body streams in: a declared length that
cannot fit, or the first buffer that would take the stored blobs plus this
upload past the quota, ends the request with ``DENIED`` and deletes the session
and its file at once, without reading the rest of the body into storage.  The
commit re-checks the quota (concurrent uploads may each have fitted alone).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import anyio.to_thread
import sqlalchemy as sa

from microkube.oci import blobs, db, errcodes, names, schema

STALE_AFTER = 3600.0
"""Seconds after which an idle upload session may be reclaimed by the GC."""


class Body(Protocol):
    """A request body: async chunks, and whether the client went away."""

    disconnected: bool

    def __aiter__(self) -> AsyncIterator[bytes]: ...


@dataclass
class _Progress:
    offset: int
    hasher: hashlib._Hash


def range_header(offset: int) -> str:
    """The ``Range`` of an upload holding ``offset`` bytes (distribution's form)."""
    return f"0-{max(offset - 1, 0)}"


def _unknown(upload_id: str) -> errcodes.RegistryError:
    return errcodes.RegistryError(
        "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", detail={"uuid": upload_id}
    )


class Uploads:
    """The upload sessions of one registry."""

    def __init__(self, store: blobs.BlobStore, engine: sa.Engine, *, quota_bytes: int = 0) -> None:
        self.store = store
        self.engine = engine
        self.quota_bytes = quota_bytes
        self._progress: dict[str, _Progress] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- sessions ---------------------------------------------------------

    def _start(self, repository: str) -> str:
        upload_id, path = self.store.new_temp()
        path.touch()
        now = time.time()
        with db.write(self.engine) as conn:
            db.ensure_repository(conn, repository)
            conn.execute(
                schema.uploads.insert().values(
                    id=upload_id, repository=repository, offset=0, created_at=now, updated_at=now
                )
            )
        self._progress[upload_id] = _Progress(0, hashlib.sha256())
        return upload_id

    async def start(self, repository: str) -> str:
        """Open a session in ``repository``; returns its id."""
        return await anyio.to_thread.run_sync(self._start, repository)

    def _offset(self, repository: str, upload_id: str) -> int:
        names.check_upload_id(upload_id)
        u = schema.uploads
        with db.read(self.engine) as conn:
            row = conn.execute(
                sa.select(u.c.offset).where(u.c.id == upload_id, u.c.repository == repository)
            ).first()
        if row is None:
            raise _unknown(upload_id)
        return int(row[0])

    async def status(self, repository: str, upload_id: str) -> int:
        """Bytes received so far (after any crash recovery of the file)."""
        async with self._lock(upload_id):
            offset = await anyio.to_thread.run_sync(self._offset, repository, upload_id)
            progress = await anyio.to_thread.run_sync(self._recover, upload_id, offset)
            return progress.offset

    def _cancel(self, repository: str, upload_id: str) -> None:
        self._offset(repository, upload_id)
        with db.write(self.engine) as conn:
            conn.execute(schema.uploads.delete().where(schema.uploads.c.id == upload_id))
        self.store.upload_path(upload_id).unlink(missing_ok=True)
        self._forget(upload_id)

    async def cancel(self, repository: str, upload_id: str) -> None:
        async with self._lock(upload_id):
            await anyio.to_thread.run_sync(self._cancel, repository, upload_id)

    async def discard(self, repository: str, upload_id: str) -> None:
        """Cancel the session if it still exists (after a failed monolithic upload)."""
        try:
            await self.cancel(repository, upload_id)
        except errcodes.RegistryError:
            pass

    def _forget(self, upload_id: str) -> None:
        self._progress.pop(upload_id, None)
        self._locks.pop(upload_id, None)

    def _lock(self, upload_id: str) -> asyncio.Lock:
        return self._locks.setdefault(upload_id, asyncio.Lock())

    # -- data -------------------------------------------------------------

    def _recover(self, upload_id: str, offset: int) -> _Progress:
        """The running hash at the committed ``offset``, re-hashing if needed."""
        cached = self._progress.get(upload_id)
        if cached is not None and cached.offset == offset:
            return cached
        path = self.store.upload_path(upload_id)
        try:
            size = path.stat().st_size
        except FileNotFoundError as exc:
            raise _unknown(upload_id) from exc
        if size < offset:
            offset = size
            self._save_offset(upload_id, offset)
        hasher = hashlib.sha256()
        with open(path, "rb+") as handle:
            handle.truncate(offset)
            remaining = offset
            while remaining:
                block = handle.read(min(blobs.CHUNK, remaining))
                if not block:
                    break
                hasher.update(block)
                remaining -= len(block)
        progress = _Progress(offset, hasher)
        self._progress[upload_id] = progress
        return progress

    def _save_offset(self, upload_id: str, offset: int) -> None:
        with db.write(self.engine) as conn:
            conn.execute(
                schema.uploads.update()
                .where(schema.uploads.c.id == upload_id)
                .values(offset=offset, updated_at=time.time())
            )

    @staticmethod
    def _write(handle: IO[bytes], progress: _Progress, chunks: list[bytes]) -> None:
        """Write and hash ``chunks`` (as received: no joining copy), then start their writeback."""
        begin = progress.offset
        for chunk in chunks:
            view = memoryview(chunk)
            while view:  # unbuffered: a short write is possible
                written = handle.write(view)
                if not written:
                    raise OSError(errno.EIO, "short write")
                view = view[written:]
            progress.hasher.update(chunk)
            progress.offset += len(chunk)
        blobs.start_writeback(handle.fileno(), begin, progress.offset - begin)

    async def append(
        self,
        repository: str,
        upload_id: str,
        body: Body,
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> int:
        """Append a request body to the session; returns the new offset.

        ``start`` is the first byte of a ``Content-Range`` (416 unless it is the
        current offset); ``length`` the declared body size (checked unless the
        client disconnected, in which case the bytes received are kept).
        """
        async with self._lock(upload_id):
            return await self._append_locked(repository, upload_id, body, start, length)

    def _quota_left(self, digest: names.Digest | None) -> int | None:
        """Bytes the stored blobs leave under the quota; None when unlimited or for a known blob."""
        if not self.quota_bytes:
            return None
        with db.read(self.engine) as conn:
            if digest is not None and db.blob_size(conn, str(digest)) is not None:
                return None
            return self.quota_bytes - db.total_blob_bytes(conn)

    def _over_quota(self, repository: str, upload_id: str, size: int) -> errcodes.RegistryError:
        """Delete the session (row and file) and return the DENIED error to raise."""
        self._cancel(repository, upload_id)
        return errcodes.RegistryError(
            "DENIED",
            "registry storage quota exceeded",
            detail={"quota": self.quota_bytes, "upload": size},
        )

    async def _append_locked(
        self,
        repository: str,
        upload_id: str,
        body: Body,
        start: int | None,
        length: int | None,
        digest: names.Digest | None = None,
    ) -> int:
        offset = await anyio.to_thread.run_sync(self._offset, repository, upload_id)
        progress = await anyio.to_thread.run_sync(self._recover, upload_id, offset)
        left = await anyio.to_thread.run_sync(self._quota_left, digest)
        if left is not None and length is not None and progress.offset + length > left:
            raise await anyio.to_thread.run_sync(
                self._over_quota, repository, upload_id, progress.offset + length
            )
        if start is not None and start != progress.offset:
            raise errcodes.RegistryError(
                "BLOB_UPLOAD_INVALID",
                f"chunk starts at {start}, upload is at {progress.offset}",
                status=416,
                headers={
                    "Range": range_header(progress.offset),
                    "Location": f"/v2/{repository}/blobs/uploads/{upload_id}",
                    "Docker-Upload-UUID": upload_id,
                },
            )
        begin, saved = progress.offset, progress.hasher.copy()
        path = self.store.upload_path(upload_id)
        handle = await anyio.to_thread.run_sync(open, path, "r+b", 0)
        writer = _Writer(handle, progress)
        try:
            handle.seek(begin)
            position, pending, size = begin, [], 0
            async for chunk in body:
                pending.append(chunk)
                size += len(chunk)
                if left is not None and position + size > left:
                    raise _QuotaExceeded(position + size)
                if size >= blobs.CHUNK:
                    await writer.submit(pending)
                    position, pending, size = position + size, [], 0
            if pending:
                await writer.submit(pending)
            await writer.drain()
            received = progress.offset - begin
            if length is not None and received != length and not body.disconnected:
                raise errcodes.RegistryError(
                    "SIZE_INVALID",
                    f"received {received} bytes, Content-Length/Range said {length}",
                )
        except _QuotaExceeded as exc:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(writer.settle)
                await anyio.to_thread.run_sync(handle.close)
                error = await anyio.to_thread.run_sync(
                    self._over_quota, repository, upload_id, exc.size
                )
            raise error from None
        except BaseException as exc:
            with anyio.CancelScope(shield=True):  # a cancelled request still rolls back
                await anyio.to_thread.run_sync(writer.settle)
                await anyio.to_thread.run_sync(self._rollback, handle, progress, begin, saved)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise errcodes.disk_full(exc) from exc
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(handle.close)
        await anyio.to_thread.run_sync(self._save_offset, upload_id, progress.offset)
        return progress.offset

    @staticmethod
    def _rollback(handle: object, progress: _Progress, begin: int, saved: hashlib._Hash) -> None:
        try:
            handle.truncate(begin)  # type: ignore[attr-defined]
        except OSError:
            pass
        progress.offset, progress.hasher = begin, saved

    # -- completion -------------------------------------------------------

    async def finish(
        self,
        repository: str,
        upload_id: str,
        digest: names.Digest,
        body: Body | None = None,
        *,
        length: int | None = None,
    ) -> int:
        """Append an optional last chunk, verify ``digest`` and commit the blob.

        A digest mismatch or a quota refusal deletes the session: nothing is
        stored.  Returns the blob size.
        """
        async with self._lock(upload_id):
            if body is not None:
                await self._append_locked(repository, upload_id, body, None, length, digest)
            offset = await anyio.to_thread.run_sync(self._offset, repository, upload_id)
            progress = await anyio.to_thread.run_sync(self._recover, upload_id, offset)
            return await anyio.to_thread.run_sync(
                self._commit, repository, upload_id, digest, progress
            )

    def _commit(
        self, repository: str, upload_id: str, digest: names.Digest, progress: _Progress
    ) -> int:
        path = self.store.upload_path(upload_id)
        if digest.algorithm == "sha256":
            actual = progress.hasher.hexdigest()
        else:
            actual = _hash_file(path, digest.algorithm)
        if actual != digest.hex:
            self._cancel(repository, upload_id)
            raise errcodes.RegistryError(
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
                detail={"digest": str(digest), "actual": f"{digest.algorithm}:{actual}"},
            )
        size = progress.offset
        with self.store.lock:
            with db.read(self.engine) as conn:
                known = db.blob_size(conn, str(digest)) is not None
                total = db.total_blob_bytes(conn) if self.quota_bytes else 0
            if not known and self.quota_bytes and total + size > self.quota_bytes:
                self._cancel(repository, upload_id)
                raise errcodes.RegistryError(
                    "DENIED",
                    "registry storage quota exceeded",
                    detail={"quota": self.quota_bytes, "used": total, "blob": size},
                )
            if known and self.store.has(digest):
                path.unlink(missing_ok=True)
            else:
                try:
                    self.store.commit(path, digest)
                except errcodes.RegistryError:
                    self._cancel(repository, upload_id)
                    raise
            with db.write(self.engine) as conn:
                db.record_blob(conn, repository, str(digest), size)
                conn.execute(schema.uploads.delete().where(schema.uploads.c.id == upload_id))
        self._forget(upload_id)
        return size


_WRITERS = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="oci-upload")
"""Threads that write and hash upload buffers (one buffer in flight per upload)."""


class _Writer:
    """Writes and hashes buffers in a worker thread while the next one is received.

    At most one buffer is in flight, so an upload holds at most two
    :data:`blobs.CHUNK` buffers; the event loop keeps reading the socket
    meanwhile instead of waiting for the disk and the hash.
    """

    def __init__(self, handle: IO[bytes], progress: _Progress) -> None:
        self._handle = handle
        self._progress = progress
        self._inflight: concurrent.futures.Future[None] | None = None

    async def submit(self, chunks: list[bytes]) -> None:
        await self.drain()
        self._inflight = _WRITERS.submit(Uploads._write, self._handle, self._progress, chunks)

    async def drain(self) -> None:
        """Wait for the buffer in flight; raises its write error."""
        if self._inflight is not None:
            await asyncio.wrap_future(self._inflight)
            self._inflight = None

    def settle(self) -> None:
        """Blocking: let the buffer in flight finish, ignoring its error (before a rollback)."""
        if self._inflight is not None:
            concurrent.futures.wait([self._inflight])
            self._inflight = None


class _QuotaExceeded(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _hash_file(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(blobs.CHUNK):
            hasher.update(block)
    return hasher.hexdigest()


def remove_session_file(store: blobs.BlobStore, upload_id: str) -> None:
    """Delete an upload file (used by the GC)."""
    try:
        os.unlink(store.upload_path(upload_id))
    except FileNotFoundError:
        pass
