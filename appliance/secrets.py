"""Secrets at rest: the appliance's age key and the encryption of tokens and repository passwords.

This module owns `<data_dir>/keys/identity.age`, an age X25519 identity (https://age-encryption.org/v1)
generated once by `strongroom init`, and the two operations every other module uses to keep secrets off
the disk in clear: `Keyring.encrypt` and `Keyring.decrypt` (pyrage, the Rust `age` crate).

It must not decide where ciphertext is stored (that is `appliance.store`), must never log a key or a
plaintext, and never overwrites an existing key: losing the key loses every token and every repository
password encrypted to it, so a second `create()` is an error, not a reset.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import stat
from pathlib import Path

import pyrage
from pyrage import x25519

from appliance import logs
from appliance.errors import SecretsError
from appliance.files import fsync_dir

log = logging.getLogger(__name__)

KEY_DIR_NAME = "keys"
KEY_FILE_NAME = "identity.age"
_SECRET_KEY_PREFIX = "AGE-SECRET-KEY-1"


def new_repository_password() -> str:
    """A fresh restic repository password: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


class Keyring:
    """The appliance's age identity under `<data_dir>/keys`.

    The identity is read lazily on the first `encrypt`/`decrypt` (or by `load()`), so opening the
    state database does not need the key until a secret is actually touched.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._identity: x25519.Identity | None = None

    @property
    def key_dir(self) -> Path:
        return self.data_dir / KEY_DIR_NAME

    @property
    def path(self) -> Path:
        """The identity file (age's standard identity file format)."""
        return self.key_dir / KEY_FILE_NAME

    def exists(self) -> bool:
        return self.path.exists()

    # --- lifecycle -------------------------------------------------------------------------

    def create(self) -> str:
        """Generate the identity and write it (dir 0700, file 0600). Returns the public recipient.

        The file is written to a temporary name opened with O_EXCL, fsynced, then hard-linked into
        place: `link` fails if the target exists, so two concurrent `init`s can never replace each
        other's key (a `rename` would silently overwrite).
        """
        if self.path.exists():
            raise SecretsError(
                f"a key already exists at {self.path}; refusing to overwrite it",
                hint="the key decrypts every stored token and repository password: keep it, or move it away by hand",
            )
        self._ensure_key_dir()
        identity = x25519.Identity.generate()
        recipient = str(identity.to_public())
        created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        content = f"# created: {created}\n# public key: {recipient}\n{identity}\n".encode()
        temporary = self.key_dir / f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, content)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temporary, self.path)
            except FileExistsError:
                raise SecretsError(
                    f"a key appeared at {self.path} while creating one; refusing to overwrite it"
                ) from None
            fsync_dir(self.key_dir)
        except OSError as error:
            raise SecretsError(f"cannot write the key to {self.path}: {error.strerror}") from error
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        self._identity = identity
        log.info("created the appliance key %s (recipient %s)", self.path, recipient)
        return recipient

    def load(self) -> None:
        """Read the identity, refusing a file that group or others could read."""
        if self._identity is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise SecretsError(
                f"no key at {self.path}", hint="run `strongroom init` to create one, or restore it from a recovery kit"
            ) from None
        except OSError as error:
            raise SecretsError(f"cannot open the key {self.path}: {error.strerror}") from error
        try:
            info = os.fstat(fd)
            if info.st_mode & 0o077:
                raise SecretsError(
                    f"the key {self.path} is readable by other users (mode {stat.S_IMODE(info.st_mode):04o})",
                    hint=f"chmod 600 {self.path}",
                )
            with os.fdopen(fd, "rb", closefd=False) as handle:
                text = handle.read().decode("utf-8", "replace")
        finally:
            os.close(fd)
        lines = [line.strip() for line in text.splitlines() if line.strip().startswith(_SECRET_KEY_PREFIX)]
        if len(lines) != 1:
            raise SecretsError(f"the key file {self.path} does not hold exactly one age X25519 identity")
        try:
            self._identity = x25519.Identity.from_str(lines[0])
        except pyrage.IdentityError as error:
            raise SecretsError(f"the key file {self.path} is not a valid age identity") from error

    @property
    def recipient(self) -> str:
        """The public half (`age1...`), safe to show and to encrypt recovery kits to."""
        return str(self._loaded().to_public())

    # --- use -------------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes) -> bytes:
        """Encrypt to the appliance's own recipient (binary age format)."""
        try:
            return pyrage.encrypt(plaintext, [self._loaded().to_public()])
        except pyrage.EncryptError as error:
            raise SecretsError(f"encryption failed: {error}") from error

    def decrypt(self, ciphertext: bytes, *, register: bool = True) -> bytes:
        """Decrypt with the appliance's identity.

        With `register` (the default) the plaintext is registered with `logs.register_secret` so it can
        never reach a log line. Callers that decrypt a structure (a JSON token set) pass `register=False`
        and register the secret fields themselves, which is what masking can actually match.
        """
        try:
            plaintext = pyrage.decrypt(ciphertext, [self._loaded()])
        except pyrage.DecryptError as error:
            raise SecretsError(
                "cannot decrypt a stored secret with this appliance's key",
                hint=f"was the state database copied without its key ({self.path})?",
            ) from error
        if register:
            logs.register_secret(plaintext.decode("utf-8", "replace"))
        return plaintext

    def encrypt_text(self, plaintext: str) -> bytes:
        return self.encrypt(plaintext.encode("utf-8"))

    def decrypt_text(self, ciphertext: bytes) -> str:
        """Decrypt a single secret value (a password) and register it for masking."""
        return self.decrypt(ciphertext).decode("utf-8")

    @staticmethod
    def new_repository_password() -> str:
        return new_repository_password()

    # --- internals -------------------------------------------------------------------------

    def _loaded(self) -> x25519.Identity:
        if self._identity is None:
            self.load()
        assert self._identity is not None
        return self._identity

    def _ensure_key_dir(self) -> None:
        try:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.key_dir.mkdir(mode=0o700, exist_ok=True)
            # mkdir's mode is filtered by the umask, and the directory may predate us: set it explicitly.
            os.chmod(self.key_dir, 0o700)
        except OSError as error:
            raise SecretsError(f"cannot create the key directory {self.key_dir}: {error.strerror}") from error

    def __repr__(self) -> str:  # never show key material
        return f"Keyring({str(self.path)!r})"
