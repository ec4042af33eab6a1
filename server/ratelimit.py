"""Token buckets for sends per connection and per user. Pure arithmetic with an injected clock."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(default=-1.0)
    stamp: float = 0.0

    def take(self, n: float = 1.0) -> int:
        """Take ``n`` tokens; returns 0 on success or the milliseconds to wait."""
        now = self.clock()
        if self.tokens < 0:
            self.tokens, self.stamp = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return 0
        return max(1, int((n - self.tokens) / self.rate * 1000))
