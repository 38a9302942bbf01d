from pathlib import Path

import pytest

from appliance import settings
from appliance.errors import ConfigError


def test_file_env_and_override_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "strongroom.toml"
    config.write_text(
        'data_dir = "/from/file"\n[xero]\napi_url = "http://file"\n'
        '[[apps]]\nclient_id = "abc"\n[apps.client_secret]\nfile = "/run/secret"\n'
    )
    monkeypatch.setenv("STRONGROOM_XERO__API_URL", "http://env")
    loaded = settings.load(config)
    assert loaded.data_dir == Path("/from/file")
    assert loaded.xero.api_url == "http://env"
    assert loaded.app().client_id == "abc"
    assert settings.load(config, data_dir=tmp_path).data_dir == tmp_path


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("dat_dir = 1\n")
    with pytest.raises(ConfigError, match="dat_dir"):
        settings.load(config)


def test_secret_ref_reads_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "xero-secret").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert settings.SecretRef(credential="xero-secret").read() == "s3cret"
