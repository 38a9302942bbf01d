"""restic key files: open one with a password, and seal the repository's master key under a cheaper key.

Why: every restic start opens the repository by deriving a key from the password with scrypt, whose cost
`restic init` calibrates to about half a second (restic `internal/repository/key.go`: `KDFTimeout` 500 ms;
measured 0.55 s here, N=2^15 r=8 p=7). Strongroom starts restic several times per backup and once per
point it opens, so that half second is most of a short call (docs/restic.md). The stretching protects a
password a person chose; a Strongroom repository password is 32 random bytes (`new_repository_password`),
which no key derivation makes stronger or weaker. So Strongroom adds a second key of its own to each local
repository, same password, scrypt at the cost the scrypt paper gives for interactive logins (N=2^14, r=8,
p=1), and points restic at it with `--key-hint`. restic's own calibrated key stays: a restic without the hint,
or a recovery with the password alone, opens the repository as before.

Format (restic doc/design.rst, "Keys, Encryption and MAC"): a key file is JSON with the scrypt parameters, a
base64 salt and `data` = IV (16 bytes) || AES-256-CTR(master key JSON) || MAC (16 bytes). The 64 bytes scrypt
derives are the AES key, then the MAC key's `k` and `r` halves; the MAC is Poly1305-AES over the ciphertext
alone: Poly1305 with the one-time key `r || AES_k(IV)`.

PURE: bytes and text in and out; the files are `Repository`'s business.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

LITE_USERNAME = "strongroom"
LITE_HOSTNAME = "lite-kdf"
"""`username`/`hostname` of Strongroom's own key (informational fields; `restic key list` shows them)."""


@dataclass(frozen=True)
class ScryptParams:
    n: int
    r: int
    p: int


LITE_PARAMS = ScryptParams(n=2**14, r=8, p=1)
MAX_PARAMS = ScryptParams(n=2**20, r=16, p=16)
"""Key files asking for more than this are not tried (a hostile file must not eat the memory)."""


class KeyFileError(ValueError):
    """A key file that is malformed or that this password does not open."""


def _derive(password: str, salt: bytes, params: ScryptParams) -> tuple[bytes, bytes, bytes]:
    derived = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=256 * params.n * params.r + (64 << 20),
        dklen=64,
    )
    return derived[:32], derived[32:48], derived[48:64]


def _mac(mac_k: bytes, mac_r: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    pad = Cipher(algorithms.AES(mac_k), modes.ECB()).encryptor().update(iv)  # noqa: S305 - one block, the spec
    mac = Poly1305(mac_r + pad)
    mac.update(ciphertext)
    return mac.finalize()


def params_of(document: dict[str, Any]) -> ScryptParams:
    if document.get("kdf") != "scrypt":
        raise KeyFileError(f"unknown key derivation {document.get('kdf')!r}")
    try:
        params = ScryptParams(n=int(document["N"]), r=int(document["r"]), p=int(document["p"]))
    except (KeyError, TypeError, ValueError) as error:
        raise KeyFileError("a key file without scrypt parameters") from error
    if not (1 < params.n <= MAX_PARAMS.n and 0 < params.r <= MAX_PARAMS.r and 0 < params.p <= MAX_PARAMS.p):
        raise KeyFileError(f"scrypt parameters out of range: {params}")
    return params


def open_key(document: dict[str, Any], password: str) -> bytes:
    """The master key (restic's JSON of it, as stored) that `document` seals, or KeyFileError."""
    params = params_of(document)
    try:
        salt = base64.b64decode(document["salt"], validate=True)
        data = base64.b64decode(document["data"], validate=True)
    except (KeyError, TypeError, ValueError) as error:
        raise KeyFileError("a key file with a malformed salt or data") from error
    if len(data) < 33:
        raise KeyFileError("a key file whose data is too short")
    encryption, mac_k, mac_r = _derive(password, salt, params)
    iv, ciphertext, tag = data[:16], data[16:-16], data[-16:]
    if not hmac.compare_digest(_mac(mac_k, mac_r, iv, ciphertext), tag):
        raise KeyFileError("the password does not open this key")
    return Cipher(algorithms.AES(encryption), modes.CTR(iv)).decryptor().update(ciphertext)


def seal_key(
    master: bytes, password: str, *, params: ScryptParams = LITE_PARAMS, created: datetime | None = None
) -> bytes:
    """A key file (its bytes; restic names it by their sha256) sealing `master` under `password`."""
    salt = os.urandom(64)
    iv = os.urandom(16)
    encryption, mac_k, mac_r = _derive(password, salt, params)
    ciphertext = Cipher(algorithms.AES(encryption), modes.CTR(iv)).encryptor().update(master)
    document = {
        "created": (created or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "username": LITE_USERNAME,
        "hostname": LITE_HOSTNAME,
        "kdf": "scrypt",
        "N": params.n,
        "r": params.r,
        "p": params.p,
        "salt": base64.b64encode(salt).decode(),
        "data": base64.b64encode(iv + ciphertext + _mac(mac_k, mac_r, iv, ciphertext)).decode(),
    }
    return orjson.dumps(document)


def is_lite(document: dict[str, Any]) -> bool:
    """Whether `document` is a key Strongroom added (its marker, and parameters no dearer than LITE_PARAMS)."""
    if document.get("username") != LITE_USERNAME or document.get("hostname") != LITE_HOSTNAME:
        return False
    try:
        params = params_of(document)
    except KeyFileError:
        return False
    return params.n * params.r * params.p <= LITE_PARAMS.n * LITE_PARAMS.r * LITE_PARAMS.p


def key_id(content: bytes) -> str:
    """The file name restic gives a key file: the sha256 of its bytes."""
    return hashlib.sha256(content).hexdigest()
