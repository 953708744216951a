"""Certificates and credentials of one instance, created on first start.

``<state>/pki`` (mode 0700) holds:

- ``ca.crt``/``ca.key``: the cluster CA (EC P-256, 10 years);
- ``server.crt``/``server.key``: the API serving certificate, SANs for
  127.0.0.1, localhost, the host name and the in-cluster ``kubernetes``
  Service names and ClusterIP; reissued when a SAN is missing;
- ``admin.token``: the admin's bearer token (group ``system:masters``);
- ``sa.key``: the service-account token signing key.

Every file is written 0600 through a temporary file and ``rename``, so a crash
never leaves a half-written key behind.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def admin_token_file(self) -> Path:
        return self.dir / "admin.token"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    def admin_token(self) -> str:
        return self.admin_token_file.read_text().strip()


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ensure(state_dir: Path, *, extra_ips: list[str] = (), extra_names: list[str] = ()) -> Pki:  # type: ignore[assignment]
    """Create whatever is missing; return the paths."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    pki = Pki(state_dir / "pki")
    pki.dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(pki.dir, 0o700)
    if not pki.ca_cert.exists() or not pki.ca_key.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "microkube-ca")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        _write_private(pki.ca_key, _key_pem(key))
        _write_private(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
        pki.server_cert.unlink(missing_ok=True)
    ips = ["127.0.0.1", *extra_ips]
    names = ["localhost", socket.gethostname(), *extra_names]
    if not _server_cert_ok(pki, ips, names):
        _issue_server_cert(pki, ips, names)
    if not pki.admin_token_file.exists():
        _write_private(pki.admin_token_file, secrets.token_urlsafe(32).encode() + b"\n")
    if not pki.sa_key.exists():
        _write_private(pki.sa_key, _key_pem(ec.generate_private_key(ec.SECP256R1())))
    return pki


def ensure_serving_cert(
    pki: Pki, stem: str, common_name: str, *, ips: list[str], names: list[str]
) -> tuple[Path, Path]:
    """``<stem>.crt``/``<stem>.key`` signed by the CA with these SANs (reissued when one is
    missing or it nears expiry); returns (cert, key) paths.  Used by the OCI registry."""
    cert, key = pki.dir / f"{stem}.crt", pki.dir / f"{stem}.key"
    if not _server_cert_ok(pki, ips, names, cert=cert, key=key):
        _issue_server_cert(pki, ips, names, cert=cert, key=key, common_name=common_name)
    return cert, key


def _server_cert_ok(
    pki: Pki, ips: list[str], names: list[str], *, cert: Path | None = None, key: Path | None = None
) -> bool:
    cert_path, key_path = cert or pki.server_cert, key or pki.server_key
    if not cert_path.exists() or not key_path.exists():
        return False
    loaded = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if loaded.not_valid_after_utc < _now() + dt.timedelta(days=30):
        return False
    san = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    have_names = set(san.get_values_for_type(x509.DNSName))
    return set(ips) <= have_ips and set(names) <= have_names


def _issue_server_cert(
    pki: Pki,
    ips: list[str],
    names: list[str],
    *,
    cert: Path | None = None,
    key: Path | None = None,
    common_name: str = "kube-apiserver",
) -> None:
    cert_path, key_path = cert or pki.server_cert, key or pki.server_key
    ca_key = _load_key(pki.ca_key)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    private = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys(names)]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)]
    signed = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(private))
    _write_private(cert_path, signed.public_bytes(serialization.Encoding.PEM))


def issue_client_cert(
    pki: Pki, user: str, groups: list[str], *, days: int = 365
) -> tuple[bytes, bytes]:
    """A client certificate (CN=user, O=groups) signed by the CA; returns (cert PEM, key PEM)."""
    ca_key = _load_key(pki.ca_key)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, user)] + [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)
