"""Agent passwords: argon2 hashing off the event loop, and the rules a new password must meet.

argon2 costs 100-250 ms of CPU by design; on the event loop that pause hits every socket of the
process, so hashing and verifying run in worker threads, a bounded number at a time."""

import asyncio
import functools
import threading
from collections.abc import Callable
from importlib import resources
from typing import Protocol, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server.errors import BadInput, Unavailable

__all__ = ["PasswordHashing", "check_password_policy", "common_passwords"]

T = TypeVar("T")


class Hasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, hash: str, password: str) -> bool: ...


class PasswordHashing:
    """Hash and verify in threads, at most ``concurrency`` at once and ``queue_max`` waiting: a
    burst of logins then waits (or is refused) instead of taking every thread and core."""

    def __init__(self, concurrency: int = 2, queue_max: int = 64, hasher: Hasher | None = None) -> None:
        self._hasher: Hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._queue_max = max(0, queue_max)
        self._waiting = 0
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(self._verify, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend what a real verification costs, so an unknown email answers as slowly as a
        known one (login timing must not tell which emails have an account)."""
        await self._run(self._verify_against_dummy, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def warm(self) -> None:
        """Make the dummy hash before the first login, which would otherwise pay for it once."""
        await asyncio.to_thread(self._verify_against_dummy, "")

    def _verify_against_dummy(self, password: str) -> None:
        with self._dummy_lock:
            if self._dummy is None:
                # Hashed with the same parameters as real agents, so it costs the same to check.
                self._dummy = self._hasher.hash("parley-dummy-password-for-unknown-accounts")
        self._verify(self._dummy, password)

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        if self._slots.locked() and self._waiting >= self._queue_max:
            raise Unavailable("too many password checks at once; try again shortly", retry_after_ms=1000)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._slots.release()


@functools.cache
def common_passwords() -> frozenset[str]:
    text = resources.files("server.accounts.data").joinpath("common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def check_password_policy(password: str, *, min_length: int, email: str | None = None,
                          name: str | None = None, field: str = "password") -> None:
    """Refuse passwords that are short, among the commonest ones, or the account's own email or
    name; the error names the field so a form can point at it."""
    if len(password) < min_length:
        raise BadInput(f"{field} must be at least {min_length} characters", field=field)
    folded = password.strip().casefold()
    if folded in common_passwords():
        raise BadInput(f"{field} is one of the most common passwords; choose another", field=field)
    own = set()
    if email:
        own.update({email.casefold(), email.split("@", 1)[0].casefold()})
    if name:
        own.update({name.casefold(), name.replace(" ", "").casefold()})
    if folded in own or folded.replace(" ", "") in own:
        raise BadInput(f"{field} must not be the account's email or name", field=field)
