"""A small WebSocket client for tests that speaks Parley's protocol and records what it saw."""

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import websockets
from websockets.asyncio.client import ClientConnection


class WsClient:
    #: Every client not closed yet: tests/conftest.py closes what a test left open, so no socket
    #: outlives its event loop (an unclosed transport is a ResourceWarning, and so an error).
    opened: ClassVar[set["WsClient"]] = set()

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        WsClient.opened.add(self)
        self.seen: list[dict[str, Any]] = []
        self.backlog: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, url: str, token: str | None = None, *, resume: dict[str, int] | None = None,
                      origin: str | None = None, max_size: int | None = 2**22) -> "WsClient":
        headers = {"Origin": origin} if origin else None
        ws = await websockets.connect(url, additional_headers=headers, max_size=max_size, open_timeout=10,
                                      ping_interval=None)
        c = cls(ws)
        if token is not None:
            await c.send({"type": "hello", "token": token, **({"resume": resume} if resume else {})})
            welcome = await c.expect("welcome")
            assert welcome["me"]
        return c

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, dict):
            frame = json.dumps(frame)
        await self.ws.send(frame)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: dict[str, Any] = json.loads(raw)
        self.seen.append(frame)
        return frame

    async def expect(self, ftype: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """The next frame of ``ftype`` (matching ``match``); frames skipped on the way are kept."""
        return await self._next(lambda f: f.get("type") == ftype and all(f.get(k) == v for k, v in match.items()),
                                timeout)

    async def expect_any(self, ref: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame answering ``ref``, whatever its type (an answer or an error)."""
        return await self._next(lambda f: f.get("ref") == ref, timeout)

    async def _next(self, wanted: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        skipped: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                frame = await self.recv(max(0.01, deadline - loop.time()))
                if wanted(frame):
                    return frame
                skipped.append(frame)
        finally:
            self.backlog[:0] = skipped

    async def drain(self, quiet: float = 0.2) -> list[dict[str, Any]]:
        out = list(self.backlog)
        self.backlog.clear()
        while True:
            try:
                out.append(await self.recv(quiet))
            except (TimeoutError, websockets.ConnectionClosed):
                return out

    async def start(self, text: str | None = None) -> str:
        await self.send({"type": "conversation.start", "ref": "start", **({"text": text} if text else {})})
        frame = await self.expect("conversation", ref="start")
        return str(frame["conversation"]["id"])

    async def say(self, conversation_id: str, text: str, client_msg_id: str | None = None) -> dict[str, Any]:
        cmid = client_msg_id or str(uuid.uuid4())
        await self.send({"type": "send", "conversation_id": conversation_id, "client_msg_id": cmid, "text": text})
        return await self.expect("ack", client_msg_id=cmid)

    async def close(self) -> None:
        WsClient.opened.discard(self)
        await self.ws.close()
