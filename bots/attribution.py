"""Which retrieved passage each sentence of a model's answer came from.

A model that writes ``[n]`` markers says so itself; a small one usually writes none, and its
answer then carried no sources at all. Here each sentence is split out with its offsets and, when
it has no marker, matched to the passage that covers most of its content words (idf-weighted over
the retrieved passages, so a word every passage shares counts little; Chinese is compared by
character bigrams, numbers count as words)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bots.ports import Passage
from bots.text import content_tokens

__all__ = ["MIN_COVERAGE", "Attributor", "SentenceSpan", "marker_numbers", "normalize_references", "sentence_spans"]

#: Share of a sentence's (weighted) content words a passage must hold to be its source.
MIN_COVERAGE = 0.34

# Sentence ends: Latin punctuation before a space, Chinese punctuation, line breaks.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？；])|\n+")
MARKER = re.compile(r"\[\s*(?:(?:doc(?:ument)?|source|文档)\s*)?\d{1,2}(?:\s*[,，]\s*\d{1,2})*\s*\]", re.IGNORECASE)
# Other ways a model names a document: "[id=2]", "【2】", "(see document 2)", "according to
# source 1", "文档2" — rewritten to "[n]" (when n names a passage) so the number is read as a
# citation, not as a claim.
_BRACKET_REF = re.compile(r"[\[【]\s*(?:id\s*[=:：]\s*)?(\d{1,2})\s*[\]】]", re.IGNORECASE)
_PROSE_REF = re.compile(
    r"\(\s*(?:see\s+)?(?:the\s+)?(?:doc(?:ument)?|source|passage)\s*(?:id\s*[=:]?\s*)?#?(\d{1,2})\s*\)"
    r"|\b(?:doc(?:ument)?|source|passage)\s*(?:id\s*[=:]?\s*)?#?(\d{1,2})\b(?![.,]\d)"
    r"|[(（]?\s*文档\s*(\d{1,2})\s*[)）]?",
    re.IGNORECASE,
)
_ONLY_MARKERS = re.compile(rf"^(?:\s*{MARKER.pattern}\s*[.。]?)+\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SentenceSpan:
    start: int
    end: int
    text: str


def sentence_spans(text: str) -> list[SentenceSpan]:
    """Sentences with their offsets in ``text``; a marker standing after the full stop
    ("… $11.95. [1]") stays with the sentence it follows."""
    spans: list[SentenceSpan] = []
    pos = 0
    for m in [*_BOUNDARY.finditer(text), None]:
        end = m.start() if m else len(text)
        nxt = m.end() if m else len(text)
        piece = text[pos:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            s, e = pos + lead, pos + len(piece.rstrip())
            if spans and _ONLY_MARKERS.match(text[s:e]) and "\n" not in text[spans[-1].end : s]:
                prev = spans.pop()
                s = prev.start
            spans.append(SentenceSpan(s, e, text[s:e]))
        pos = nxt
    return spans


def normalize_references(text: str, n_passages: int) -> str:
    """``text`` with the other spellings of a document reference as ``[n]`` markers; a number
    that names no passage is left alone (it may be a fact)."""

    def bracket(m: re.Match[str]) -> str:
        n = int(m.group(1))
        return f"[{n}]" if 1 <= n <= n_passages else m.group(0)

    def prose(m: re.Match[str]) -> str:
        n = int(next(g for g in m.groups() if g))
        return f"[{n}]" if 1 <= n <= n_passages else m.group(0)

    return _PROSE_REF.sub(prose, _BRACKET_REF.sub(bracket, text))


def marker_numbers(text: str) -> list[int]:
    """The passage numbers named by ``[n]``-style markers in ``text``, in order."""
    out: list[int] = []
    for m in MARKER.finditer(text):
        out.extend(int(d) for d in re.findall(r"\d{1,2}", m.group(0)))
    return out


class Attributor:
    """Lexical attribution of sentences to one of ``passages``."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        self._tokens = [set(content_tokens(f"{p.title} {p.heading_path} {p.text}")) for p in passages]
        n = len(passages)
        df: dict[str, int] = {}
        for toks in self._tokens:
            for t in toks:
                df[t] = df.get(t, 0) + 1
        # A word in every passage still weighs a little: it does tie the sentence to the topic.
        self._idf = {t: math.log(1 + (n + 1) / c) for t, c in df.items()}
        self._unknown = math.log(1 + (n + 1))

    def coverage(self, sentence: str) -> list[float]:
        """For each passage, the weighted share of the sentence's content words it holds."""
        toks = set(content_tokens(MARKER.sub(" ", sentence)))
        if not toks:
            return [0.0] * len(self._tokens)
        weight = {t: self._idf.get(t, self._unknown) for t in toks}
        total = sum(weight.values())
        return [sum(w for t, w in weight.items() if t in ptoks) / total for ptoks in self._tokens]

    def best(self, sentence: str) -> int | None:
        """Index of the passage the sentence most likely came from, or None."""
        toks = set(content_tokens(MARKER.sub(" ", sentence)))
        if not toks:
            return None
        cov = self.coverage(sentence)
        if not cov:
            return None
        i = max(range(len(cov)), key=lambda k: cov[k])
        shared = len(toks & self._tokens[i])
        if cov[i] >= MIN_COVERAGE and shared >= min(2, len(toks)):
            return i
        return None
