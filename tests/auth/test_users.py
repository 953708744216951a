"""add-user: client-certificate users, static token users (users.json, live reload)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from microkube import cli
from microkube.auth import authn, users


def test_add_user_and_reload(tmp_path: Path) -> None:
    static = users.StaticUsers(users.users_file(tmp_path))
    assert "x" not in static
    token = users.add_user(tmp_path, "bob", ["devs"])
    assert static[token] == {
        "username": "bob",
        "uid": "bob",
        "groups": ["devs", "system:authenticated"],
    }
    assert stat.S_IMODE(users.users_file(tmp_path).stat().st_mode) == 0o600
    again = users.add_user(tmp_path, "bob")
    assert token not in static and static[again]["groups"] == ["system:authenticated"]
    auth = authn.Authenticator("admintoken")
    auth.static = static
    assert auth.authenticate({"authorization": f"Bearer {again}"})["username"] == "bob"
    assert users.remove_user(tmp_path, "bob")
    with pytest.raises(Exception, match="Unauthorized"):
        auth.authenticate({"authorization": f"Bearer {again}"})
    with pytest.raises(ValueError):
        users.add_user(tmp_path, "system:admin")


def test_add_user_cli_prints_a_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    (pki / "ca.crt").write_text("CA")
    (pki / "admin.token").write_text("admintoken")
    assert (
        cli.main(
            [
                "add-user",
                "alice",
                "--token",
                "--group",
                "ops",
                "--state-dir",
                str(tmp_path),
                "--port",
                "1234",
            ]  # fmt: skip
        )
        == 0
    )
    cfg = yaml.safe_load(capsys.readouterr().out)
    token = cfg["users"][0]["user"]["token"]
    assert cfg["users"][0]["name"] == "alice"
    assert cfg["clusters"][0]["cluster"]["server"].endswith(":1234")
    assert users.StaticUsers(users.users_file(pki))[token]["groups"] == [
        "ops",
        "system:authenticated",
    ]
    assert cli.main(["add-user", "carol", "--token-only", "--state-dir", str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.strip()) > 20


def test_add_user_cli_prints_a_client_certificate_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from microkube.auth import pki

    ca = pki.ensure(tmp_path)
    args = ["add-user", "dave", "--group", "devs", "--group", "ops", "--state-dir", str(tmp_path)]
    assert cli.main(args) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    user = cfg["users"][0]["user"]
    assert set(user) == {"client-certificate-data", "client-key-data"}
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dave"
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["devs", "ops"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca_cert = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca_cert)
    # Nothing is stored server-side for certificate users.
    assert not users.users_file(ca.dir).exists()
    # The subject of a verified peer certificate (getpeercert()) is the identity.
    peer = {"subject": ((("commonName", "dave"),), (("organizationName", "devs"),))}
    auth = authn.Authenticator("admintoken")
    assert auth.authenticate({}, peer) == {
        "username": "dave",
        "groups": ["devs", "system:authenticated"],
    }
    assert cli.main(["add-user", "system:evil", "--state-dir", str(tmp_path)]) == 1
