"""Rate limits for every entry point: token buckets under named rules, keyed per IP, per user
and per tenant. One ``Limiter`` takes all the charges of a request at once or none of them (a
refused request uses up nothing); the memory adapter limits one node, the Redis adapter every
node that shares the Redis. Pure arithmetic with an injected clock, besides the Redis call."""

import logging
import math
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.core.settings import Settings, default
from server.errors import RateLimited

__all__ = [
    "Charge",
    "Limiter",
    "Limits",
    "MemoryLimiter",
    "RedisLimiter",
    "Rule",
    "TokenBucket",
    "build_limiter",
    "client_ip",
    "enforce",
    "ip_key",
    "tenant_key",
    "user_key",
]

log = logging.getLogger("parley.ratelimit")


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(default=-1.0)
    stamp: float = 0.0

    def _refill(self) -> None:
        now = self.clock()
        if self.tokens < 0:
            self.tokens, self.stamp = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_ms(self, n: float = 1.0) -> int:
        """0 when ``n`` tokens are there, else the milliseconds until they are; takes nothing."""
        self._refill()
        if self.tokens >= n:
            return 0
        return max(1, math.ceil((n - self.tokens) / self.rate * 1000))

    def take(self, n: float = 1.0) -> int:
        """Take ``n`` tokens; returns 0 on success or the milliseconds to wait."""
        wait = self.wait_ms(n)
        if not wait:
            self.tokens -= n
        return wait


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    rate: float  # tokens per second
    burst: int


@dataclass(frozen=True, slots=True)
class Charge:
    rule: Rule
    key: str
    cost: float = 1.0

    @property
    def bounded_cost(self) -> float:
        # A cost above the burst could never be paid: it waits for a full bucket instead.
        return min(self.cost, float(self.rule.burst))


def user_key(tenant_id: str, role: str, principal_id: str) -> str:
    return f"u:{tenant_id}:{role}:{principal_id}"


def tenant_key(tenant_id: str) -> str:
    return f"t:{tenant_id}"


def ip_key(ip: str) -> str:
    return f"ip:{ip}"


@dataclass(frozen=True, slots=True)
class Limits:
    """The rules, from settings. Frames and REST writes of one user share one bucket, so the
    socket's limit cannot be side-stepped over REST."""

    user_frames: Rule
    tenant_messages: Rule
    user_replay: Rule
    widget_sessions_ip: Rule
    widget_sessions_tenant: Rule

    @classmethod
    def from_settings(cls, s: Settings) -> "Limits":
        return cls(
            user_frames=Rule("user", s.rate_per_user, s.burst_per_user),
            tenant_messages=Rule("tenant", s.rate_per_tenant, s.burst_per_tenant),
            user_replay=Rule("replay", s.rate_replay_per_user, s.burst_replay_per_user),
            widget_sessions_ip=Rule("widget-ip", s.rate_widget_sessions_per_ip, s.burst_widget_sessions_per_ip),
            widget_sessions_tenant=Rule("widget-tenant", s.rate_widget_sessions_per_tenant,
                                        s.burst_widget_sessions_per_tenant),
        )


class Limiter(ABC):
    """Takes every charge or none."""

    @abstractmethod
    async def take(self, *charges: Charge) -> int:
        """0 when all charges were taken; else the milliseconds until they could be."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""


class MemoryLimiter(Limiter):
    """Buckets of one process. The least recently used are dropped beyond ``max_keys``, so a
    flood of new addresses costs bounded memory (a dropped bucket was idle, hence full anyway
    unless the flood is that large)."""

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, charge: Charge) -> TokenBucket:
        key = f"{charge.rule.name}:{charge.key}"
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = TokenBucket(charge.rule.rate, charge.rule.burst, self.clock)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return b

    def take_now(self, *charges: Charge) -> int:
        buckets = [(self.bucket(c), c.bounded_cost) for c in charges]
        wait = max((b.wait_ms(cost) for b, cost in buckets), default=0)
        if wait:
            return wait
        for b, cost in buckets:
            b.take(cost)
        return 0

    async def take(self, *charges: Charge) -> int:
        return self.take_now(*charges)

    async def close(self) -> None:
        self._buckets.clear()


# All charges or none, atomically, on Redis's clock (nodes' clocks need not agree).
# KEYS: the buckets; ARGV: rate, burst, cost for each key.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens, wait = {}, 0
for i = 1, #KEYS do
  local rate, burst, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local v = redis.call('HMGET', KEYS[i], 't', 's')
  local have, stamp = tonumber(v[1]), tonumber(v[2])
  if have == nil or stamp == nil then have, stamp = burst, now end
  have = math.min(burst, have + math.max(0, now - stamp) * rate)
  tokens[i] = have
  if have < cost then wait = math.max(wait, math.ceil((cost - have) / rate * 1000)) end
end
if wait > 0 then return wait end
for i = 1, #KEYS do
  local rate, burst, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  redis.call('HSET', KEYS[i], 't', tostring(tokens[i] - cost), 's', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate * 1000) + 1000)
end
return 0
"""


