"""Secrets at rest: tenant signing secrets and push provider credentials are stored sealed
(AES-256-GCM) with a key from ``PARLEY_SECRET_KEY``, or from ``<data_dir>/secret.key`` (created
0600 on first start) when that is unset. A copy of the database alone then reveals no secret.

Columns typed :class:`Sealed` / :class:`SealedJSON` seal on write and open on read with the box
that the engine's :class:`server.core.db.Database` carries. Values stored in clear by older versions
still read as they are; :func:`reseal_clear_values` seals them at start-up."""

import base64
import hashlib
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Text, select, type_coerce, update
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Sealed",
    "SealedJSON",
    "SecretBox",
    "SecretKeyError",
    "attach",
    "load_or_create_key",
    "private_dir",
    "reseal_clear_values",
    "write_private_file",
]

log = logging.getLogger("parley.secrets")
PREFIX = "enc1:"
KEY_FILE = "secret.key"
_DIALECT_ATTR = "parley_secret_box"


class SecretKeyError(RuntimeError):
    """A sealed value cannot be opened: no key, or not the key it was sealed with."""


class SecretBox:
    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise SecretKeyError("PARLEY_SECRET_KEY must be at least 16 characters")
        # Any string of enough entropy works as the setting; the AES key is derived from it.
        self._key = hashlib.sha256(b"parley secrets at rest v1\0" + secret.encode()).digest()
        self._aead = AESGCM(self._key)
        self.kid = hashlib.sha256(b"kid\0" + self._key).hexdigest()[:8]

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        blob = self._aead.encrypt(nonce, plaintext.encode(), self.kid.encode())
        return f"{PREFIX}{self.kid}:{base64.urlsafe_b64encode(nonce + blob).decode().rstrip('=')}"

    def open(self, value: str) -> str:
        if not is_sealed(value):
            return value
        kid, _, body = value[len(PREFIX):].partition(":")
        if kid != self.kid:
            raise SecretKeyError(f"a secret was sealed with key {kid}, not with this server's key {self.kid}: "
                                 "set PARLEY_SECRET_KEY (or the data dir's secret.key) to the key it was sealed with")
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        try:
            return self._aead.decrypt(raw[:12], raw[12:], kid.encode()).decode()
        except InvalidTag as exc:
            raise SecretKeyError("a sealed secret failed its integrity check") from exc


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def private_dir(path: Path) -> Path:
    """Create the directory readable by the owner only (an existing one is left as it is)."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is filtered by the umask
    return path


def write_private_file(path: Path, text: str) -> None:
    """Write a file that only the owner can read, with no moment where it is readable by others."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def load_or_create_key(secret_key: str | None, data_dir: Path) -> SecretBox:
    if secret_key:
        return SecretBox(secret_key)
    path = data_dir / KEY_FILE
    private_dir(data_dir)
    try:
        # O_EXCL: two nodes starting at once on a shared data dir must not each write a key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        finally:
            os.close(fd)
        log.warning("generated the key for secrets at rest in %s; keep it with the database (or set "
                    "PARLEY_SECRET_KEY on every node)", path)
    text = path.read_text().strip()
    for _ in range(20):  # another node may have created the file and not yet written it
        if text:
            break
        time.sleep(0.05)
        text = path.read_text().strip()
    return SecretBox(text)


def _box(dialect: Dialect) -> "SecretBox | None":
    box: SecretBox | None = getattr(dialect, _DIALECT_ATTR, None)
    return box


def attach(dialect: Dialect, box: SecretBox | None) -> None:
    setattr(dialect, _DIALECT_ATTR, box)


class Sealed(TypeDecorator[str]):
    """A text column stored sealed. Without a box (a bare ``Database(url)``, as some tools and
    tests make) values are written in clear, and sealed ones cannot be read."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        box = _box(dialect)
        if value is None or box is None or is_sealed(value):
            return value
        return box.seal(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None or not is_sealed(value):
            return value
        box = _box(dialect)
        if box is None:
            raise SecretKeyError("a sealed secret was read by a database handle without the secret key")
        return box.open(value)


class SealedJSON(TypeDecorator[Any]):
    """A JSON value stored sealed (as text)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        text = json.dumps(value, separators=(",", ":"))
        box = _box(dialect)
        return text if box is None else box.seal(text)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if is_sealed(value):
            box = _box(dialect)
            if box is None:
                raise SecretKeyError("a sealed secret was read by a database handle without the secret key")
            value = box.open(value)
        return json.loads(value)


async def reseal_clear_values(db: Any) -> int:
    """Seal every value that an older version stored in clear; returns how many were sealed.

    Covers every table registered when it runs: the composition root imports every model module
    (push credentials included) before it calls this."""
    from sqlmodel import SQLModel

    import server.core.models  # noqa: F401

    count = 0
    for table in SQLModel.metadata.sorted_tables:
        cols = [c for c in table.columns if isinstance(c.type, Sealed | SealedJSON)]
        if not cols:
            continue
        pk = list(table.primary_key.columns)
        async with db.write() as s:
            conn = await s.connection()
            raw = (await conn.execute(select(*pk, *(type_coerce(c, Text).label(c.name) for c in cols)))).all()
            for row in raw:
                values: dict[str, Any] = {}
                for c in cols:
                    stored = row._mapping[c.name]
                    if stored is None or is_sealed(stored):
                        continue
                    values[c.name] = json.loads(stored) if isinstance(c.type, SealedJSON) else stored
                if values:
                    where = [k == row._mapping[k.name] for k in pk]
                    await conn.execute(update(table).where(*where).values(values))
                    count += 1
    if count:
        log.warning("sealed %d rows of secrets that were stored in clear", count)
    return count
