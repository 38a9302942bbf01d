"""The appliance key (age via pyrage): creation, permissions, encryption round trips, masking."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from appliance import logs
from appliance.errors import SecretsError
from appliance.secrets import Keyring, new_repository_password


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    ring = Keyring(tmp_path / "data")
    ring.create()
    return ring


def test_create_writes_a_private_identity_under_a_private_directory(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        ring = Keyring(tmp_path / "data")
        recipient = ring.create()
    finally:
        os.umask(old_umask)
    assert ring.path == tmp_path / "data" / "keys" / "identity.age"
    assert mode(ring.path) == 0o600
    assert mode(ring.key_dir) == 0o700
    text = ring.path.read_text()
    assert recipient.startswith("age1")
    assert f"# public key: {recipient}" in text
    assert sum(line.startswith("AGE-SECRET-KEY-1") for line in text.splitlines()) == 1
    # No temporary file is left next to the key.
    assert [p.name for p in ring.key_dir.iterdir()] == ["identity.age"]


def test_create_refuses_to_overwrite_an_existing_key(keyring: Keyring) -> None:
    before = keyring.path.read_bytes()
    with pytest.raises(SecretsError, match="refusing to overwrite"):
        Keyring(keyring.data_dir).create()
    assert keyring.path.read_bytes() == before


def test_a_key_readable_by_others_is_refused_with_a_chmod_hint(keyring: Keyring) -> None:
    os.chmod(keyring.path, 0o644)
    with pytest.raises(SecretsError) as caught:
        Keyring(keyring.data_dir).load()
    assert caught.value.hint == f"chmod 600 {keyring.path}"
    os.chmod(keyring.path, 0o600)
    Keyring(keyring.data_dir).load()


def test_a_missing_key_points_at_init(tmp_path: Path) -> None:
    with pytest.raises(SecretsError) as caught:
        Keyring(tmp_path).encrypt(b"x")
    assert caught.value.hint is not None
    assert "strongroom init" in caught.value.hint


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    ring = Keyring(tmp_path)
    ring.key_dir.mkdir(mode=0o700)
    fd = os.open(ring.path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"# public key: age1nothing\nAGE-SECRET-KEY-1NOTAKEY\n")
    os.close(fd)
    with pytest.raises(SecretsError, match="not a valid age identity"):
        ring.load()


def test_encrypt_then_decrypt_round_trips_and_hides_the_plaintext(keyring: Keyring) -> None:
    plaintext = b'{"refresh_token": "rt-0123456789abcdef"}'
    ciphertext = keyring.encrypt(plaintext)
    assert ciphertext.startswith(b"age-encryption.org/v1\n")
    assert b"rt-0123456789abcdef" not in ciphertext
    # A fresh keyring on the same directory reads the key from disk.
    assert Keyring(keyring.data_dir).decrypt(ciphertext) == plaintext
    # Two encryptions of the same text differ (fresh file key each time).
    assert keyring.encrypt(plaintext) != ciphertext


def test_another_appliances_key_cannot_decrypt(keyring: Keyring, tmp_path: Path) -> None:
    other = Keyring(tmp_path / "other")
    other.create()
    with pytest.raises(SecretsError, match="cannot decrypt"):
        other.decrypt(keyring.encrypt(b"secret"))


def test_decrypted_passwords_are_masked_in_logs(keyring: Keyring) -> None:
    password = new_repository_password()
    ciphertext = keyring.encrypt_text(password)
    assert keyring.decrypt_text(ciphertext) == password
    line = logs.mask(f"restic said something about {password} in its error")
    assert password not in line
    assert logs.MASK in line


def test_repository_passwords_are_long_random_and_url_safe() -> None:
    passwords = {new_repository_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) == 43  # 32 bytes of entropy, base64url without padding
        assert set(password) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert Keyring.new_repository_password() not in passwords


def test_repr_never_shows_key_material(keyring: Keyring) -> None:
    keyring.load()
    assert "AGE-SECRET-KEY" not in repr(keyring)