class RedisLimiter(Limiter):
    """Buckets shared by every node. While Redis cannot be reached, each node limits on its own
    (the memory fallback): a Redis outage must neither open the gates nor close them."""

    def __init__(self, url: str, *, prefix: str = "parley:rl:", fallback: MemoryLimiter | None = None,
                 client: Any = None, retry_after_s: float = default("ratelimit_redis_retry_s"),
                 timeout_s: float = default("ratelimit_redis_timeout_s"),
                 clock: Callable[[], float] = time.monotonic) -> None:
        from redis.asyncio import Redis

        self.redis = client if client is not None else Redis.from_url(url, socket_timeout=timeout_s,
                                                                       socket_connect_timeout=timeout_s)
        self.prefix = prefix
        self.fallback = fallback or MemoryLimiter()
        self._script = self.redis.register_script(_TAKE)
        self._failing = False
        # After a failure Redis is left alone for a while, so a hung Redis delays no frame twice.
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._retry_at = 0.0

    async def take(self, *charges: Charge) -> int:
        if not charges:
            return 0
        if self._failing and self.clock() < self._retry_at:
            return self.fallback.take_now(*charges)
        keys = [f"{self.prefix}{c.rule.name}:{c.key}" for c in charges]
        args: list[float] = []
        for c in charges:
            args += [c.rule.rate, c.rule.burst, c.bounded_cost]
        try:
            wait = int(await self._script(keys=keys, args=args))
        except Exception as exc:  # noqa: BLE001 (whatever Redis raises, this node's buckets take over)
            if not self._failing:
                log.warning("rate limits fall back to this node: Redis failed (%r)", exc)
                self._failing = True
            self._retry_at = self.clock() + self.retry_after_s
            return self.fallback.take_now(*charges)
        if self._failing:
            log.warning("rate limits shared through Redis again")
            self._failing = False
        return wait

    async def close(self) -> None:
        await self.redis.aclose()  # type: ignore[union-attr]


def build_limiter(settings: Settings) -> Limiter:
    memory = MemoryLimiter(max_keys=settings.ratelimit_max_keys)
    if settings.redis_url and settings.ratelimit_backend in ("auto", "redis"):
        return RedisLimiter(settings.redis_url, fallback=memory, retry_after_s=settings.ratelimit_redis_retry_s,
                            timeout_s=settings.ratelimit_redis_timeout_s)
    return memory


async def enforce(limiter: Limiter, *charges: Charge, detail: str = "too many requests; slow down") -> None:
    """Raise ``rate_limited`` (with ``retry_after_ms``) unless every charge is taken."""
    wait = await limiter.take(*charges)
    if wait:
        raise RateLimited(detail, retry_after_ms=wait)


def client_ip(client: tuple[str, int] | None, headers: Mapping[str, str], trusted_hops: int) -> str:
    """The peer's address; behind ``trusted_hops`` proxies, the address the outermost trusted
    proxy saw (``X-Forwarded-For`` entries left of that are the client's to invent)."""
    peer = client[0] if client else "unknown"
    if trusted_hops <= 0:
        return peer
    hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
    if len(hops) >= trusted_hops:
        return hops[-trusted_hops]
    return hops[0] if hops else peer
