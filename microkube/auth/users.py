"""Additional users: ``microkube add-user NAME --group G``.

By default a user gets a client certificate signed by microkube's CA
(``CN=NAME``, one ``O`` per group), as ``kubeadm kubeconfig user`` and
MicroK8s do; ``add-user`` prints a kubeconfig embedding it
(``client-certificate-data``/``client-key-data``).  Nothing is stored on the
server: the API server authenticates any certificate the CA signed
(:mod:`microkube.auth.authn`).  As upstream, such a certificate cannot be
revoked before it expires (``--days``); take the user's permissions away
through RBAC instead.

``--token`` gives the user a random bearer token instead, stored in
``<state_dir>/pki/users.json`` (mode 0600, like the admin token)::

    {"<token>": {"username": "bob", "uid": "bob", "groups": ["dev", "system:authenticated"]}}

:class:`StaticUsers` is the mapping :class:`microkube.auth.authn.Authenticator`
consults (``authenticator.static``); it re-reads the file when its mtime
changes, so token users take effect on a running server without a restart,
and ``add-user --token`` again replaces the user's token.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

AUTHENTICATED = "system:authenticated"


def users_file(pki_dir: Path) -> Path:
    return pki_dir / "users.json"


def _read(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def add_user(pki_dir: Path, name: str, groups: list[str] | None = None) -> str:
    """Create (or replace) user ``name`` with ``groups``; returns its new token."""
    if not name or name.startswith("system:"):
        raise ValueError(f"invalid user name {name!r}")
    path = users_file(pki_dir)
    data = {t: u for t, u in _read(path).items() if u.get("username") != name}
    token = secrets.token_urlsafe(32)
    all_groups = [g for g in (groups or []) if g != AUTHENTICATED] + [AUTHENTICATED]
    data[token] = {"username": name, "uid": name, "groups": all_groups}
    pki_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return token


def remove_user(pki_dir: Path, name: str) -> bool:
    path = users_file(pki_dir)
    data = _read(path)
    kept = {t: u for t, u in data.items() if u.get("username") != name}
    if len(kept) == len(data):
        return False
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(kept, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return True


class StaticUsers(Mapping[str, dict[str, Any]]):
    """token → user info, backed by ``users.json`` and reloaded when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._data: dict[str, dict[str, Any]] = {}

    def _current(self) -> dict[str, dict[str, Any]]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            self._data, self._mtime = {}, None
            return self._data
        if mtime != self._mtime:
            self._data = _read(self.path)
            self._mtime = mtime
        return self._data

    def __getitem__(self, token: str) -> dict[str, Any]:
        return self._current()[token]

    def __contains__(self, token: object) -> bool:
        return token in self._current()

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


def user_kubeconfig(
    admin_config: dict[str, Any],
    name: str,
    token: str = "",
    *,
    cert_pem: bytes = b"",
    key_pem: bytes = b"",
) -> dict[str, Any]:
    """The admin kubeconfig with the user's token or client certificate instead of the admin's."""
    cfg: dict[str, Any] = json.loads(json.dumps(admin_config))
    cluster = cfg["clusters"][0]["name"]
    if cert_pem:
        cred = {
            "client-certificate-data": base64.b64encode(cert_pem).decode(),
            "client-key-data": base64.b64encode(key_pem).decode(),
        }
    else:
        cred = {"token": token}
    cfg["users"] = [{"name": name, "user": cred}]
    ctx_name = f"{name}@{cluster}"
    cfg["contexts"] = [{"name": ctx_name, "context": {"cluster": cluster, "user": name}}]
    cfg["current-context"] = ctx_name
    return cfg


def add_cli(sub: Any, common: Any, settings: Any) -> None:
    """Register ``add-user`` on the CLI's subparsers (called by :mod:`microkube.cli`).

    ``common`` adds the shared --state-dir/--port options; ``settings`` turns the
    parsed arguments into :class:`microkube.settings.Settings`.
    """
    p = sub.add_parser(
        "add-user", help="create a user (client certificate, or --token) and print its kubeconfig"
    )
    common(p)
    p.add_argument("name")
    p.add_argument("--group", action="append", default=[], help="group of the user (repeatable)")
    p.add_argument("--days", type=int, default=365, help="certificate lifetime in days")
    p.add_argument("--token", action="store_true", help="a bearer token instead of a certificate")
    p.add_argument("--token-only", action="store_true", help="a bearer token; print only it")

    def run(args: argparse.Namespace) -> int:
        import yaml

        from microkube import cli
        from microkube.auth import pki

        s = settings(args)
        if not args.name or args.name.startswith("system:"):
            print(f"error: invalid user name {args.name!r}", file=sys.stderr)
            return 1
        if args.token or args.token_only:
            token = add_user(s.pki_dir, args.name, args.group)
            if args.token_only or not (s.pki_dir / "ca.crt").exists():
                print(token)
                return 0
            cfg = user_kubeconfig(cli.kubeconfig(s), args.name, token)
        else:
            if not (s.pki_dir / "ca.key").exists():
                print(f"error: no CA in {s.pki_dir}: run microkube serve once", file=sys.stderr)
                return 1
            groups = [g for g in args.group if g != AUTHENTICATED]
            cert, key = pki.issue_client_cert(pki.Pki(s.pki_dir), args.name, groups, days=args.days)
            cfg = user_kubeconfig(cli.kubeconfig(s), args.name, cert_pem=cert, key_pem=key)
        sys.stdout.write(yaml.safe_dump(cfg, sort_keys=False))
        return 0

    p.set_defaults(func=run)
