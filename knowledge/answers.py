"""Choosing the sentences of retrieved chunks that answer a question.

Chunks come from exported help pages: they carry breadcrumbs ("Home / Help / Shipping"),
footers ("Was this article helpful?"), Markdown emphasis and tables. A quote is read by a
customer, so those are dropped or rendered as text first, then every sentence is scored against
the question by meaning (the embedder) and by the question's words it contains (the keyword
tokens), and the best ones are returned in document order, with a neighbour when a sentence
cannot stand alone ("It takes 5 days." after "Refunds go back to your card.").
"""

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from knowledge.embeddings import Embedder
from knowledge.keyword import tokenize

__all__ = ["Highlight", "highlight", "is_navigation", "plain_text", "split_sentences"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9£$€¥])|(?<=[。！？；])|\n+")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1")
_MD_CODE = re.compile(r"`([^`]+)`")
_MD_LIST = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+")
_MD_HEADING = re.compile(r"^\s*#{1,6}\s+")
_MD_QUOTE = re.compile(r"^\s*>\s?")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_CRUMB_SEPARATORS = re.compile(r"\s+(?:/|>|»|›|\||·|•|→)\s+")
_FOOTER = re.compile(
    r"(©|\(c\)\s*\d{4}|all rights reserved|was this (article|page) helpful|back to top|skip to (main )?content|"
    r"cookie (settings|preferences|policy)|privacy policy\s*[|·•]|terms (of (use|service)|and conditions)\s*[|·•]|"
    r"share this (article|page)|related articles|last updated\s*:|版权所有|返回顶部|这篇文章有帮助吗|本文是否有帮助|"
    r"相关文章|最后更新)",
    re.IGNORECASE,
)
_CRUMB_START = re.compile(r"^(home|help( cent(er|re))?|support|首页|帮助中心|帮助)\b", re.IGNORECASE)
# Sentences that lean on the one before them ("It", "This", "这") or announce the next (":").
_LEANS_BACK = re.compile(
    r"^(it|this|that|these|those|they|then|also|otherwise|if so|in that case|这|此|它|该|如果是这样)\b", re.IGNORECASE
)


def plain_text(line: str) -> str:
    """One line of Markdown or stray HTML as the text a reader sees."""
    line = _MD_IMAGE.sub("", line)
    line = _MD_LINK.sub(r"\1", line)
    line = _HTML_TAG.sub("", line)
    line = _MD_HEADING.sub("", line)
    line = _MD_QUOTE.sub("", line)
    line = _MD_LIST.sub("", line)
    line = _MD_CODE.sub(r"\1", line)
    for _ in range(2):  # nested emphasis: ***bold italic***
        line = _MD_EMPHASIS.sub(r"\2", line)
    if line.count("|") >= 2 or line.lstrip().startswith("|"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        line = ": ".join(c for c in cells[:1] if c) + (" — " if len(cells) > 1 and cells[0] else "") + ", ".join(
            c for c in cells[1:] if c
        )
    return re.sub(r"\s+", " ", line).strip()


def is_navigation(line: str) -> bool:
    """A breadcrumb, menu or footer line: words a page carries around its content."""
    text = line.strip()
    if not text:
        return True
    if _FOOTER.search(text) and len(text) < 160:
        return True
    parts = _CRUMB_SEPARATORS.split(text)
    if len(parts) >= 3 and all(len(p) <= 40 for p in parts) and not re.search(r"[.!?。！？]$", text):
        return True
    return bool(len(parts) == 2 and _CRUMB_START.match(text) and len(text) < 60)


def split_sentences(text: str) -> list[str]:
    """Readable sentences of a chunk: Markdown rendered, navigation lines dropped."""
    out: list[str] = []
    for raw_line in text.splitlines():
        if _TABLE_RULE.match(raw_line):
            continue
        line = plain_text(raw_line)
        if not line or is_navigation(line):
            continue
        for piece in _SENTENCE_END.split(line):
            piece = piece.strip()
            if piece and not is_navigation(piece) and re.search(r"\w", piece):
                out.append(piece)
    return out


@dataclass(frozen=True, slots=True)
class Highlight:
    sentences: tuple[str, ...]
    """The chosen sentences in document order, as plain text."""
    score: float
    """How well the best of them answers the question (cosine blended with word coverage)."""


def _content(text: str) -> set[str]:
    return set(tokenize(text))


def _coverage(question: set[str], sentence: set[str]) -> float:
    return len(question & sentence) / len(question) if question else 0.0


def _stands_alone(sentence: str) -> bool:
    cjk = bool(_CJK.search(sentence))
    short = len(sentence) < (12 if cjk else 35)
    return not (short or _LEANS_BACK.match(unicodedata.normalize("NFKC", sentence)))


def highlight(
    question: str,
    question_vector: Sequence[float],
    texts: Sequence[str],
    embedder: Embedder,
    *,
    max_sentences: int = 2,
    max_total: int = 40,
    semantic_weight: float = 0.6,
) -> list[Highlight]:
    """For each chunk text, the sentences that answer ``question`` best.

    At most ``max_total`` sentences are embedded per call, so a long chunk cannot make an
    answer slow; the rest are scored by their words only.
    """
    per_text = [split_sentences(t) for t in texts]
    flat = [s for sentences in per_text for s in sentences]
    q_tokens = _content(question)
    semantic = np.zeros(len(flat), dtype=np.float32)
    if flat:
        budget = flat[:max_total]
        vectors = np.asarray(embedder.embed(budget), dtype=np.float32)
        semantic[: len(budget)] = vectors @ np.asarray(question_vector, dtype=np.float32)
    results: list[Highlight] = []
    offset = 0
    for sentences in per_text:
        n = len(sentences)
        if n == 0:
            results.append(Highlight((), 0.0))
            continue
        scores = [
            semantic_weight * float(semantic[offset + i])
            + (1 - semantic_weight) * _coverage(q_tokens, _content(s))
            for i, s in enumerate(sentences)
        ]
        offset += n
        ranked = sorted(range(n), key=lambda i: -scores[i])
        chosen = {ranked[0]}
        best = ranked[0]
        if not _stands_alone(sentences[best]) and best > 0:
            chosen.add(best - 1)
        if sentences[best].rstrip().endswith((":", "：")) and best + 1 < n:
            chosen.add(best + 1)
        for i in ranked[1:]:
            if len(chosen) >= max_sentences:
                break
            # A second sentence only when it also answers, not merely sits in the same chunk.
            if scores[i] >= 0.8 * scores[best]:
                chosen.add(i)
        results.append(Highlight(tuple(sentences[i] for i in sorted(chosen)), scores[best]))
    return results
