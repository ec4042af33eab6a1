"""The real ChatOpenAI path (built by build_chat_model) against respx, every provider fault of
QUALITY.md 20 times: the user always ends with an answer or a handoff notice within 20 s."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import respx

from bots.circuit import CircuitBreaker
from bots.config import HandoffSettings, LLMConfig
from bots.errors import (
    LLMConnectionError,
    LLMContextTooLong,
    LLMProtocolError,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
)
from bots.llm import build_chat_model, translate_error
from bots.pipeline import AnswerPipeline, Delta, Final, Handoff
from bots.prompt import DOC_CLOSE, DOC_OPEN_PREFIX
from tests.bots.helpers import bot, collect, ctx, retriever, sse_body, sse_response, terminal

URL = "http://llm.test/v1/chat/completions"
TRIALS = 20
NO_LEARNED = HandoffSettings(learned_threshold=2.0)


def make(side_effect: Any, *, max_retries: int = 1, timeout_s: float = 0.5) -> tuple[Any, respx.Route, Any]:
    router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
    route = router.post(URL).mock(side_effect=side_effect)
    client = httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler))
    model = build_chat_model(
        LLMConfig(
            base_url="http://llm.test/v1",
            api_key="sk-test",
            model="parley-test",
            timeout_s=timeout_s,
            max_retries=max_retries,
        ),
        http_client=client,
    )
    return model, route, client


class _ResetMidStream(httpx.AsyncByteStream):
    """Sends the first SSE event, then the connection drops."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield sse_body(["Shipping "]).split(b"\n\n")[1] + b"\n\n"
        raise httpx.ReadError("connection reset by peer")

    async def aclose(self) -> None:
        return None


def _json_error(status: int, message: str, code: str | None = None) -> Callable[[httpx.Request], httpx.Response]:
    def respond(request: httpx.Request) -> httpx.Response:
        # retry-after-ms keeps the SDK's one retry fast in tests
        return httpx.Response(
            status,
            json={"error": {"message": message, "type": "error", "code": code}},
            headers={"retry-after-ms": "5"},
        )

    return respond


