"""Drafts for human agents (``GET /v1/conversations/{id}/suggestions``): answers to the user's
latest question from the knowledge base, each with its citations. Agents review them, so a
model draft comes first when a model works, followed by extractive drafts per passage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel

from bots.extractive import extractive_answer
from bots.guard import check_output
from bots.ports import Retriever
from bots.prompt import build_messages, cite_markers
from bots.text import is_chinese
from bots.values import Citation, Turn

__all__ = ["Draft", "suggest"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Draft:
    text: str
    citations: list[Citation]


async def suggest(
    retriever: Retriever,
    kb_id: str,
    history: Sequence[Turn],
    model: BaseChatModel | None,
    k: int = 3,
    *,
    canary: str = "",
    threshold: float = 0.0,
    timeout_s: float = 8.0,
) -> list[Draft]:
    question = next((t.text for t in reversed(history) if t.role == "user"), "")
    if not question.strip():
        return []
    passages = [p for p in await retriever.retrieve(kb_id, question, k) if p.score >= threshold]
    if not passages:
        return []
    drafts: list[Draft] = []
    zh = is_chinese(question)
    if model is not None:
        prompt = build_messages(
            bot_name="Copilot",
            persona="drafting a reply for a human support agent",
            canary=canary or "copilot-no-canary",
            passages=passages,
            history=history[:-1],
            user_text=question,
            zh=zh,
        )
        try:
            async with asyncio.timeout(timeout_s):
                result = await model.ainvoke(prompt.messages)
            raw = result.content if isinstance(result.content, str) else ""
            text, cites = cite_markers(raw, passages)
            verdict = check_output(text, canaries=[canary] if canary else [], zh=zh)
            if verdict.ok and verdict.text:
                drafts.append(Draft(verdict.text, cites))
        except Exception as exc:  # noqa: BLE001 (drafts are optional help: fall back to extractive ones)
            _log.info("copilot model draft failed: %s", type(exc).__name__)
    for p in passages:
        if len(drafts) >= k:
            break
        ans = extractive_answer(question, [p], threshold=threshold, max_passages=1)
        if not ans.abstained:
            drafts.append(Draft(ans.text, ans.citations))
    return drafts
