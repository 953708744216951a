"""Reading Podman's ``k8s-file`` container logs (the CRI log format) with partial lines joined.

Each record of the file is ``<RFC3339Nano time> <stream> <tag> <message>\\n`` where the
tag is ``F`` for a full line and ``P`` for a fragment that the application wrote without a
newline yet (``printf "a "; sleep 1; printf "b\\n"`` gives ``P a `` then ``F b``).  We read
the file ourselves rather than through Podman's logs endpoint because that endpoint (4.x)
drops the tag and the sub-second part of the time, and its ``tail`` glues fragments of
different lines together.

Fragments are joined per stream into one :class:`~microkube.kubelet.runtime.LogLine`
whose timestamp is the first fragment's, so ``--tail``, ``--since``, ``--timestamps`` and
``--limit-bytes`` count and cut whole lines.  A fragment still open at the end of a
non-follow read is emitted as it is (without newline), as ``podman logs`` prints it.

Blocking file reads run in a worker thread; following polls the file for growth and
asks ``alive()`` whether the container still runs, ending after a last read once it
has exited.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from microkube.kubelet import runtime as rt

POLL_SECONDS = 0.2
"""How often a follow stream looks for new records."""

_READ_CHUNK = 1 << 16


@dataclass
class Record:
    timestamp: datetime | None
    stream: rt.Stream
    partial: bool
    message: bytes


def parse_record(line: bytes, parse_time: Callable[[str], datetime | None]) -> Record | None:
    """One file line (without its newline) → a record; None for a malformed line."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr"):
        return None
    ts = parse_time(parts[0].decode("ascii", "replace"))
    stream: rt.Stream = "stdout" if parts[1] == b"stdout" else "stderr"
    message = parts[3] if len(parts) == 4 else b""
    return Record(ts, stream, parts[2].startswith(b"P"), message)


class Joiner:
    """Joins ``P`` fragments per stream until their ``F`` record arrives."""

    def __init__(self) -> None:
        self._open: dict[rt.Stream, tuple[datetime | None, bytes]] = {}

    def feed(self, rec: Record) -> rt.LogLine | None:
        ts, data = self._open.pop(rec.stream, (rec.timestamp, b""))
        data += rec.message
        if rec.partial:
            self._open[rec.stream] = (ts, data)
            return None
        return rt.LogLine(stream=rec.stream, data=data + b"\n", timestamp=ts)

    def flush(self) -> list[rt.LogLine]:
        """The fragments still open, as unterminated lines (oldest first)."""
        out = [rt.LogLine(stream=s, data=d, timestamp=t) for s, (t, d) in self._open.items()]
        self._open.clear()
        return sorted(out, key=lambda line: (line.timestamp is None, line.timestamp))


class _Reader:
    """Incremental reader: complete file lines from ``offset`` on (thread-side)."""

    def __init__(self, path: Path, parse_time: Callable[[str], datetime | None]) -> None:
        self.path = path
        self.offset = 0
        self._rest = b""
        self._parse_time = parse_time
        self.joiner = Joiner()

    def read(self) -> list[Record]:
        with self.path.open("rb") as f:
            f.seek(0, 2)
            if f.tell() < self.offset:  # truncated (log_size_max rotation): start over
                self.offset, self._rest = 0, b""
            f.seek(self.offset)
            data = f.read()
            self.offset = f.tell()
        return list(self._records(data))

    def _records(self, data: bytes) -> Iterator[Record]:
        buf = self._rest + data
        *lines, self._rest = buf.split(b"\n")
        for line in lines:
            rec = parse_record(line, self._parse_time)
            if rec is not None:
                yield rec

    def read_all(
        self, tail: int | None, since: datetime | None, *, close: bool
    ) -> list[rt.LogLine]:
        """Every joined line so far (the last ``tail`` of them); ``close`` ends open fragments."""
        kept: deque[rt.LogLine] = deque(maxlen=tail)
        with self.path.open("rb") as f:
            while chunk := f.read(_READ_CHUNK):
                kept.extend(_join(self._records(chunk), self.joiner, since))
            self.offset = f.tell()
        if close:
            kept.extend(_since(self.joiner.flush(), since))
        return list(kept)


def _since(lines: Iterable[rt.LogLine], since: datetime | None) -> Iterator[rt.LogLine]:
    for line in lines:
        if since is None or line.timestamp is None or line.timestamp >= since:
            yield line


def _join(
    records: Iterable[Record], joiner: Joiner, since: datetime | None
) -> Iterator[rt.LogLine]:
    joined = (joiner.feed(rec) for rec in records)
    return _since((line for line in joined if line is not None), since)


async def read(
    path: Path,
    parse_time: Callable[[str], datetime | None],
    *,
    follow: bool,
    since: datetime | None,
    tail: int | None,
    alive: Callable[[], Awaitable[bool]],
) -> AsyncIterator[rt.LogLine]:
    """The joined lines of a k8s-file log; ``OSError`` if it cannot be read."""
    reader = _Reader(path, parse_time)
    history = await asyncio.to_thread(reader.read_all, tail, since, close=not follow)
    for line in history:
        yield line
    if not follow:
        return
    while True:
        running = await alive()
        records = await asyncio.to_thread(reader.read)
        for line in _join(records, reader.joiner, None):
            yield line
        if not running:
            for line in reader.joiner.flush():
                yield line
            return
        if not records:
            await asyncio.sleep(POLL_SECONDS)