async def _hang(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(60)
    return httpx.Response(500)


FAULTS: dict[str, Any] = {
    "timeout": httpx.ReadTimeout("read timed out"),
    "provider_hangs": _hang,
    "429": _json_error(429, "Rate limit reached"),
    "500": _json_error(500, "internal error"),
    "503": _json_error(503, "overloaded"),
    "reset_mid_stream": lambda r: httpx.Response(
        200, stream=_ResetMidStream(), headers={"content-type": "text/event-stream"}
    ),
    "malformed_chunk": lambda r: httpx.Response(
        200, content=b'data: {"choices": [{"delta": {"content": "Hi"\n\n', headers={"content-type": "text/event-stream"}
    ),
    "context_too_long": _json_error(
        400, "This model's maximum context length is 8192 tokens", "context_length_exceeded"
    ),
}


async def test_streaming_answer_in_order_with_delimiters_and_model() -> None:
    model, route, client = make(lambda r: sse_response(["Shipping ", "to Canada ", "costs ", "$11.95 ", "[1]."]))
    pipeline = AnswerPipeline(retriever(), model, CircuitBreaker())
    events = await collect(pipeline, ctx("How much is shipping to Canada?"))
    await client.aclose()
    final = terminal(events)
    assert isinstance(final, Final)
    deltas = [e for e in events if isinstance(e, Delta)]
    assert [d.index for d in deltas] == list(range(len(deltas)))
    assert "".join(d.text for d in deltas) == "Shipping to Canada costs $11.95 [1]."
    assert final.text == "Shipping to Canada costs $11.95 [1]."
    assert [c.document_id for c in final.citations] == ["d-ship"]
    assert route.call_count == 1
    body = json.loads(route.calls.last.request.content)
    assert body["model"] == "parley-test"
    assert body["stream"] is True
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-test"
    last_user = body["messages"][-1]["content"]
    assert f"{DOC_OPEN_PREFIX} id=1" in last_user and DOC_CLOSE in last_user
    assert "Shipping to Canada costs $11.95" in last_user.split(DOC_OPEN_PREFIX, 1)[1].split(DOC_CLOSE)[0]
    assert body["messages"][0]["role"] == "system"


EXPECTED_CODE = {
    "timeout": "llm_timeout",
    "provider_hangs": "llm_timeout",
    "429": "llm_rate_limited",
    "500": "llm_unavailable",
    "503": "llm_unavailable",
    "reset_mid_stream": "llm_connection",
    "malformed_chunk": "llm_bad_stream",
    "context_too_long": "llm_context_too_long",
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_every_fault_ends_in_answer_or_handoff(fault: str) -> None:
    async def trial() -> tuple[Any, float, int]:
        model, route, client = make(FAULTS[fault])
        pipeline = AnswerPipeline(retriever(), model, CircuitBreaker(failure_threshold=1000))
        start = time.perf_counter()
        try:
            # The learned handoff layer is not under test (and its scoring queue, 20 at once on a
            # loaded machine, would eat the deadline): off. The deadline is the pipeline's bound
            # for a hung provider; the other faults come back at once.
            question = ctx("How much is shipping to Canada?", bot=bot(answer_deadline_s=8, handoff=NO_LEARNED))
            events = await collect(pipeline, question)
        finally:
            await client.aclose()
        return terminal(events), time.perf_counter() - start, route.call_count

    results = await asyncio.wait_for(asyncio.gather(*(trial() for _ in range(TRIALS))), timeout=20)
    assert len(results) == TRIALS
    for last, elapsed, calls in results:
        assert elapsed < 20
        assert isinstance(last, Handoff | Final)
        if isinstance(last, Handoff):
            assert last.decision.reason_code == "provider_error"
            assert last.notice  # visible to the user
            assert last.decision.detail == EXPECTED_CODE[fault]
        # respx records a call when its side effect returns; a hung provider never returns.
        assert calls >= (0 if fault == "provider_hangs" else 1)


async def test_translate_error_maps_each_fault() -> None:
    expected = {
        "timeout": LLMTimeout,
        "429": LLMRateLimited,
        "500": LLMUnavailable,
        "503": LLMUnavailable,
        "reset_mid_stream": LLMConnectionError,
        "malformed_chunk": LLMProtocolError,
        "context_too_long": LLMContextTooLong,
    }
    for fault, kind in expected.items():
        model, _route, client = make(FAULTS[fault], max_retries=0)
        with pytest.raises(Exception) as info:
            async for _ in model.astream("hi"):
                pass
        await client.aclose()
        assert isinstance(translate_error(info.value), kind), (fault, info.value)
        assert translate_error(info.value).code == kind.code


async def test_breaker_opens_then_hands_off_without_calling_provider() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=30, clock=lambda: now[0])
    ok = [False]

    def provider(request: httpx.Request) -> httpx.Response:
        if ok[0]:
            return sse_response(["Back ", "online [1]."])
        return _json_error(503, "down")(request)

    model, route, client = make(provider)
    pipeline = AnswerPipeline(retriever(), model, breaker)
    reasons = []
    for _ in range(6):
        last = terminal(await collect(pipeline, ctx("How much is shipping to Canada?")))
        assert isinstance(last, Handoff)
        reasons.append(last.decision.reason_code)
    assert reasons == ["provider_error"] * 3 + ["circuit_open"] * 3
    assert route.call_count == 3 * 2  # one retry each; nothing once open
    start = time.perf_counter()
    terminal(await collect(pipeline, ctx("How much is shipping to Canada?")))
    assert time.perf_counter() - start < 0.05  # at once
    assert route.call_count == 6
    # After the reset period a probe goes through; success closes the breaker.
    now[0] = 31.0
    ok[0] = True
    last = terminal(await collect(pipeline, ctx("How much is shipping to Canada?")))
    assert isinstance(last, Final)
    assert route.call_count == 7
    assert breaker.state == "closed"
    await client.aclose()
