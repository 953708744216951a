"""Static token users: users.json, live reload, and the add-user command."""

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
            ["add-user", "alice", "--group", "ops", "--state-dir", str(tmp_path), "--port", "1234"]
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
