"""Grounding of a model's answer in the passages it was given.

- :func:`attribute_sentences`: when the model wrote no ``[n]`` markers, each sentence is
  attributed to the passage whose words it shares most, so the answer still cites its sources.
- :func:`ungrounded_claims`: the answer's checkable claims (numbers, prices, dates, proper
  names) that appear in no passage. A small model writes "$1.25" for a passage's "$11.95"
  (FACTS.md); one such claim is enough to replace the answer with a quoted one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bots.ports import Passage
from bots.text import content_tokens, normalize, split_sentences

__all__ = ["attribute_sentences", "claims", "ungrounded_claims"]

# Numbers with their decimals ("11.95", "1,299", "3.5"), after NFKC so full-width digits count.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)"
)
# Capitalised words inside a sentence (not its first word): names of products, places, firms.
_NAME = re.compile(r"(?<=[a-z0-9,;:)] )[A-Z][a-zA-Z0-9&'-]+(?: [A-Z][a-zA-Z0-9&'-]+)*")
_CITE = re.compile(r"\[\d+\]")
# Capitalised words that are no claim ("I", weekdays are facts but rarely invented alone).
_NOT_NAMES = frozenset({"I", "I'm", "I'll", "I've", "I'd", "OK"})


def claims(text: str) -> list[str]:
    """The checkable claims of ``text``: numbers (prices, quantities, dates) and proper names."""
    plain = _CITE.sub("", text)
    out: list[str] = []
    for m in _NUMBER.finditer(normalize(plain)):
        out.append(m.group(0))
    for m in re.finditer(rf"\b{_MONTH}\b", plain.casefold()):
        out.append(m.group(0))
    for m in _NAME.finditer(plain):
        name = m.group(0)
        if name not in _NOT_NAMES and not re.fullmatch(_MONTH, name.casefold()):
            out.append(name)
    return out


def _digits(number: str) -> str:
    # "1,299" and "1299" are the same claim; "11.95" and "1195" are not.
    return number.replace(",", "")


def ungrounded_claims(answer: str, passages: Sequence[Passage]) -> list[str]:
    """The claims of ``answer`` that no passage contains."""
    corpus = normalize(" ".join(p.text for p in passages))
    corpus_numbers = {_digits(n) for n in _NUMBER.findall(corpus)}
    missing: list[str] = []
    for claim in claims(answer):
        if _NUMBER.fullmatch(claim):
            if _digits(claim) not in corpus_numbers:
                missing.append(claim)
        elif normalize(claim) not in corpus:
            missing.append(claim)
    return missing


def attribute_sentences(answer: str, passages: Sequence[Passage], min_overlap: float = 0.5) -> list[int]:
    """For each sentence of ``answer``, the 1-based index of the passage it shares most content
    words with (at least ``min_overlap`` of the sentence's), or 0 when none does."""
    bags = [set(content_tokens(p.text)) for p in passages]
    out = []
    for sentence in split_sentences(_CITE.sub("", answer)):
        toks = set(content_tokens(sentence))
        if not toks:
            continue
        best, best_share = 0, 0.0
        for i, bag in enumerate(bags, start=1):
            share = len(toks & bag) / len(toks)
            if share > best_share:
                best, best_share = i, share
        out.append(best if best_share >= min_overlap else 0)
    return out
