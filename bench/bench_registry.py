"""Throughput and latency of the built-in OCI registry.

Measures, on one disk (the temp dir):

* push and pull of a ~200 MB image of 4 random-data layers, with a direct
  HTTP client (httpx: monolithic streamed POST per layer, then PUT manifest;
  pull = GET every blob to a file) and, when installed, skopeo
  (``oci:`` layout → registry → ``oci:`` layout);
* the registry process's CPU seconds for each step (steadier than the wall
  time on a shared host);
* a raw ``cp`` of the same bytes, as the disk's ceiling;
* manifest GET latency (p50/p99) over 1000 sequential requests.

The registry runs in uvicorn on 127.0.0.1:<random port> in its own process
(as in ``microkube serve``), so the Python client does not share its GIL.
``--profile FILE`` writes the server's cProfile stats.  Run from the
repository root: ``python -m bench.bench_registry [--mb 200]`` (or with
``PYTHONPATH=.``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from microkube.oci import app as oci_app
from microkube.store import engine as store_engine

LAYER_MT = "application/vnd.oci.image.layer.v1.tar"


def _make_layers(directory: Path, total_mb: int, count: int) -> list[Path]:
    paths = []
    per = total_mb * 1024 * 1024 // count
    for i in range(count):
        path = directory / f"layer{i}"
        with open(path, "wb") as out:
            remaining = per
            while remaining:
                block = os.urandom(min(remaining, 4 * 1024 * 1024))
                out.write(block)
                remaining -= len(block)
        paths.append(path)
    return paths


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * 1024 * 1024):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _stream(path: Path):  # type: ignore[no-untyped-def]
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            yield block


def _manifest(config: bytes, layers: list[tuple[str, int]]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                "size": len(config),
            },
            "layers": [{"mediaType": LAYER_MT, "digest": d, "size": s} for d, s in layers],
        }
    ).encode()


def _mbps(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:8.1f} MB/s ({seconds:6.2f} s)"


_SERVER_PID: int | None = None


def _server_cpu() -> float:
    """User + system CPU seconds the registry process has used (0 when unknown)."""
    if _SERVER_PID is None:
        return 0.0
    try:
        fields = Path(f"/proc/{_SERVER_PID}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Timer:
    """Wall time and the registry's CPU time of one step.

    The CPU seconds barely depend on what else the (shared) host is doing,
    unlike the wall time: they tell a server-side change from noise.
    """

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), _server_cpu()

    def result(self, nbytes: int) -> str:
        seconds = time.perf_counter() - self.wall
        return f"{_mbps(nbytes, seconds)}, registry CPU {_server_cpu() - self.cpu:5.2f} s"


def bench_http(base: str, layers: list[Path], work: Path, repo: str) -> None:
    digests = [(_sha256(p), p.stat().st_size) for p in layers]
    total = sum(s for _, s in digests)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    with httpx.Client(base_url=base, timeout=120) as client:
        timer = _Timer()
        for (digest, _), path in zip(digests, layers, strict=True):
            r = client.post(
                f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=_stream(path)
            )
            assert r.status_code == 201, r.text
        cdigest = "sha256:" + hashlib.sha256(config).hexdigest()
        client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": cdigest}, content=config)
        r = client.put(
            f"/v2/{repo}/manifests/latest",
            content=_manifest(config, digests),
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert r.status_code == 201, r.text
        push = timer.result(total)

        out = work / "pulled"
        out.mkdir()
        timer = _Timer()
        for i, (digest, _) in enumerate(digests):
            with (
                client.stream("GET", f"/v2/{repo}/blobs/{digest}") as resp,
                open(out / f"l{i}", "wb") as f,
            ):
                for block in resp.iter_bytes(1024 * 1024):
                    f.write(block)
        pull = timer.result(total)
        shutil.rmtree(out)
    print(f"http push         {push}")
    print(f"http pull         {pull}")


def bench_curl(base: str, layers: list[Path], work: Path, repo: str) -> None:
    """Push and pull with curl: a client that is not the bottleneck (C, no GIL).

    Push is a monolithic POST per layer (what the registry does per blob is the
    same for every client: stream to disk, hash, fsync, rename); pull is a GET
    of every blob to a file.
    """
    if not shutil.which("curl"):
        print("curl              (not installed)")
        return
    digests = [_sha256(p) for p in layers]
    total = sum(p.stat().st_size for p in layers)
    timer = _Timer()
    for digest, path in zip(digests, layers, strict=True):
        url = f"{base}/v2/{repo}/blobs/uploads?digest={digest}"
        subprocess.run(
            [
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                "-T",
                str(path),
                "-H",
                "Expect:",
                "-H",
                "Content-Type: application/octet-stream",
                url,
            ],
            check=True,
        )
    push = timer.result(total)
    out = work / "pulled-curl"
    out.mkdir()
    timer = _Timer()
    for i, digest in enumerate(digests):
        subprocess.run(
            ["curl", "-sf", "-o", str(out / f"l{i}"), f"{base}/v2/{repo}/blobs/{digest}"],
            check=True,
        )
    pull = timer.result(total)
    shutil.rmtree(out)
    print(f"curl push         {push}")
    print(f"curl pull         {pull}")


def bench_cp(layers: list[Path], work: Path) -> float:
    """``cp`` of the layers, then ``sync`` of those files only (the registry fsyncs each blob)."""
    dest = work / "cp"
    dest.mkdir()
    total = sum(p.stat().st_size for p in layers)
    t0 = time.perf_counter()
    for p in layers:
        subprocess.run(["cp", str(p), str(dest / p.name)], check=True)
    subprocess.run(["sync", *(str(dest / p.name) for p in layers)], check=True)
    seconds = time.perf_counter() - t0
    shutil.rmtree(dest)
    print(f"raw cp            {_mbps(total, seconds)}")
    return seconds


def bench_skopeo(address: str, layers: list[Path], work: Path, repo: str) -> None:
    if not shutil.which("skopeo"):
        print("skopeo            (not installed)")
        return
    layout = work / "layout"
    (layout / "blobs/sha256").mkdir(parents=True)
    descs = []
    for p in layers:
        digest = _sha256(p)
        os.link(p, layout / "blobs/sha256" / digest.split(":")[1])
        descs.append((digest, p.stat().st_size))
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    (layout / "blobs/sha256" / hashlib.sha256(config).hexdigest()).write_bytes(config)
    manifest = _manifest(config, descs)
    mdigest = hashlib.sha256(manifest).hexdigest()
    (layout / "blobs/sha256" / mdigest).write_bytes(manifest)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{mdigest}",
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    total = sum(s for _, s in descs)
    env = {**os.environ, "CONTAINERS_REGISTRIES_CONF": str(work / "registries.conf")}
    (work / "registries.conf").write_text(f'[[registry]]\nlocation="{address}"\ninsecure=true\n')
    # skopeo gzips an uncompressed layer on the fly when it pushes (as podman
    # does from its storage): that client-side cost is in "skopeo push";
    # --preserve-digests sends the layers as they are ("skopeo push as-is").
    results = []
    for name, flags in (("", []), ("-asis", ["--preserve-digests"])):
        timer = _Timer()
        subprocess.run(
            [
                "skopeo",
                "copy",
                "-q",
                *flags,
                "--dest-tls-verify=false",
                f"oci:{layout}:latest",
                f"docker://{address}/{repo}{name}:latest",
            ],
            check=True,
            env=env,
        )
        results.append(timer.result(total))
    timer = _Timer()
    subprocess.run(
        [
            "skopeo",
            "copy",
            "-q",
            "--src-tls-verify=false",
            f"docker://{address}/{repo}:latest",
            f"oci:{work / 'pulled-layout'}:latest",
        ],
        check=True,
        env=env,
    )
    pull = timer.result(total)
    shutil.rmtree(layout)
    shutil.rmtree(work / "pulled-layout")
    print(f"skopeo push       {results[0]}")
    print(f"skopeo push as-is {results[1]}")
    print(f"skopeo pull       {pull}")


def bench_manifest_latency(base: str, repo: str, count: int = 1000) -> None:
    samples = []
    with httpx.Client(base_url=base) as client:
        for _ in range(count):
            t0 = time.perf_counter()
            r = client.get(
                f"/v2/{repo}/manifests/latest",
                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            )
            samples.append(time.perf_counter() - t0)
            assert r.status_code == 200
    samples.sort()
    p50 = statistics.median(samples) * 1000
    p99 = samples[int(len(samples) * 0.99) - 1] * 1000
    print(
        f"manifest GET x{count}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {samples[-1] * 1000:.2f} ms"
    )


def serve(work: Path, port_file: Path, profile: str | None, http: str) -> None:
    """The registry alone in this process until SIGTERM (the ``--serve`` mode)."""
    import asyncio
    import cProfile
    import signal

    import uvicorn

    engine = store_engine.create_engine(work / "state.db")
    store_engine.migrate(engine)
    sock = oci_app.listen_socket("127.0.0.1", 0)
    server = uvicorn.Server(oci_app.server_config(oci_app.create_app(work, engine), http=http))
    port_file.write_text(str(sock.getsockname()[1]))
    profiler = cProfile.Profile() if profile else None

    async def run() -> None:
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGTERM, lambda: setattr(server, "should_exit", True)
        )
        await server.serve(sockets=[sock])

    if profiler:
        profiler.enable()
    asyncio.run(run())
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    engine.dispose()


@contextlib.contextmanager
def registry_process(work: Path, profile: str | None, http: str) -> Iterator[str]:
    global _SERVER_PID
    port_file = work / "port"
    cmd = [sys.executable, "-m", "bench.bench_registry", "--serve", str(work), "--http", http]
    if profile:
        cmd += ["--profile", profile]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent)
    _SERVER_PID = proc.pid
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "registry did not start"
            time.sleep(0.05)
        address = f"127.0.0.1:{port_file.read_text()}"
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://{address}/v2/")
                break
            time.sleep(0.05)
        yield address
    finally:
        _SERVER_PID = None
        proc.terminate()
        proc.wait(30)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="image size in MB")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (the host may be busy)")
    parser.add_argument("--profile", default=None, help="write the server's cProfile stats here")
    parser.add_argument(
        "--http",
        default=oci_app.HTTP_PROTOCOL,
        choices=["h11", "httptools"],
        help="uvicorn HTTP implementation of the registry",
    )
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve), Path(args.serve) / "port", args.profile, args.http)
        return
    with tempfile.TemporaryDirectory(prefix="mk-bench-", dir=os.environ.get("TMPDIR")) as tmp:
        work = Path(tmp)
        src = work / "src"
        src.mkdir()
        layers = _make_layers(src, args.mb, args.layers)
        with registry_process(work, args.profile, args.http) as address:
            base = f"http://{address}"
            print(
                f"{args.mb} MB in {args.layers} layers, registry at {address} ({args.http}), "
                f"dir {work}, loadavg {_loadavg()}"
            )
            for i in range(args.rounds):
                if i:  # fresh bytes: a re-pushed blob takes the cheaper known-blob path
                    shutil.rmtree(src)
                    src.mkdir()
                    layers = _make_layers(src, args.mb, args.layers)
                print(f"-- round {i + 1} (loadavg {_loadavg()})")
                bench_cp(layers, work)
                bench_curl(base, layers, work, f"bench/curl{i}")
                bench_http(base, layers, work, f"bench/http{i}")
                bench_skopeo(address, layers, work, f"bench/skopeo{i}")
            bench_manifest_latency(base, "bench/http0")


if __name__ == "__main__":
    main()
