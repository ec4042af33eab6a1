"""The answer pipeline: policy → retrieval → policy → generation (model or extractive) → guard
→ grounding (a model's answer whose claims the passages do not hold falls back to extractive).

``AnswerPipeline.run`` is an async generator of :data:`AnswerEvent`: zero or more ``Delta``
then exactly one terminal event (``Final``, ``Offer`` or ``Handoff``), or nothing if the caller
cancels it (a human joined mid-stream). It never raises for provider trouble: every fault ends
as a ``Handoff`` with a visible notice within ``BotConfig.answer_deadline_s``.

Generation runs in its own task feeding a queue, so the deadline is enforced on our side of the
generator (a timeout scope around ``yield`` would fire in the consumer's task), and cancelling
the generator cancels the model call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from langchain_core.language_models import BaseChatModel

from bots.circuit import CircuitBreaker
from bots.config import BotConfig
from bots.errors import BotError, LLMError, LLMProtocolError, LLMTimeout, RetrievalError
from bots.extractive import extractive_answer, stream_pieces
from bots.grounding import GroundingReport, ground_answer
from bots.guard import StreamGuard, check_output
from bots.handoff import HandoffDecision, HandoffInputs, decide_post_retrieval, decide_pre_retrieval
from bots.handoff_model import TurnScorer, shipped_scorer_if_ready
from bots.llm import translate_error
from bots.ports import Passage, Retriever
from bots.prompt import build_messages, cite_markers
from bots.replies import (
    Choice,
    decline_ack,
    feedback_choices,
    handoff_notice,
    is_thanks,
    offer_choices,
    offer_text,
    thanks_ack,
)
from bots.text import is_chinese
from bots.values import Citation, Turn

__all__ = [
    "AnswerContext",
    "AnswerEvent",
    "AnswerPipeline",
    "Citation",
    "Delta",
    "Final",
    "Handoff",
    "Offer",
    "Turn",
]


@dataclass(frozen=True, slots=True)
class AnswerContext:
    bot: BotConfig
    #: Per-tenant secret placed in the system prompt; seeing it in output means a leak.
    canary: str
    text: str
    history: Sequence[Turn] = ()
    user_attributes: Mapping[str, Any] = field(default_factory=dict)
    offered_human_before: bool = False
    #: Other tenants' canaries/unique strings that must never reach this user.
    foreign_canaries: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Delta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Final:
    text: str
    citations: list[Citation]
    #: The policy decision behind this answer (store it with ``to_record()``).
    decision: HandoffDecision | None = None
    #: Why the guard changed the text (``canary_leak``, ``markdown_image``, ...), if it did.
    guard: tuple[str, ...] = ()
    #: ``model`` or ``extractive`` (also when a model's answer failed grounding).
    mode: str = "model"
    #: The claim check of a model's answer (``reason_code`` says why it fell back, if it did).
    grounding: GroundingReport | None = None
    #: Quick replies under the answer ("That helped" / "I still need help" under a cited one).
    choices: tuple[Choice, ...] = ()


@dataclass(frozen=True, slots=True)
class Offer:
    text: str
    decision: HandoffDecision
    choices: tuple[Choice, ...] = ()  # "Yes, connect me" / "No thanks"


@dataclass(frozen=True, slots=True)
class Handoff:
    decision: HandoffDecision
    notice: str


AnswerEvent = Delta | Final | Offer | Handoff

log = logging.getLogger("parley.bots")
# One thread for the learned layer's embeddings: CPU-bound work gains nothing from more threads
# here, and must not occupy the default executor that other I/O relies on.
_SCORING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handoff-scorer")
#: Pre-retrieval answers the learned layer may still turn into a handoff.
_LEARNABLE = frozenset({"none", "outside_business_hours"})
_log = logging.getLogger("parley.bots.grounding")


def _domains(passages: Sequence[Passage]) -> list[str]:
    out = []
    for p in passages:
        m = re.match(r"https?://([^/:?#]+)", p.source)
        if m:
            out.append(m.group(1))
    return out


class AnswerPipeline:
    def __init__(
        self,
        retriever: Retriever,
        model: BaseChatModel | None,
        breaker: CircuitBreaker,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        scorer: TurnScorer | None = None,
        learned_budget_s: float = 0.5,
        learned_max_pending: int = 4,
    ) -> None:
        """``scorer`` is the learned handoff layer (default: the model shipped in ``bots/data``,
        used once loaded); ``learned_budget_s`` bounds one scoring and ``learned_max_pending`` the
        scorings waiting at once: past either the rules decide alone."""
        self._scorer = scorer
        self._learned_budget_s = learned_budget_s
        self._learned_max_pending = learned_max_pending
        self._scoring_pending = 0
        self._retriever = retriever
        self._model = model
        self._breaker = breaker
        self._clock = clock
        self._now = now

    def start_warming(self) -> None:
        """Start loading the learned layer's model in the background (call it at startup)."""
        if self._scorer is None:
            shipped_scorer_if_ready()

    async def _learned_score(self, text: str, deadline: float) -> float | None:
        scorer = self._scorer or shipped_scorer_if_ready()
        if scorer is None:
            return None  # still loading (``start_warming()`` at startup avoids this): the rules decide alone
        if self._scoring_pending >= self._learned_max_pending:
            # Overloaded: shed the learned layer rather than queue CPU work behind the deadline.
            return None
        self._scoring_pending += 1
        try:
            # The embedding is CPU work (a few ms): off the event loop, on one thread of its own
            # so that it never takes the default executor's workers, and bounded in time.
            budget = min(self._learned_budget_s, max(0.0, deadline - self._clock()))
            loop = asyncio.get_running_loop()
            scores = await asyncio.wait_for(loop.run_in_executor(_SCORING, scorer.score, [text]), timeout=budget)
            return float(scores[0])
        except TimeoutError:
            log.warning("learned handoff scorer took over %.2f s; deciding without it", budget)
            return None
        except Exception:  # a broken model must not cost the user the answer: the rules still apply
            log.exception("learned handoff scorer failed; deciding without it")
            return None
        finally:
            self._scoring_pending -= 1

    def _handoff(self, decision: HandoffDecision, zh: bool) -> Handoff:
        return Handoff(decision, handoff_notice(decision, zh))

    async def run(self, ctx: AnswerContext) -> AsyncIterator[AnswerEvent]:
        zh = is_chinese(ctx.text)
        settings = ctx.bot.handoff
        deadline = self._clock() + ctx.bot.answer_deadline_s
        inputs = HandoffInputs(
            text=ctx.text,
            history=tuple(ctx.history),
            offered_human_before=ctx.offered_human_before,
            user_attributes=dict(ctx.user_attributes),
            now=self._now(),
        )
        if self._model is not None and not self._breaker.allow():
            # The provider is known to be down: do not make the user wait for it.
            yield self._handoff(decide_pre_retrieval(_with_fault(inputs, "circuit_open"), settings), zh)
            return
        probe_taken = self._model is not None
        scoring: asyncio.Future[float | None] | None = None
        try:
            pre = decide_pre_retrieval(inputs, settings)
            if pre.action == "handoff":
                yield self._handoff(pre, zh)
                return
            fixed = _fixed_reply(pre, ctx.text, zh)
            if fixed is not None:
                yield fixed
                return
            if pre.reason_code in _LEARNABLE and settings.learned_threshold <= 1.0:
                # Only what the rules let through is scored, beside retrieval rather than before it.
                scoring = asyncio.ensure_future(self._learned_score(ctx.text, deadline))

            try:
                passages = await asyncio.wait_for(
                    self._retriever.retrieve(ctx.bot.knowledge_base_id, ctx.text, ctx.bot.top_k),
                    timeout=max(0.0, deadline - self._clock()),
                )
            except Exception as exc:  # noqa: BLE001 (the port is foreign code (and may time out): contain it)
                err = RetrievalError(f"{type(exc).__name__}: {exc}"[:200])
                yield self._handoff(decide_pre_retrieval(_with_fault(inputs, err.code), settings), zh)
                return
            learned = await scoring if scoring is not None else None
            if learned is not None:
                inputs = replace(inputs, learned_score=learned)
                pre = decide_pre_retrieval(inputs, settings)
                if pre.action == "handoff":
                    yield self._handoff(pre, zh)
                    return
            best = max((p.score for p in passages), default=0.0)
            post = decide_post_retrieval(pre, best, settings)
            if post.action == "handoff":
                yield self._handoff(post, zh)
                return
            if post.action == "offer_human":
                yield Offer(offer_text(zh), post, offer_choices(zh))
                return
            evidence = [p for p in passages if p.score >= settings.score_threshold]

            if self._model is None:
                async for ev in self._extractive(ctx, evidence, post, zh):
                    yield _with_feedback(ev, zh)
                return

            probe_taken = False  # _generate owns the breaker verdict from here on
            async for ev in self._generate(ctx, evidence, post, zh, deadline):
                yield _with_feedback(ev, zh)
        finally:
            if scoring is not None and not scoring.done():
                scoring.cancel()
            if probe_taken:
                # Ended before reaching the provider (policy, retrieval, cancellation).
                self._breaker.release()

    async def _extractive(
        self,
        ctx: AnswerContext,
        evidence: list[Passage],
        decision: HandoffDecision,
        zh: bool,
        flags: tuple[str, ...] = (),
    ) -> AsyncIterator[AnswerEvent]:
        ans = extractive_answer(ctx.text, evidence, threshold=ctx.bot.handoff.score_threshold)
        verdict = check_output(
            ans.text, canaries=[ctx.canary], foreign_texts=list(ctx.foreign_canaries), allowed_domains=None, zh=zh
        )
        text = verdict.text
        for i, piece in enumerate(stream_pieces(text)):
            yield Delta(i, piece)
        cites = ans.citations if verdict.ok else []
        flags = (*flags, *([verdict.reason] if verdict.reason else []), *verdict.removed)
        yield Final(text, cites, decision, flags, "extractive")

    async def _generate(
        self,
        ctx: AnswerContext,
        evidence: list[Passage],
        decision: HandoffDecision,
        zh: bool,
        deadline: float,
    ) -> AsyncIterator[AnswerEvent]:
        assert self._model is not None
        prompt = build_messages(
            bot_name=ctx.bot.name,
            persona=ctx.bot.persona,
            canary=ctx.canary,
            passages=evidence,
            history=ctx.history,
            user_text=ctx.text,
            zh=zh,
        )
        secrets = [ctx.canary, *ctx.foreign_canaries]
        domains = _domains(evidence)
        sguard = StreamGuard(secrets, allowed_domains=domains, secret_texts=[prompt.system])
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        model = self._model

        async def produce() -> None:
            try:
                async for chunk in model.astream(prompt.messages):
                    # Only text is used: tool calls or other structured output from the model are
                    # ignored, so a model cannot trigger an action by asking for one.
                    content = chunk.content
                    text = (
                        content
                        if isinstance(content, str)
                        else "".join(c if isinstance(c, str) else str(c.get("text", "")) for c in content)
                    )
                    if text:
                        queue.put_nowait(("delta", text))
                queue.put_nowait(("end", None))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 (every failure of the producer, whatever it is, must reach the consumer)
                queue.put_nowait(("error", exc))

        task = asyncio.create_task(produce())
        index = 0
        error: BotError | None = None
        verdict_recorded = False
        try:
            while True:
                kind, payload = await self._next_chunk(queue, deadline)
                if kind == "delta":
                    safe = sguard.feed(payload)
                    if safe:
                        yield Delta(index, safe)
                        index += 1
                    continue
                error = _stream_error(kind, payload, sguard)
                break
            if error is not None:
                verdict_recorded = True
                yield self._fault_handoff(ctx, decision, error, zh)
                return
            self._breaker.record_success()
            verdict_recorded = True
            async for event in self._checked_final(ctx, evidence, decision, zh, prompt.system, sguard, index):
                yield event
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if not verdict_recorded:
                self._breaker.release()

    async def _next_chunk(self, queue: asyncio.Queue[tuple[str, Any]], deadline: float) -> tuple[str, Any]:
        """The producer's next ``(kind, payload)``, or ``("timeout", None)`` past the deadline."""
        remaining = deadline - self._clock()
        if remaining <= 0:
            return "timeout", None
        try:
            return await asyncio.wait_for(queue.get(), timeout=remaining)
        except TimeoutError:
            return "timeout", None

    def _fault_handoff(self, ctx: AnswerContext, decision: HandoffDecision, error: BotError, zh: bool) -> Handoff:
        """A failed model answer: count it against the provider (unless the fault is ours) and hand off."""
        if not isinstance(error, LLMError) or error.provider_fault:
            self._breaker.record_failure()
        else:
            self._breaker.release()
        fault = decide_pre_retrieval(_with_fault(decision.inputs, error.code), ctx.bot.handoff)
        return self._handoff(fault, zh)

    async def _checked_final(
        self,
        ctx: AnswerContext,
        evidence: list[Passage],
        decision: HandoffDecision,
        zh: bool,
        system_prompt: str,
        sguard: StreamGuard,
        index: int,
    ) -> AsyncIterator[AnswerEvent]:
        """The model's whole answer, cited, guarded and grounded: a Final (after the held-back tail
        of the stream), or the quoted extractive answer when grounding fails."""
        domains = _domains(evidence)
        text, cites = cite_markers(sguard.raw, evidence)
        verdict = check_output(
            text,
            canaries=[ctx.canary],
            foreign_texts=list(ctx.foreign_canaries),
            allowed_domains=domains,
            secret_texts=[system_prompt],
            zh=zh,
        )
        flags = tuple(([verdict.reason] if verdict.reason else []) + verdict.removed)
        final_text, report = verdict.text, None
        if not verdict.ok:
            cites = []
        else:
            # A few milliseconds of regex work: off the event loop, so other streams keep going.
            grounded = await asyncio.to_thread(
                ground_answer, verdict.text, evidence, question=ctx.text, allowed_names=(ctx.bot.name,)
            )
            report = grounded.report
            if not report.ok:
                # Deltas already shown cannot be unsent: the stored message (same draft_id)
                # replaces them with the quoted answer.
                yield self._grounded_fallback(ctx, evidence, decision, zh, flags, report)
                return
            final_text, cites = grounded.text, grounded.citations
            if not sguard.stopped and final_text.startswith(sguard.emitted):
                # Flush the held-back tail so the deltas add up to the final text.
                rest = final_text[len(sguard.emitted) :]
                if rest:
                    yield Delta(index, rest)
        yield Final(final_text, cites, decision, flags, "model", report)

    def _grounded_fallback(
        self,
        ctx: AnswerContext,
        evidence: list[Passage],
        decision: HandoffDecision,
        zh: bool,
        flags: tuple[str, ...],
        report: GroundingReport,
    ) -> Final:
        _log.warning(
            "model answer not grounded (%s): falling back to the extractive answer",
            report.reason_code,
            extra={"grounding": report.to_record()},
        )
        ans = extractive_answer(ctx.text, evidence, threshold=ctx.bot.handoff.score_threshold)
        verdict = check_output(
            ans.text, canaries=[ctx.canary], foreign_texts=list(ctx.foreign_canaries), allowed_domains=None, zh=zh
        )
        more = tuple(([verdict.reason] if verdict.reason else []) + verdict.removed)
        cites = ans.citations if verdict.ok else []
        return Final(verdict.text, cites, decision, (*flags, "ungrounded", *more), "extractive", report)


def _stream_error(kind: str, payload: Any, sguard: StreamGuard) -> BotError | None:
    """How a model stream ended: None for a whole answer, else the error to hand off with."""
    if kind == "timeout":
        return LLMTimeout("answer deadline exceeded")
    if kind == "error":
        return translate_error(payload)
    return LLMProtocolError("empty answer") if not sguard.raw.strip() else None


def _with_fault(inputs: HandoffInputs, code: str) -> HandoffInputs:
    return replace(inputs, fault=code)


def _with_feedback(event: AnswerEvent, zh: bool) -> AnswerEvent:
    """An answer from the knowledge base (it cites) asks whether it helped."""
    if isinstance(event, Final) and event.citations:
        return replace(event, choices=feedback_choices(zh))
    return event


def _fixed_reply(pre: HandoffDecision, text: str, zh: bool) -> Final | None:
    """A reply that needs no search: the offer declined, or a thank-you."""
    if pre.reason_code == "offer_declined":
        return Final(decline_ack(zh), [], pre, mode="fixed")
    if is_thanks(text):
        return Final(thanks_ack(zh), [], pre, mode="fixed")
    return None
