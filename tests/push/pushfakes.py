"""A local Web Push service: an httpx transport that decrypts every message with the
subscription's private key (RFC 8291, real crypto) and checks the VAPID signature."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import http_ece
import httpx
from py_vapid import Vapid02

from tests.push.conftest import BrowserSub


@dataclass
class PushService:
    subs: dict[str, BrowserSub] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    answer: Callable[[httpx.Request], httpx.Response | None] | None = None
    verify_vapid: bool = True

    def register(self, sub: BrowserSub) -> BrowserSub:
        self.subs[sub.endpoint] = sub
        return sub

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.answer is not None:
            r = self.answer(request)
            if r is not None:
                return r
        sub = self.subs.get(str(request.url))
        if sub is None:
            return httpx.Response(410)
        assert request.headers["content-encoding"] == "aes128gcm"
        assert int(request.headers["ttl"]) > 0
        if self.verify_vapid:
            assert Vapid02.verify(request.headers["authorization"])
        plain = http_ece.decrypt(request.content, private_key=sub.private_key, auth_secret=sub.auth,
                                 version="aes128gcm")
        self.received.append({"endpoint": sub.endpoint, **json.loads(plain)})
        self.headers.append(dict(request.headers))
        return httpx.Response(201)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
