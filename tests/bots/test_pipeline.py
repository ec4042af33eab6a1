"""Pipeline behaviour with scripted models: streaming, guard on deltas, deadline, cancellation,
offers, faults, extractive mode."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from bots.circuit import CircuitBreaker
from bots.config import BusinessHours, HandoffSettings, Window
from bots.errors import LLMContextTooLong
from bots.extractive import extractive_answer, stream_pieces
from bots.pipeline import AnswerPipeline, Final, Handoff, Offer
from bots.ports import Passage
from bots.testing import ScriptedChatModel
from bots.text import split_sentences
from bots.values import Turn
from tests.bots.helpers import CANARY, PASSAGES, bot, collect, ctx, deltas_text, retriever, terminal


async def test_scripted_answer_streams_and_cites() -> None:
    model = ScriptedChatModel(replies=["Refunds are issued within 14 days [1]. See also [7]."])
    events = await collect(AnswerPipeline(retriever(), model, CircuitBreaker()), ctx("When are refunds issued?"))
    last = terminal(events)
    assert isinstance(last, Final) and last.mode == "model"
    assert [c.document_id for c in last.citations] == ["d-refund"]
    assert "[7]" not in last.text  # a marker without a passage is dropped
    assert deltas_text(events).startswith("Refunds are issued")


async def test_canary_never_streams_even_partially() -> None:
    model = ScriptedChatModel(replies=[f"Sure. The marker is {CANARY} ok [1]"])
    events = await collect(AnswerPipeline(retriever(), model, CircuitBreaker()), ctx("How much is shipping to Canada?"))
    last = terminal(events)
    assert isinstance(last, Final) and "canary_leak" in last.guard and last.citations == []
    streamed = deltas_text(events)
    assert "PARLEY" not in streamed and "CANARY" not in streamed.upper()


async def test_images_and_html_are_stripped_from_deltas_and_final() -> None:
    reply = 'Costs $11.95 [1] ![x](https://evil.example/a.png) <b>bold</b> <img src="https://evil.example/b">'
    model = ScriptedChatModel(replies=[reply])
    events = await collect(AnswerPipeline(retriever(), model, CircuitBreaker()), ctx("How much is shipping to Canada?"))
    last = terminal(events)
    assert isinstance(last, Final)
    for text in (last.text, deltas_text(events)):
        assert "evil.example" not in text and "<" not in text and "![" not in text
    assert "bold" in last.text


async def test_deadline_hands_off_with_notice() -> None:
    model = ScriptedChatModel(replies=["word " * 200], token_delay_s=0.05)
    start = time.perf_counter()
    events = await collect(
        AnswerPipeline(retriever(), model, CircuitBreaker()),
        ctx("How much is shipping to Canada?", bot=bot(answer_deadline_s=0.3)),
    )
    last = terminal(events)
    assert isinstance(last, Handoff) and last.decision.detail == "llm_timeout" and last.notice
    assert time.perf_counter() - start < 1.0


async def test_cancellation_stops_the_model_and_frees_the_breaker() -> None:
    model = ScriptedChatModel(replies=["word " * 200], token_delay_s=0.01)
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=10)
    pipeline = AnswerPipeline(retriever(), model, breaker)
    got: list[object] = []

    async def consume() -> None:
        async for ev in pipeline.run(ctx("How much is shipping to Canada?")):
            got.append(ev)

    before = len(asyncio.all_tasks())
    task = asyncio.create_task(consume())
    while not got:
        await asyncio.sleep(0.005)
    task.cancel()  # a human joined mid-stream
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0.02)
    assert task.cancelled()
    assert len(asyncio.all_tasks()) == before  # the producer task is gone too
    assert breaker.state == "closed" and breaker.failures == 0
    n = len(got)
    await asyncio.sleep(0.05)
    assert len(got) == n  # nothing after cancellation


async def test_model_cannot_cause_context_too_long_breaker_trip() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    model = ScriptedChatModel(replies=[LLMContextTooLong("too long")])
    last = terminal(await collect(AnswerPipeline(retriever(), model, breaker), ctx("How much is shipping to Canada?")))
    assert isinstance(last, Handoff) and last.decision.detail == "llm_context_too_long"
    assert breaker.state == "closed"


async def test_failure_mid_stream_hands_off() -> None:
    model = ScriptedChatModel(
        replies=["Shipping costs a lot of money [1]"], error=ConnectionResetError("reset"), fail_after_tokens=2
    )
    events = await collect(AnswerPipeline(retriever(), model, CircuitBreaker()), ctx("How much is shipping to Canada?"))
    last = terminal(events)
    assert isinstance(last, Handoff) and last.decision.reason_code == "provider_error"


async def test_empty_answer_is_a_fault() -> None:
    model = ScriptedChatModel(replies=[""])
    last = terminal(await collect(AnswerPipeline(retriever(), model, CircuitBreaker()), ctx("shipping to Canada cost")))
    assert isinstance(last, Handoff) and last.decision.detail == "llm_bad_stream"


async def test_retriever_failure_hands_off() -> None:
    class Broken:
        async def retrieve(self, kb_id: str, query: str, k: int) -> list[Passage]:
            raise RuntimeError("index offline")

    last = terminal(await collect(AnswerPipeline(Broken(), None, CircuitBreaker()), ctx("shipping")))
    assert isinstance(last, Handoff) and last.decision.detail == "retrieval_failed"


async def test_offer_then_accept_then_decline() -> None:
    r = retriever()
    pipeline = AnswerPipeline(r, None, CircuitBreaker())
    last = terminal(await collect(pipeline, ctx("Do you sell sailing boats?")))
    assert isinstance(last, Offer) and "person" in last.text
    last = terminal(await collect(pipeline, ctx("有游艇卖吗？")))
    assert isinstance(last, Offer) and "人工" in last.text
    n = len(r.queries)
    last = terminal(await collect(pipeline, ctx("yes please", offered_human_before=True)))
    assert isinstance(last, Handoff) and last.decision.reason_code == "offer_accepted"
    assert len(r.queries) == n  # decided before retrieval
    last = terminal(await collect(pipeline, ctx("no thanks", offered_human_before=True)))
    assert isinstance(last, Final) and last.decision is not None and last.decision.reason_code == "offer_declined"
    last = terminal(await collect(pipeline, ctx("And sailing yachts?", offered_human_before=True)))
    assert isinstance(last, Handoff) and last.decision.reason_code == "no_evidence_after_offer"


async def test_human_outcome_after_handback_is_in_context() -> None:
    model = ScriptedChatModel(replies=["Noted [1]."])
    history = [Turn("user", "My parcel is lost"), Turn("agent", "I've reshipped order 42 today.", name="Sam")]
    await collect(
        AnswerPipeline(retriever(), model, CircuitBreaker()), ctx("How much is shipping to Canada?", history=history)
    )
    sent = " ".join(str(m.content) for m in model.calls[0])
    assert "[Human agent Sam]: I've reshipped order 42 today." in sent


async def test_offline_handoff_notice() -> None:
    hours = HandoffSettings(business_hours=BusinessHours("Asia/Shanghai", (Window((0, 1, 2, 3, 4), "09:00", "18:00"),)))
    sunday = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
    pipeline = AnswerPipeline(retriever(), None, CircuitBreaker(), now=lambda: sunday)
    last = terminal(await collect(pipeline, ctx("转人工", bot=bot(handoff=hours))))
    assert isinstance(last, Handoff) and not last.decision.humans_available and "工作时间" in last.notice


async def test_extractive_mode_answers_with_citation_and_abstains() -> None:
    pipeline = AnswerPipeline(retriever(), None, CircuitBreaker())
    events = await collect(pipeline, ctx("How much does shipping to Canada cost?"))
    last = terminal(events)
    assert isinstance(last, Final) and last.mode == "extractive"
    assert "$11.95" in last.text and "[1]" in last.text
    assert [c.document_id for c in last.citations] == ["d-ship"]
    assert deltas_text(events) == last.text
    zh = terminal(await collect(pipeline, ctx("忘记密码怎么办？")))
    assert isinstance(zh, Final) and "重置链接" in zh.text and zh.citations[0].document_id == "d-pass"
    none = terminal(await collect(pipeline, ctx("What is the airspeed of a swallow?")))
    assert isinstance(none, Offer)


def test_extractive_helpers() -> None:
    ans = extractive_answer("refund days", [], threshold=0.3)
    assert ans.abstained and "connect you with a person" in ans.text
    assert extractive_answer("退款多久", [], threshold=0.3).text.startswith("我在帮助中心")
    assert split_sentences("第一句。第二句！Third one. Fourth?") == ["第一句。", "第二句！", "Third one.", "Fourth?"]
    text = "Shipping to Canada 需要五到七个工作日 costs $11.95."
    assert "".join(stream_pieces(text)) == text
    assert PASSAGES


async def test_offers_and_cited_answers_carry_quick_replies_that_the_policy_understands() -> None:
    """The buttons under an offer and under an answer send texts the pipeline reads as meant."""
    r = retriever()
    pipeline = AnswerPipeline(r, None, CircuitBreaker())
    offer = terminal(await collect(pipeline, ctx("Do you sell sailing boats?")))
    assert isinstance(offer, Offer) and [c.label for c in offer.choices] == ["Yes, connect me", "No thanks"]
    yes, no = (c.value for c in offer.choices)
    accepted = terminal(await collect(pipeline, ctx(yes, offered_human_before=True)))
    assert isinstance(accepted, Handoff)
    declined = terminal(await collect(pipeline, ctx(no, offered_human_before=True)))
    assert isinstance(declined, Final) and declined.decision is not None
    assert declined.decision.reason_code == "offer_declined" and declined.choices == ()

    answer = terminal(await collect(pipeline, ctx("How much does shipping to Canada cost?")))
    assert isinstance(answer, Final) and answer.citations
    assert [c.label for c in answer.choices] == ["That helped", "I still need help"]
    helped, still = (c.value for c in answer.choices)
    n = len(r.queries)
    thanked = terminal(await collect(pipeline, ctx(helped)))
    assert isinstance(thanked, Final) and thanked.mode == "fixed" and "Glad" in thanked.text
    assert len(r.queries) == n  # nothing looked up for a thank-you
    assert isinstance(terminal(await collect(pipeline, ctx(still))), Handoff)
    zh = terminal(await collect(pipeline, ctx("忘记密码怎么办？")))
    assert isinstance(zh, Final) and [c.label for c in zh.choices] == ["有帮助", "还需要帮助"]
    assert isinstance(terminal(await collect(pipeline, ctx(zh.choices[1].value))), Handoff)
