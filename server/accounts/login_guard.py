"""Brakes on password guessing at the agent login: a token bucket per client IP and per account,
and a lockout window once an account has seen too many wrong passwords.

In memory, per process, bounded: the least recently seen keys are forgotten first. An account is
its email as typed (unknown emails count too, so refusals tell nothing about which exist)."""

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from server.core.ratelimit import TokenBucket
from server.core.settings import Settings
from server.errors import RateLimited

__all__ = ["LoginGuard", "LoginLimits", "login_limits"]

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class LoginLimits:
    rate_per_ip: float = 0.2
    burst_per_ip: int = 20
    rate_per_account: float = 0.1
    burst_per_account: int = 10
    lockout_failures: int = 10
    lockout_window_s: float = 900.0
    lockout_s: float = 900.0
    max_keys: int = 100_000


def login_limits(settings: Settings) -> LoginLimits:
    return LoginLimits(
        rate_per_ip=settings.login_rate_per_ip, burst_per_ip=settings.login_burst_per_ip,
        rate_per_account=settings.login_rate_per_account, burst_per_account=settings.login_burst_per_account,
        lockout_failures=settings.login_lockout_failures, lockout_window_s=settings.login_lockout_window_s,
        lockout_s=settings.login_lockout_s, max_keys=settings.login_guard_max_keys)


@dataclass(slots=True)
class _Failures:
    times: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class _Lru(Generic[V]):
    def __init__(self, make: Callable[[], V], max_keys: int) -> None:
        self._make, self._max, self._items = make, max(1, max_keys), OrderedDict[str, V]()

    def get(self, key: str) -> V:
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = self._make()
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return item

    def peek(self, key: str) -> V | None:
        return self._items.get(key)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)


class LoginGuard:
    def __init__(self, limits: LoginLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        self._ips = _Lru(lambda: TokenBucket(limits.rate_per_ip, limits.burst_per_ip, clock), limits.max_keys)
        self._accounts = _Lru(lambda: TokenBucket(limits.rate_per_account, limits.burst_per_account, clock),
                              limits.max_keys)
        self._failures = _Lru(_Failures, limits.max_keys)

    @staticmethod
    def account_key(email: str) -> str:
        # By email alone: keyed with the optional tenant_id too, each value sent would open a
        # fresh budget of guesses for the same agent.
        return email.strip().lower()

    def check(self, ip: str, account: str) -> None:
        """Called before the password is looked at; raises ``RateLimited`` with the wait."""
        now = self.clock()
        fails = self._failures.peek(account)
        if fails is not None and fails.locked_until > now:
            raise RateLimited("too many failed logins for this account; try again later",
                              retry_after_ms=max(1, int((fails.locked_until - now) * 1000)))
        wait = self._ips.get(ip).take()
        if wait:
            raise RateLimited("too many login attempts from this address", retry_after_ms=wait)
        wait = self._accounts.get(account).take()
        if wait:
            raise RateLimited("too many login attempts for this account", retry_after_ms=wait)

    def failed(self, account: str) -> None:
        now, lim = self.clock(), self.limits
        fails = self._failures.get(account)
        fails.times.append(now)
        while fails.times and fails.times[0] <= now - lim.lockout_window_s:
            fails.times.popleft()
        if len(fails.times) >= lim.lockout_failures:
            fails.locked_until = now + lim.lockout_s
            fails.times.clear()

    def succeeded(self, account: str) -> None:
        self._failures.drop(account)
