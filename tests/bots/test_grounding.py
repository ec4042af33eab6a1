"""With a model configured, every answer cites its sources (markers or attribution) and states
only the numbers, dates and names its passages hold; otherwise it falls back to a quoted answer."""

from __future__ import annotations

import logging

import pytest

from bots.circuit import CircuitBreaker
from bots.grounding import attribute_sentences, claims, ungrounded_claims
from bots.pipeline import AnswerPipeline, Delta, Final
from bots.testing import ScriptedChatModel
from tests.bots.helpers import PASSAGES, collect, ctx, retriever, terminal

QUESTION = "How much is shipping to Canada?"


async def _answer(reply: str) -> tuple[Final, list[Delta]]:
    pipeline = AnswerPipeline(retriever(), ScriptedChatModel(replies=[reply]), CircuitBreaker())
    events = await collect(pipeline, ctx(QUESTION))
    final = terminal(events)
    assert isinstance(final, Final), final
    return final, [e for e in events if isinstance(e, Delta)]


async def test_a_model_that_invents_a_price_is_replaced_by_a_quoted_answer(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="parley.bots"):
        final, _ = await _answer("Shipping to Canada costs $9.99 [1].")
    assert final.mode == "extractive"
    assert "ungrounded_claim" in final.guard
    assert "$11.95" in final.text and "9.99" not in final.text
    assert [c.document_id for c in final.citations][:1] == ["d-ship"]
    assert any("not grounded (9.99)" in r.getMessage() for r in caplog.records)


async def test_a_model_answer_without_markers_cites_the_passages_its_sentences_came_from() -> None:
    final, deltas = await _answer("Shipping to Canada costs $11.95. Orders to Canada arrive in 5 to 7 business days.")
    assert final.mode == "model"
    assert final.text == "".join(d.text for d in deltas)
    assert [c.document_id for c in final.citations] == ["d-ship"]


async def test_a_grounded_answer_with_markers_is_kept_as_the_model_wrote_it() -> None:
    final, _ = await _answer("It costs $11.95 and takes 5 to 7 business days with UPS [1].")
    assert final.mode == "model" and final.guard == ()
    assert [c.document_id for c in final.citations] == ["d-ship"]


def test_claims_are_numbers_months_and_names() -> None:
    assert claims("We ship with FedEx on 3 March for $1,299 [2].") == ["3", "1,299", "march", "FedEx"]
    assert ungrounded_claims("Shipping to Canada costs $11.95 with UPS.", PASSAGES) == []
    assert ungrounded_claims("Refunds take 21 days via DHL.", PASSAGES) == ["21", "DHL"]
    # A claim in full-width digits is the same claim.
    assert ungrounded_claims("运费 １１.９５ 美元", PASSAGES) == []


def test_each_sentence_is_attributed_to_the_passage_it_came_from() -> None:
    text = "Refunds are issued within 14 days of your return. Shipping to Canada costs $11.95. Have a nice day!"
    assert attribute_sentences(text, PASSAGES) == [2, 1, 0]
