"""restic key files sealed and opened in Python (`appliance.vault.keys`); real restic accepting them is in
tests/integration/test_vault_restic.py."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from appliance.vault import keys

MASTER = b'{"mac":{"k":"AAAAAAAAAAAAAAAAAAAAAA==","r":"AAAAAAAAAAAAAAAAAAAAAA=="},"encrypt":"' + b"A" * 44 + b'"}'
CHEAP = keys.ScryptParams(n=2**4, r=1, p=1)  # the maths is the same at any cost


def test_a_sealed_key_opens_with_its_password_only() -> None:
    document = orjson.loads(keys.seal_key(MASTER, "pw", params=CHEAP))
    assert keys.open_key(document, "pw") == MASTER
    with pytest.raises(keys.KeyFileError, match="does not open"):
        keys.open_key(document, "other")


def test_each_seal_has_its_own_salt_and_iv_so_its_own_id() -> None:
    first, second = keys.seal_key(MASTER, "pw", params=CHEAP), keys.seal_key(MASTER, "pw", params=CHEAP)
    assert keys.key_id(first) != keys.key_id(second)
    assert keys.key_id(first) == hashlib.sha256(first).hexdigest()


def test_a_changed_byte_of_the_ciphertext_is_refused_by_the_mac() -> None:
    document = orjson.loads(keys.seal_key(MASTER, "pw", params=CHEAP))
    data = bytearray(base64.b64decode(document["data"]))
    data[20] ^= 1
    document["data"] = base64.b64encode(bytes(data)).decode()
    with pytest.raises(keys.KeyFileError):
        keys.open_key(document, "pw")


@pytest.mark.parametrize(
    "change",
    [
        {"kdf": "argon2"},
        {"N": 2**30},
        {"p": 0},
        {"salt": "not base64!"},
        {"data": base64.b64encode(b"short").decode()},
    ],
)
def test_malformed_or_hostile_key_files_are_refused_before_any_work(change: dict[str, object]) -> None:
    document = {**orjson.loads(keys.seal_key(MASTER, "pw", params=CHEAP)), **change}
    with pytest.raises(keys.KeyFileError):
        keys.open_key(document, "pw")


def test_only_strongroom_s_cheap_keys_count_as_lite() -> None:
    lite = orjson.loads(keys.seal_key(MASTER, "pw"))
    assert keys.is_lite(lite)
    assert (lite["N"], lite["p"]) == (2**14, 1)
    assert not keys.is_lite({**lite, "username": "root"})
    assert not keys.is_lite({**lite, "N": 2**15, "p": 7})  # restic's calibrated cost is never taken for ours
