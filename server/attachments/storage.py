"""The storage port: bytes under an opaque key, written and read as streams. The data dir is the
embedded default; ``server.attachments.s3`` is the S3-compatible adapter."""

import asyncio
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

__all__ = ["CHUNK", "LocalStorage", "Storage", "StoredObjectMissing"]

CHUNK = 64 * 1024
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_.-]{1,80}){0,3}$")


class StoredObjectMissing(LookupError):
    """No object under this key."""


def check_key(key: str) -> str:
    # Keys are made by the service, never by a client; this only guards against a bug escaping the root.
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"bad storage key {key!r}")
    return key


class Storage(ABC):
    """Where attachment bytes live; the database holds what they are."""

    @abstractmethod
    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the stream under ``key`` (replacing it); returns the number of bytes."""

    @abstractmethod
    def get(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; ``StoredObjectMissing`` if there is none."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections."""


class LocalStorage(Storage):
    """Files under a directory of the data dir, written to a temporary file and renamed, so a
    reader never sees half an object."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        path = self._path(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True, mode=0o700)
        fd, tmp = await asyncio.to_thread(tempfile.mkstemp, dir=path.parent, prefix=".part-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    await asyncio.to_thread(f.write, chunk)
            await asyncio.to_thread(os.replace, tmp, path)
        except BaseException:
            await asyncio.to_thread(_unlink, Path(tmp))
            raise
        return size

    async def get(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            f = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise StoredObjectMissing(key) from None
        try:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield chunk
        finally:
            f.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(_unlink, self._path(key))


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
