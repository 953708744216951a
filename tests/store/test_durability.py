"""Every write the store acknowledged survives ``kill -9`` of its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from microkube.settings import StoreSettings
from microkube.store.log import Store

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from microkube.settings import StoreSettings
    from microkube.store.log import Store

    async def main():
        store = await Store.open(Path(sys.argv[1]), StoreSettings(retain_revisions=50, compact_interval=0.05))
        print("open", flush=True)

        async def loop(w):
            i = 0
            while True:
                key = f"/registry/pods/default/w{w}-{i}"
                kv = await store.create(key, {"metadata": {"name": key}, "w": w})
                if i % 3 == 0:
                    await store.delete(key)
                    print("deleted", key, flush=True)
                else:
                    print("ack", key, kv.revision, flush=True)
                i += 1

        await asyncio.gather(*(loop(w) for w in range(8)))

    asyncio.run(main())
    """
)


def run_and_kill(db_path: Path) -> tuple[dict[str, int], set[str]]:
    """Run WRITER, SIGKILL it after 400 acknowledged creates; return what it acknowledged."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acked: dict[str, int] = {}
    deleted: set[str] = set()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "open"
        while len(acked) < 400:
            line = proc.stdout.readline()
            assert line, "writer exited early"
            parts = line.split()
            if parts[0] == "ack":
                acked[parts[1]] = int(parts[2])
            else:
                deleted.add(parts[1])
        proc.send_signal(signal.SIGKILL)  # mid-stream: writes are in flight
        rest = proc.stdout.read()  # whatever was acknowledged before death
    finally:
        proc.kill()
        proc.wait(timeout=10)
    for line in rest.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "ack":
            acked[parts[1]] = int(parts[2])
        elif len(parts) == 2 and parts[0] == "deleted":
            deleted.add(parts[1])
    return acked, deleted


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db_path = tmp_path / "state.db"
    acked, deleted = run_and_kill(db_path)

    store = await Store.open(db_path, StoreSettings(compact_interval=3600))
    try:
        missing = [k for k in acked if store.get(k) is None]
        assert missing == []
        for key, revision in acked.items():
            kv = store.get(key)
            assert kv is not None and kv.revision == revision
        assert all(store.get(k) is None for k in deleted)
        assert store.revision >= max(acked.values())
        # and the store keeps working after the crash
        kv = await store.create("/registry/pods/default/after", {"metadata": {}})
        assert kv.revision == store.revision
    finally:
        await store.close()
