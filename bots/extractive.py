"""Grounded extractive mode: answers with no model at all.

The answer quotes the sentences of the best passages that answer the question, each cited; when
no passage clears the threshold it abstains and offers a person. The retriever usually chose
those sentences already (``Passage.highlights``: scored by meaning and by the question's words,
navigation text dropped, Markdown rendered); for a passage without them the sentences sharing
most words with the question are taken. A passage in the question's language goes first when
the knowledge base has one among the best; otherwise the answer says first that it quotes the other
language (``OTHER_LANGUAGE_NOTE``). A second page is quoted only when it shares at least
``second_share`` as much with the question as the first. It can only say what the knowledge base says, which
is why it is the default when no endpoint is configured (a tiny local model invents facts:
FACTS.md)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bots.ports import Passage
from bots.replies import abstain_offer
from bots.text import (
    content_tokens,
    is_chinese,
    is_navigation_line,
    plain_markdown,
    split_sentences,
    strip_invisible,
)
from bots.values import Citation

__all__ = ["OTHER_LANGUAGE_NOTE", "ExtractiveAnswer", "extractive_answer", "stream_pieces"]

# Said first when the knowledge base answers only in the other language.
OTHER_LANGUAGE_NOTE = {
    "zh": "帮助中心只有英文资料，以下是英文原文：",
    "en": "The help centre has this in Chinese only:",
}


@dataclass(frozen=True, slots=True)
class ExtractiveAnswer:
    text: str
    citations: list[Citation]
    abstained: bool


def _sentence_score(q: set[str], sentence: str) -> float:
    toks = content_tokens(sentence)
    if not toks:
        return 0.0
    hits = len(q & set(toks))
    # Overlap with the question, lightly favouring short, dense sentences.
    return hits / (len(q) ** 0.5 * (len(toks) ** 0.25)) if q else 0.0


def _in_language(p: Passage, zh: bool) -> bool:
    return is_chinese(p.text) == zh


def extractive_answer(
    question: str,
    passages: Sequence[Passage],
    *,
    threshold: float,
    max_passages: int = 2,
    max_sentences: int = 2,
    language_window: int = 3,
    second_share: float = 0.5,
) -> ExtractiveAnswer:
    zh = is_chinese(question)
    good = [p for p in passages if p.score >= threshold]
    if not good:
        return ExtractiveAnswer(abstain_offer(zh), [], True)
    # When the retriever chose sentences, the passages it chose them from are the answer; the
    # rest were passed on for a model to read.
    good = [p for p in good if p.highlights] or good
    # Answer in the user's language when one of the best passages is written in it.
    window = good[:language_window]
    if any(_in_language(p, zh) for p in window):
        good = [p for p in window if _in_language(p, zh)] + [p for p in good if not _in_language(p, zh)]
    q = set(content_tokens(question))
    parts: list[str] = []
    citations: list[Citation] = []
    documents: set[str] = set()
    first_top = 0.0
    for p in good:
        if len(citations) >= max_passages:
            break
        if p.document_id in documents:
            continue  # a second chunk of the cited page repeats its citation for little
        if p.highlights:
            sentences = list(p.highlights)
            chosen = list(range(len(sentences)))
            top = max((_sentence_score(q, x) for x in sentences), default=0.0)
        else:
            lines = split_sentences(strip_invisible(p.text))
            sentences = [x for x in (plain_markdown(x) for x in lines if not is_navigation_line(x)) if x]
            if not sentences:
                continue
            ranked = sorted(range(len(sentences)), key=lambda i: -_sentence_score(q, sentences[i]))
            chosen = sorted(ranked[:max_sentences])  # keep document order for readability
            top = _sentence_score(q, sentences[ranked[0]])
        if citations and top < second_share * first_top:
            continue  # a second passage that shares little with the question adds noise
        first_top = first_top or top
        documents.add(p.document_id)
        quote = " ".join(sentences[i] for i in chosen)
        citations.append(Citation(p.document_id, p.title, p.source, p.chunk_id))
        k = len(citations)
        if zh:
            parts.append(f"根据《{p.title}》[{k}]：{quote}")
        else:
            parts.append(f'From "{p.title}" [{k}]: {quote}')
    if not citations:
        return ExtractiveAnswer(abstain_offer(zh), [], True)
    if not any(_in_language(p, zh) for p in good if p.chunk_id in {c.chunk_id for c in citations}):
        parts.insert(0, OTHER_LANGUAGE_NOTE["zh" if zh else "en"])
    return ExtractiveAnswer("\n\n".join(parts), citations, False)


_PIECE = re.compile(r"\s*\S+|\s+")
_CJK_CHAR = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def stream_pieces(text: str, cjk_chunk: int = 4) -> list[str]:
    """Split text into word-ish pieces (a word with its leading space; Chinese in short runs)
    that concatenate back to ``text``."""
    out: list[str] = []
    for piece in _PIECE.findall(text):
        if _CJK_CHAR.search(piece) and len(piece) > cjk_chunk:
            out.extend(piece[i : i + cjk_chunk] for i in range(0, len(piece), cjk_chunk))
        else:
            out.append(piece)
    return out
