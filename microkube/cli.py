"""Command line: ``microkube serve|config|kubectl|status|reset|images|registry``.

Parses arguments into :class:`microkube.settings.Settings` and hands over to
:mod:`microkube.app`; nothing here knows how the cluster works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from microkube.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="state directory (default /var/lib/microkube as root)",
    )
    p.add_argument(
        "--instance",
        default=None,
        help="prefix of the host resources this instance owns (default: microkube)",
    )
    p.add_argument("--port", type=int, default=None, help="API server port (default 16443)")
    p.add_argument("--bind-address", default=None, help="API server address (default 127.0.0.1)")


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings()
    env_state = os.environ.get("MICROKUBE_STATE_DIR")
    if args.state_dir or env_state:
        s.state_dir = Path(str(args.state_dir or env_state)).absolute()
    if args.instance:
        s.instance = args.instance
    if args.port:
        s.api.port = args.port
    if args.bind_address:
        s.api.bind_address = args.bind_address
    if getattr(args, "runtime", None):
        s.kubelet.runtime = args.runtime
    if getattr(args, "authorization", None):
        s.api.authorization = args.authorization
    if getattr(args, "registry_port", None):
        s.registry.port = args.registry_port
    if getattr(args, "no_registry", False):
        s.registry.enabled = False
    if getattr(args, "registry_bind_address", None):
        s.registry.bind_address = args.registry_bind_address
    if getattr(args, "registry_quota", None) is not None:
        s.registry.quota_bytes = args.registry_quota
    if getattr(args, "registry_tls", False):
        s.registry.tls = True
    if getattr(args, "registry_user", None):
        if not args.registry_password_file:
            raise SystemExit("error: --registry-user needs --registry-password-file")
        s.registry.username = args.registry_user
        s.registry.password_file = str(Path(args.registry_password_file).absolute())
    if getattr(args, "pod_cidr", None):
        s.network.pod_cidr = args.pod_cidr
    if getattr(args, "service_cidr", None):
        s.network.service_cidr = args.service_cidr
    _network(s, args)
    if getattr(args, "podman_socket", None):
        s.kubelet.podman_socket = args.podman_socket
    if getattr(args, "max_pods", None):
        s.kubelet.max_pods = args.max_pods
    _remember(s, args)
    return s


def _network(s: Settings, args: argparse.Namespace) -> None:
    """Service proxy and DNS flags of ``serve``."""
    if getattr(args, "cluster_domain", None):
        s.network.cluster_domain = args.cluster_domain.strip(".")
    if getattr(args, "service_node_port_range", None):
        low, _, high = args.service_node_port_range.partition("-")
        if not (low.isdigit() and high.isdigit() and 0 < int(low) <= int(high) < 65536):
            raise SystemExit("error: --service-node-port-range must look like 30000-32767")
        s.network.node_port_range = (int(low), int(high))
    if getattr(args, "proxy", None) is not None:
        s.network.proxy = args.proxy
    if getattr(args, "localhost_nodeports", None) is not None:
        s.network.localhost_nodeports = args.localhost_nodeports
    if getattr(args, "dns_address", None):
        s.network.dns_address = args.dns_address


def _remember(s: Settings, args: argparse.Namespace) -> None:
    """`serve` records its address so `config`/`status` find it without flags."""
    if args.cmd == "serve":
        s.state_dir.mkdir(parents=True, exist_ok=True)
        (s.state_dir / "serve.json").write_text(
            json.dumps({"address": s.api.bind_address, "port": s.api.port, "instance": s.instance})
        )
    else:
        f = s.state_dir / "serve.json"
        if f.exists() and not args.port and not args.bind_address:
            data = json.loads(f.read_text())
            s.api.bind_address, s.api.port = data["address"], data["port"]
        if f.exists() and not args.instance:
            s.instance = json.loads(f.read_text()).get("instance", s.instance)


def kubeconfig(s: Settings) -> dict:
    import base64

    pki_dir = s.pki_dir
    ca = (pki_dir / "ca.crt").read_bytes()
    token = (pki_dir / "admin.token").read_text().strip()
    host = s.api.bind_address if s.api.bind_address not in ("0.0.0.0", "::") else "127.0.0.1"
    name = s.instance
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": f"https://{host}:{s.api.port}",
                    "certificate-authority-data": base64.b64encode(ca).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "admin"}}],
        "current-context": name,
        "preferences": {},
    }


def cmd_serve(args: argparse.Namespace) -> int:
    from microkube import app

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    s = _settings(args)
    try:
        import uvloop  # a faster event loop (TLS and HTTP parsing are the API server's hot path)

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(app.run(s))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    s = _settings(args)
    if not (s.pki_dir / "admin.token").exists():
        print(
            f"error: no credentials in {s.pki_dir}; start `microkube serve` first", file=sys.stderr
        )
        return 1
    sys.stdout.write(yaml.safe_dump(kubeconfig(s), sort_keys=False))
    return 0


def cmd_kubectl(args: argparse.Namespace) -> int:
    s = _settings(args)
    with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", delete=False) as f:
        yaml.safe_dump(kubeconfig(s), f)
        path = f.name
    try:
        os.chmod(path, 0o600)
        kubectl = shutil.which("kubectl") or "kubectl"
        return subprocess.call([kubectl, "--kubeconfig", path, *args.args])
    finally:
        os.unlink(path)


def cmd_status(args: argparse.Namespace) -> int:
    s = _settings(args)
    try:
        cfg = kubeconfig(s)
    except FileNotFoundError:
        print("microkube is not running (no state)")
        return 1
    ctx = ssl.create_default_context(cafile=str(s.pki_dir / "ca.crt"))
    url = cfg["clusters"][0]["cluster"]["server"] + "/readyz"
    req = urllib.request.Request(
        url, headers={"Authorization": "Bearer " + cfg["users"][0]["user"]["token"]}
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            ok = r.status == 200
    except Exception as exc:  # noqa: BLE001
        print(f"microkube is not running: {exc}")
        return 1
    print("microkube is running" if ok else "microkube is starting")
    print(f"api server: {cfg['clusters'][0]['cluster']['server']}")
    return 0 if ok else 1


def cmd_reset(args: argparse.Namespace) -> int:
    from microkube import reset

    s = _settings(args)
    reset.reset(s)
    print(f"removed {s.state_dir} and the host resources of instance {s.instance!r}")
    return 0


def _registry_engine(s: Settings) -> Engine:
    from microkube.store import engine as store_engine

    if not s.db_path.exists():
        raise SystemExit(f"error: no microkube state in {s.state_dir}")
    engine = store_engine.create_engine(s.db_path)
    store_engine.migrate(engine)
    return engine


def cmd_images(args: argparse.Namespace) -> int:
    from microkube.oci import imports

    s = _settings(args)
    engine = _registry_engine(s)
    if args.images_cmd == "import":
        for ref in imports.import_archive(Path(args.file), engine, s.state_dir):
            print(f"imported {ref}")
        return 0
    print(f"{'IMAGE':<50} {'DIGEST':<20} SIZE")
    for img in imports.list_images(engine):
        print(f"{s.registry.host}/{img.repository}:{img.tag:<30} {img.digest[:19]:<20} {img.size}")
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from microkube.oci import gc

    s = _settings(args)
    report = gc.gc(_registry_engine(s), s.state_dir / "registry")
    print(f"deleted {report.blobs_deleted} blobs ({report.bytes_freed} bytes), {report.uploads_deleted} stale uploads, {report.orphans_deleted} orphan files")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="microkube", description="A single-host Kubernetes in one process."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="run the cluster in the foreground")
    _common(p)
    p.add_argument(
        "--runtime",
        choices=["podman", "fake", "none"],
        default=None,
        help="container runtime (default podman; fake simulates containers; none runs no node)",
    )
    p.add_argument("--authorization", choices=["RBAC", "AlwaysAllow"], default=None)
    p.add_argument("--registry-port", type=int, default=None)
    p.add_argument("--no-registry", action="store_true", help="do not serve the built-in registry")
    p.add_argument("--registry-bind-address", default=None, help="registry address (default 127.0.0.1)")
    p.add_argument("--registry-quota", type=int, default=None, help="largest total blob bytes (0: no limit)")
    p.add_argument("--registry-tls", action="store_true", help="serve the registry over HTTPS (CA: pki/ca.crt)")
    p.add_argument("--registry-user", default=None, help="require basic auth as this user")
    p.add_argument("--registry-password-file", default=None, help="file holding the registry password")
    p.add_argument("--pod-cidr", default=None)
    p.add_argument("--service-cidr", default=None)
    p.add_argument("--cluster-domain", default=None, help="DNS suffix (default cluster.local)")
    p.add_argument(
        "--service-node-port-range", default=None, help="NodePort range (default 30000-32767)"
    )
    p.add_argument(
        "--proxy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the service proxy and cluster DNS (default: with the podman runtime)",
    )
    p.add_argument(
        "--localhost-nodeports",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NodePorts also answer on 127.0.0.1 (default yes)",
    )
    p.add_argument(
        "--dns-address", default=None, help="cluster DNS listen address (default: pod gateway)"
    )
    p.add_argument(
        "--podman-socket",
        default=None,
        help="use this Podman API socket instead of a private service",
    )
    p.add_argument("--max-pods", type=int, default=None, help="node pod capacity (default 110)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_serve)
    for name, func, help_ in (
        ("config", cmd_config, "print the admin kubeconfig"),
        ("status", cmd_status, "is the API ready?"),
        ("reset", cmd_reset, "remove all state and host resources"),
    ):
        p = sub.add_parser(name, help=help_)
        _common(p)
        p.set_defaults(func=func)
    p = sub.add_parser("kubectl", help="run kubectl with the admin kubeconfig")
    _common(p)
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_kubectl)
    p = sub.add_parser("images", help="manage images in the built-in registry")
    _common(p)
    isub = p.add_subparsers(dest="images_cmd", required=True)
    ip = isub.add_parser("import")
    ip.add_argument("file")
    isub.add_parser("ls")
    p.set_defaults(func=cmd_images)
    p = sub.add_parser("registry", help="registry maintenance")
    _common(p)
    rsub = p.add_subparsers(dest="registry_cmd", required=True)
    rsub.add_parser("gc")
    p.set_defaults(func=cmd_registry)
    from microkube.auth import users

    users.add_cli(sub, _common, _settings)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
