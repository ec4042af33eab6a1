"""Claim-level grounding of a model's answer, and its citations.

Every price, percentage, duration, date, time, number, model code and proper name the answer
states must be found in the retrieved passages. Numbers and codes must also be found where the
passage talks about the same thing: the passage sentence (with the one before it, its title and
section) shares a content word with the answer sentence, so "Orders to Canada arrive in 14 days"
is not grounded by a refunds passage that says "within 14 days". (When answer and passage are in
different languages only presence is checked.) One unsupported claim fails the whole answer; the
pipeline then falls back to the quoted extractive answer.

The same pass cites: sentences keep the model's ``[n]`` markers (renumbered to the order of the
message's citations), and a sentence without one is attributed to its passage (lexical overlap,
or the passage that holds its claims) and gets a marker.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bots.attribution import MARKER, Attributor, SentenceSpan, marker_numbers, normalize_references, sentence_spans
from bots.claims import Claim, extract_claims, prepare
from bots.ports import Passage
from bots.text import content_tokens, is_chinese, split_sentences
from bots.values import Citation

__all__ = ["GroundedAnswer", "GroundingReport", "Unsupported", "ground_answer"]

_NUMERIC = frozenset({"price", "percent", "duration", "date", "time", "number", "code"})
_ABSTAIN = re.compile(
    r"couldn'?t find|could not find|can'?t find|cannot find|unable to find|don'?t (?:have|know)|do not (?:have|know)"
    r"|not sure|no information|isn'?t (?:mentioned|covered)|not (?:mentioned|covered|in the documents)"
    r"|connect you|get (?:you )?a (?:person|human)|speak (?:to|with) (?:a|an) (?:person|human|agent)"
    r"|找不到|没有找到|未找到|不确定|不知道|没有相关|转人工|人工客服|转接",
    re.IGNORECASE,
)
#: A sentence with fewer content words is small talk ("Happy to help!") and needs no source.
_SUBSTANTIVE_TOKENS = 3


@dataclass(frozen=True, slots=True)
class Unsupported:
    kind: str
    text: str
    sentence: str
    #: ``ungrounded`` (in no passage) or ``contradicted`` (the passages say another value
    #: about the same thing, or this value about something else).
    why: str

    @property
    def code(self) -> str:
        return f"{self.why}_{self.kind}"


@dataclass(frozen=True, slots=True)
class GroundingReport:
    ok: bool
    #: ``grounded``, ``<why>_<kind>`` of the first unsupported claim, or ``unattributed``.
    reason_code: str
    unsupported: tuple[Unsupported, ...] = ()
    claims_checked: int = 0
    #: How the citations were found: ``markers``, ``attributed``, ``mixed`` or ``none``.
    citation_source: str = "none"

    def to_record(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason_code": self.reason_code,
            "claims_checked": self.claims_checked,
            "citation_source": self.citation_source,
            "unsupported": [
                {"kind": u.kind, "text": u.text, "why": u.why, "sentence": u.sentence[:200]} for u in self.unsupported
            ],
        }


@dataclass(frozen=True, slots=True)
class GroundedAnswer:
    text: str
    citations: list[Citation]
    report: GroundingReport


@dataclass(slots=True)
class _PassageSentence:
    claims: list[Claim]
    context: set[str]
    zh: bool


@dataclass(slots=True)
class _PassageFacts:
    sentences: list[_PassageSentence] = field(default_factory=list)
    words: str = ""
    squashed: str = ""


def _context(text: str, claims: Iterable[Claim]) -> set[str]:
    """Content words of ``text`` with its claims (and markers) blanked out, digits dropped."""
    chars = list(text)
    for c in claims:
        chars[c.start : c.end] = " " * (c.end - c.start)
    masked = MARKER.sub(" ", "".join(chars))
    return {t for t in content_tokens(masked) if not t.isdigit()}


def _facts(p: Passage) -> _PassageFacts:
    return _facts_of(p.title, p.heading_path, p.text)


# Popular articles come back answer after answer: read each passage once. Bounded, read-only.
@functools.lru_cache(maxsize=1024)
def _facts_of(title: str, heading_path: str, text: str) -> _PassageFacts:
    facts = _PassageFacts()
    head = prepare(f"{title} {heading_path}")
    head_ctx = {t for t in content_tokens(head) if not t.isdigit()}
    prev: set[str] = set()
    body = prepare(text)
    for sentence in split_sentences(body):
        claims = extract_claims(sentence, lenient=True)
        ctx = _context(sentence, claims)
        facts.sentences.append(_PassageSentence(claims, ctx | prev | head_ctx, is_chinese(sentence)))
        prev = ctx
    everything = f"{head} {body}".casefold()
    facts.words = " " + re.sub(r"[^\w]+", " ", everything) + " "
    facts.squashed = re.sub(r"[\W_]+", "", everything)
    return facts


def _matches(claim: Claim, other: Claim) -> bool:
    if claim.kind == "number":
        return claim.key in other.numbers or (other.kind == "number" and other.key == claim.key)
    if claim.kind == "price":
        if other.kind == "number":
            return other.key == claim.key
        return (
            other.kind == "price"
            and other.key == claim.key
            and (not claim.unit or not other.unit or claim.unit == other.unit)
        )
    if claim.kind == "percent":
        return other.kind in ("percent", "number") and other.key == claim.key
    return other.kind == claim.kind and other.key == claim.key


def _related(ctx: set[str], zh: bool, ps: _PassageSentence) -> bool:
    """Does the passage sentence talk about what the answer sentence talks about?"""
    if zh != ps.zh or not ctx:
        return True  # across languages (or with nothing but the claim) only presence counts
    return bool(ctx & ps.context)


def _name_found(claim: Claim, facts: Sequence[_PassageFacts]) -> bool:
    words = re.sub(r"[^\w]+", " ", claim.key).split()
    if not words:
        return True
    phrase = " " + " ".join(words) + " "
    return any(phrase in f.words or all(f" {w} " in f.words for w in words) for f in facts)


def _check(
    claim: Claim, ctx: set[str], zh: bool, facts: Sequence[_PassageFacts]
) -> tuple[list[int], Unsupported | None]:
    """The passages supporting the claim, or what is wrong with it."""
    if claim.kind == "name":
        found = [i for i, f in enumerate(facts) if _name_found(claim, [f])]
        return found, None if found else Unsupported(claim.kind, claim.text, "", "ungrounded")
    related: list[int] = []
    unrelated: list[int] = []
    rival = False
    for i, f in enumerate(facts):
        for ps in f.sentences:
            near = _related(ctx, zh, ps)
            if any(_matches(claim, o) for o in ps.claims):
                (related if near else unrelated).append(i)
            elif near and ctx and any(o.kind == claim.kind or claim.kind == "number" for o in ps.claims):
                rival = True  # the passage speaks of the same thing with another value
        if claim.kind == "code" and claim.key in f.squashed and i not in related + unrelated:
            related.append(i)
    if related:
        return sorted(set(related)), None
    if unrelated and not rival:
        # Found, worded differently ("costs" / "the fee is"): presence is all that can be told.
        return sorted(set(unrelated)), None
    why = "contradicted" if rival or unrelated else "ungrounded"
    return [], Unsupported(claim.kind, claim.text, "", why)


def _insert_marker(sentence: str, label: str, zh: bool) -> str:
    m = re.search(r"[.!?。！？；;:：]+$", sentence)
    if m:
        return sentence[: m.start()] + ("" if zh else " ") + label + sentence[m.start() :]
    return sentence + ("" if zh else " ") + label


def _renumber(m: re.Match[str], order: list[int], n_passages: int) -> str:
    nums = [int(d) for d in re.findall(r"\d{1,2}", m.group(0))]
    return "".join(f"[{order.index(n - 1) + 1}]" for n in nums if 1 <= n <= n_passages)


def ground_answer(
    text: str,
    passages: Sequence[Passage],
    *,
    question: str = "",
    allowed_names: Iterable[str] = (),
) -> GroundedAnswer:
    """Check ``text`` against ``passages`` and cite it. ``allowed_names`` (the bot's own name)
    and names in the ``question`` need no passage."""
    text = normalize_references(text, len(passages))
    facts = [_facts(p) for p in passages]
    attributor = Attributor(passages)
    allowed = {n.casefold() for n in allowed_names if n}
    allowed |= {c.key for c in extract_claims(prepare(question)) if c.kind == "name"}
    allowed_words = {w for n in allowed for w in re.findall(r"\w+", n)}

    spans = sentence_spans(text)
    order: list[int] = []  # passage indexes in citation order
    per_sentence: list[tuple[SentenceSpan, list[int], bool]] = []
    unsupported: list[Unsupported] = []
    checked = 0
    used_markers = used_attribution = False
    substantive_uncited = False
    abstains = bool(_ABSTAIN.search(text))

    for span in spans:
        prepared = prepare(span.text)
        zh = is_chinese(prepared)
        claims = [
            c
            for c in extract_claims(prepared)
            if not (c.kind == "name" and (c.key in allowed or set(c.key.split()) <= allowed_words))
        ]
        ctx = _context(prepared, claims)
        claim_support: list[int] = []
        for c in claims:
            checked += 1
            found, problem = _check(c, ctx, zh, facts)
            if problem is not None:
                unsupported.append(Unsupported(problem.kind, problem.text, span.text, problem.why))
            claim_support.extend(found)
        cited = [n - 1 for n in marker_numbers(span.text) if 1 <= n <= len(passages)]
        marked = bool(cited)
        if marked:
            used_markers = True
        else:
            best = attributor.best(prepared)
            if best is None and claim_support:
                best = max(set(claim_support), key=claim_support.count)
            if best is not None:
                cited = [best]
                used_attribution = True
            elif len(content_tokens(MARKER.sub(" ", prepared))) >= _SUBSTANTIVE_TOKENS:
                substantive_uncited = True
        for i in cited:
            if i not in order:
                order.append(i)
        per_sentence.append((span, list(dict.fromkeys(cited)), marked))

    # Rebuild the text: markers renumbered to citation order, attributed sentences marked.
    pieces: list[str] = []
    pos = 0
    for span, cited, marked in per_sentence:
        pieces.append(text[pos : span.start])
        # Markers naming no passage are dropped.
        body = MARKER.sub(lambda m: _renumber(m, order, len(passages)), span.text)
        if cited and not marked:
            labels = "".join(f"[{order.index(i) + 1}]" for i in cited)
            body = _insert_marker(body.rstrip(), labels, is_chinese(body))
        pieces.append(body)
        pos = span.end
    pieces.append(text[pos:])
    out = "".join(pieces)

    citations = [
        Citation(passages[i].document_id, passages[i].title, passages[i].source, passages[i].chunk_id) for i in order
    ]
    source = (
        "mixed"
        if used_markers and used_attribution
        else "markers"
        if used_markers
        else "attributed"
        if used_attribution
        else "none"
    )
    if unsupported:
        report = GroundingReport(False, unsupported[0].code, tuple(unsupported), checked, source)
    elif not citations and substantive_uncited and not abstains:
        report = GroundingReport(False, "unattributed", (), checked, source)
    else:
        report = GroundingReport(True, "grounded", (), checked, source)
    return GroundedAnswer(out, citations, report)
