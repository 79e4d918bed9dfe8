"""Encryption of credential secrets at rest (`cryptography`'s Fernet, through MultiFernet).

The key comes from `LOOM_SECRET_KEY` (every process of a deployment shares it): a Fernet key
as is, any other string through HKDF-SHA256. Embedded mode without one generates a key file
in the data directory, readable by its owner only. Keys being retired are listed in
`LOOM_PREVIOUS_SECRET_KEYS`: they still decrypt, the current key encrypts, and
`loom secrets rotate` re-encrypts every credential under the current key.

A token holds the credential's id and workspace beside its data, checked after decryption:
a token copied onto another row (or into another workspace) does not decrypt as that row.
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

# cryptography (8 MB, 80 ms) is imported where a key is first used: a process that touches no
# credential never loads it.

KEY_FILE = "secret.key"


class SecretKeyError(Exception):
    """The key is missing, unreadable or too widely readable."""


class CredentialDecryptionError(Exception):
    """A stored secret does not decrypt with the configured keys, or belongs elsewhere."""


def _fernet_key(secret: str) -> bytes:
    """A Fernet key as is; any other secret derived into one."""
    try:
        if len(base64.urlsafe_b64decode(secret.encode())) == 32:
            return secret.encode()
    except (ValueError, TypeError):
        pass
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"loom-credentials", info=b"fernet key"
    ).derive(secret.encode())
    return base64.urlsafe_b64encode(derived)


def embedded_key(data_dir: Path) -> str:
    """The key file of embedded mode, created on first use (mode 0600)."""
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it meanwhile
        else:
            from cryptography.fernet import Fernet

            with os.fdopen(descriptor, "wb") as handle:
                handle.write(Fernet.generate_key())
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretKeyError(
            f"{path} is readable by others (mode {stat.filemode(mode)}); run: chmod 600 {path}"
        )
    return path.read_text().strip()


class SecretBox:
    """Encrypts with the current key; decrypts with it or any previous one. The current key
    may be given as a function, called on first use (embedded mode's key file is created
    only when a credential is stored or read)."""

    def __init__(self, current: str | Callable[[], str], previous: list[str] | None = None) -> None:
        self._key = current
        self._previous = previous or []
        self._keys: tuple[MultiFernet, Fernet] | None = None

    def _ready(self) -> tuple[MultiFernet, Fernet]:
        if self._keys is None:
            from cryptography.fernet import Fernet, MultiFernet

            current = self._key() if callable(self._key) else self._key
            keys = [current, *self._previous]
            self._keys = (
                MultiFernet([Fernet(_fernet_key(key)) for key in keys]),
                Fernet(_fernet_key(current)),
            )
        return self._keys

    @property
    def _fernet(self) -> MultiFernet:
        return self._ready()[0]

    @property
    def _current(self) -> Fernet:
        return self._ready()[1]

    def seal(self, credential_id: str, workspace_id: str, data: dict[str, Any]) -> bytes:
        payload = {"id": credential_id, "workspace": workspace_id, "data": data}
        return self._current.encrypt(orjson.dumps(payload))

    def open(self, token: bytes, credential_id: str, workspace_id: str) -> dict[str, Any]:
        from cryptography.fernet import InvalidToken

        try:
            payload = orjson.loads(self._fernet.decrypt(token))
        except (InvalidToken, orjson.JSONDecodeError) as exc:
            raise CredentialDecryptionError(
                f"credential {credential_id!r} does not decrypt with the configured keys"
            ) from exc
        if payload.get("id") != credential_id or payload.get("workspace") != workspace_id:
            raise CredentialDecryptionError(
                f"credential {credential_id!r}: the stored secret belongs to another credential"
            )
        data: dict[str, Any] = payload["data"]
        return data

    def rotate(self, token: bytes) -> bytes:
        """The same secret, encrypted under the current key."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise CredentialDecryptionError("a credential does not decrypt") from exc
