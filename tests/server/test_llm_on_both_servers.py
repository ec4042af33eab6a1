"""The AI agent calling a real OpenAI-compatible endpoint (a local SSE server on loopback) from
inside the running server, on socketify and on uvicorn. socketify's own task class broke anyio,
and with it httpx and the OpenAI client; this proves the bot streams on both."""

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.live import LiveServer, free_port
from tests.support.ws import WsClient

# Grounded in the descaling page (the answer is claim-checked against the retrieved passages).
REPLY = ["Limescale from tap water ", "narrows the pipes and ", "makes coffee taste bitter [1]."]


class FakeOpenAI:
    """Just enough of ``POST /v1/chat/completions`` with ``stream: true``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[dict[str, object]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length")), 0)
        self.requests.append(json.loads(await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        for piece in REPLY:
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            writer.write(f"data: {json.dumps(chunk)}\n\n".encode())
        writer.write(b"data: [DONE]\n\n")
        await writer.drain()
        writer.close()

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["socketify", "uvicorn"])
async def test_the_bot_streams_a_model_answer(kind: str, fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    srv = LiveServer(kind, free_port(), tmp_path / kind, {
        "PARLEY_DEMO_KNOWLEDGE": "true", "PARLEY_LLM_BASE_URL": f"http://127.0.0.1:{fake_llm.port}/v1",
        "PARLEY_LLM_API_KEY": "test-key", "PARLEY_LLM_MODEL": "local-test"}).start(timeout=120)
    try:
        user = await WsClient.connect(srv.ws_url, srv.token("llm-user"))
        cid = await user.start("How do I descale my coffee machine?")
        first = await user.expect("message.delta", timeout=30)
        assert first["conversation_id"] == cid
        answer = await user.expect("message", timeout=30)
        while answer["message"]["sender"]["kind"] != "bot":
            answer = await user.expect("message", timeout=30)
        assert answer["message"]["text"] == "".join(REPLY)
        assert answer["message"]["citations"], "the [1] marker cites the first retrieved passage"
        sent = fake_llm.requests[-1]
        assert sent["model"] == "local-test"
        assert "untrusted" in json.dumps(sent["messages"]).lower()
        await user.close()
    finally:
        srv.stop()
