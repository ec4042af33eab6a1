"""Test data and small helpers shared by the bots tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from bots.config import BotConfig, HandoffSettings
from bots.pipeline import AnswerContext, AnswerEvent, AnswerPipeline, Delta, Final, Handoff, Offer
from bots.ports import Passage
from bots.testing import InMemoryRetriever
from bots.values import Turn

CANARY = "PARLEY-CANARY-tenantA-5f2e9b71"
FOREIGN = "PARLEY-CANARY-tenantB-c0ffee42"

PASSAGES = [
    Passage(
        "c1",
        "d-ship",
        "Shipping",
        "https://help.example.com/shipping",
        "Shipping > International",
        "Shipping to Canada costs $11.95. Orders to Canada arrive in 5 to 7 business days. "
        "We ship with UPS and send a tracking link by email.",
        0.0,
    ),
    Passage(
        "c2",
        "d-refund",
        "Refunds",
        "https://help.example.com/refunds",
        "Billing > Refunds",
        "Refunds are issued within 14 days of receiving your return. Start a return from the Orders page.",
        0.0,
    ),
    Passage(
        "c3",
        "d-pass",
        "密码",
        "https://help.example.com/zh/password",
        "账户 > 密码",
        "忘记密码时，请在登录页点击“忘记密码”。我们会向您的邮箱发送重置链接。链接二十四小时内有效。",
        0.0,
    ),
]


def retriever() -> InMemoryRetriever:
    return InMemoryRetriever({"kb1": PASSAGES})


def bot(**kw: Any) -> BotConfig:
    handoff = kw.pop("handoff", HandoffSettings())
    return BotConfig(name="Ada", knowledge_base_id="kb1", persona="the Example Shop assistant", handoff=handoff, **kw)


def ctx(text: str, *, history: Sequence[Turn] = (), **kw: Any) -> AnswerContext:
    b = kw.pop("bot", None) or bot()
    return AnswerContext(bot=b, canary=CANARY, text=text, history=tuple(history), foreign_canaries=(FOREIGN,), **kw)


async def collect(pipeline: AnswerPipeline, c: AnswerContext) -> list[AnswerEvent]:
    return [ev async for ev in pipeline.run(c)]


def terminal(events: Sequence[AnswerEvent]) -> Final | Offer | Handoff:
    assert events, "no events"
    last = events[-1]
    assert isinstance(last, Final | Offer | Handoff), last
    assert all(isinstance(e, Delta) for e in events[:-1])
    return last


def deltas_text(events: Sequence[AnswerEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


def sse_body(tokens: Sequence[str], model: str = "m") -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        payload = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(payload)}\n\n"

    parts = [chunk({"role": "assistant", "content": ""})]
    parts += [chunk({"content": t}) for t in tokens]
    parts.append(chunk({}, "stop"))
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def sse_response(tokens: Sequence[str]) -> httpx.Response:
    return httpx.Response(200, content=sse_body(tokens), headers={"content-type": "text/event-stream"})
