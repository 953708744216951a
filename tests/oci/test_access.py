"""Registry access settings: address, credentials and the serving certificate."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509

from microkube import cli
from microkube.auth import pki as pki_mod
from microkube.oci import access
from microkube.settings import RegistrySettings


def test_host_follows_bind_address_and_port() -> None:
    assert RegistrySettings().host == "localhost:32000"
    assert RegistrySettings(bind_address="0.0.0.0", port=5000).host == "localhost:5000"
    assert RegistrySettings(bind_address="192.0.2.7", port=5000).host == "192.0.2.7:5000"
    assert RegistrySettings(bind_address="2001:db8::1", port=5000).host == "[2001:db8::1]:5000"


def test_credentials_from_password_file(tmp_path) -> None:
    assert access.credentials(RegistrySettings()) is None
    secret = tmp_path / "pw"
    secret.write_text("s3cret\nignored\n")
    s = RegistrySettings(username="alice", password_file=str(secret))
    assert access.credentials(s) == ("alice", "s3cret")
    secret.write_text("\n")
    with pytest.raises(SystemExit):
        access.credentials(s)
    with pytest.raises(SystemExit):
        access.credentials(RegistrySettings(username="alice", password_file=str(tmp_path / "no")))


def _serve_settings(monkeypatch, argv):  # type: ignore[no-untyped-def]
    captured = {}
    monkeypatch.setattr(cli, "cmd_serve", lambda args: captured.setdefault("s", cli._settings(args)) and 0)
    cli.main(["serve", *argv])
    return captured["s"].registry


def test_cli_flags(tmp_path, monkeypatch) -> None:
    s = _serve_settings(monkeypatch, [
        "--state-dir", str(tmp_path), "--registry-tls", "--registry-quota", "1000",
        "--registry-bind-address", "192.0.2.7", "--registry-user", "alice",
        "--registry-password-file", "pw",
    ])
    assert (s.tls, s.quota_bytes, s.bind_address, s.username) == (True, 1000, "192.0.2.7", "alice")
    assert s.password_file.endswith("/pw") and s.password_file.startswith("/")
    assert s.host == "192.0.2.7:32000"
    with pytest.raises(SystemExit, match="password-file"):
        _serve_settings(monkeypatch, ["--state-dir", str(tmp_path), "--registry-user", "alice"])


def test_serving_cert_signed_by_ca_with_sans(tmp_path) -> None:
    p = pki_mod.ensure(tmp_path / "state")
    s = RegistrySettings(bind_address="192.0.2.7")
    cert_path, key_path = access.serving_cert(p, s, "198.51.100.3")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = set(san.get_values_for_type(x509.IPAddress))
    assert {ipaddress.ip_address(a) for a in ("127.0.0.1", "192.0.2.7", "198.51.100.3")} <= ips
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    ca = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    # Stable across restarts: not reissued while it still covers the SANs.
    before = cert_path.read_bytes()
    assert access.serving_cert(p, s, "198.51.100.3") == (cert_path, key_path)
    assert cert_path.read_bytes() == before
