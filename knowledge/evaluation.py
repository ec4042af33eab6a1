"""Measuring retrieval on a golden set, shipped with the product so every install can check
its own knowledge base.

Golden-set format, one JSON object per line::

    {"question": "How much is shipping to Canada?", "expected_document": "international-shipping"}
    {"question": "Do you sell car insurance?", "expected_document": null}
    {"question": "运费多少？", "expected_document": "zh-shipping", "fact": "15 元", "lang": "zh"}

``expected_document`` is a document id, title or source file name (with or without extension);
``null`` means the answer is not in the knowledge base and the right behaviour is to abstain
(return no hits). ``fact`` (optional) is a short text the answer must contain; ``lang``
(optional, else guessed from the question) groups the figures by language.
"""

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from knowledge.errors import ParseFailed
from knowledge.keyword import is_cjk_query
from knowledge.scope import ScopeModel, ScopeSignals

# Any model works to collect signals: the decision is ignored, only the signals are kept.
_SIGNALS_ONLY = ScopeModel((0.0,) * 7, 0.0)

if TYPE_CHECKING:
    from knowledge.retrieval import Hit
    from knowledge.service import KnowledgeService, Retrieval

__all__ = [
    "Answer",
    "Answerer",
    "EvalReport",
    "GoldenItem",
    "calibrate_threshold",
    "collect_signals",
    "evaluate",
    "evaluate_by_language",
    "format_report",
    "format_table",
    "load_directory",
    "load_golden",
    "split_dev_test",
]


@dataclass(frozen=True, slots=True)
class GoldenItem:
    question: str
    expected_document: str | None
    fact: str | None = None
    lang: str = ""

    @property
    def language(self) -> str:
        return self.lang or ("zh" if is_cjk_query(self.question) else "en")


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    cited: list["Hit"]
    """The hits the answer cites; empty when it abstained ("shall I get a person?")."""


Answerer = Callable[[str, "Retrieval"], Answer]


@dataclass(frozen=True, slots=True)
class EvalReport:
    n: int
    n_in_scope: int
    n_out_of_scope: int
    hit_at_1: float
    hit_at_5: float
    mrr: float
    abstention_rate: float
    """Share of out-of-scope questions answered with no hits (higher is better)."""
    false_abstention_rate: float
    """Share of in-scope questions answered with no hits (lower is better)."""
    misses: list[tuple[str, str | None, list[str]]] = field(default_factory=list)
    answer_hit: float | None = None
    """Share of in-scope questions whose answer cites the expected document and contains the
    fact (only when an answerer was given and the golden set has facts)."""
    n_with_fact: int = 0
    answer_misses: list[tuple[str, str, str]] = field(default_factory=list)
    answer_hit_given_document: float | None = None
    """The same share among the questions whose expected document was in the top ``k``: how well
    the answer is composed once retrieval did its part."""
    n_document_found: int = 0


def _names(hit: "Hit") -> tuple[str, ...]:
    """What a golden entry may name a document by: its id, title, source, or source file stem
    (the demo's golden set uses stems, whatever ids the server gave the pages)."""
    source_stem = PurePosixPath(hit.source).stem if hit.source else ""
    return (hit.document_id, hit.title, hit.source, source_stem)


def load_golden(source: Path | Iterable[str]) -> list[GoldenItem]:
    lines = source.read_text(encoding="utf-8").splitlines() if isinstance(source, Path) else source
    items: list[GoldenItem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, expected = row["question"], row.get("expected_document")
            fact, lang = row.get("fact"), row.get("lang") or ""
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ParseFailed(f"golden set line {number} is not a valid entry") from exc
        if not isinstance(question, str) or not (expected is None or isinstance(expected, str)):
            raise ParseFailed(f"golden set line {number}: question must be text, expected_document text or null")
        if not (fact is None or isinstance(fact, str)) or not isinstance(lang, str):
            raise ParseFailed(f"golden set line {number}: fact and lang must be text")
        items.append(GoldenItem(question, expected, fact or None, lang))
    return items


def split_dev_test(items: Sequence[GoldenItem]) -> tuple[list[GoldenItem], list[GoldenItem]]:
    """Alternate lines: even ones to calibrate on, odd ones to report on."""
    return list(items[0::2]), list(items[1::2])


def normalise_fact(text: str) -> str:
    """Case, width and spacing folded, so "Two to three  bars" matches "two to three bars"."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", text).strip()


def evaluate(
    service: "KnowledgeService",
    kb_id: str,
    golden: Sequence[GoldenItem],
    *,
    k: int = 5,
    threshold: float | None = None,
    answerer: Answerer | None = None,
) -> EvalReport:
    """Retrieval figures as ``/search`` shows them (an abstention returns no hits, so it is a
    miss), abstention from the scope decision or the answer, and with ``answerer`` the answer
    figures."""
    in_scope = [g for g in golden if g.expected_document is not None]
    out_scope = [g for g in golden if g.expected_document is None]
    hit1 = hit5 = 0
    reciprocal = 0.0
    abstained = false_abstained = 0
    answered_right = with_fact = 0
    found_right = found_with_fact = 0
    misses: list[tuple[str, str | None, list[str]]] = []
    answer_misses: list[tuple[str, str, str]] = []
    for item in golden:
        found_ = service.retrieve(kb_id, item.question, k, threshold=threshold)
        hits = found_.hits if found_.in_scope else []
        answer = answerer(item.question, found_) if answerer is not None and found_.in_scope else None
        says_no = not found_.in_scope or (answer is not None and not answer.cited)
        found = [h.document_id for h in hits]
        if item.expected_document is None:
            if says_no:
                abstained += 1
            else:
                misses.append((item.question, None, found))
            continue
        if says_no:
            false_abstained += 1
        if answerer is not None and item.fact:
            with_fact += 1
            right_doc = answer is not None and any(item.expected_document in _names(h) for h in answer.cited)
            has_fact = answer is not None and normalise_fact(item.fact) in normalise_fact(answer.text)
            retrieved = any(item.expected_document in _names(h) for h in hits)
            found_with_fact += retrieved
            if right_doc and has_fact:
                answered_right += 1
                found_right += retrieved
            else:
                shown = answer.text if answer is not None else "(abstained)"
                why = "wrong document" if not right_doc else "fact missing"
                answer_misses.append((item.question, f"{why}; expected {item.expected_document}: {item.fact}", shown))
        rank = next(
            (i for i, h in enumerate(hits, start=1) if item.expected_document in _names(h)),
            None,
        )
        if rank is None:
            misses.append((item.question, item.expected_document, found))
            continue
        hit1 += rank == 1
        hit5 += rank <= 5
        reciprocal += 1.0 / rank
    n_in = len(in_scope)
    return EvalReport(
        n=len(golden),
        n_in_scope=n_in,
        n_out_of_scope=len(out_scope),
        hit_at_1=hit1 / n_in if n_in else 0.0,
        hit_at_5=hit5 / n_in if n_in else 0.0,
        mrr=reciprocal / n_in if n_in else 0.0,
        abstention_rate=abstained / len(out_scope) if out_scope else 1.0,
        false_abstention_rate=false_abstained / n_in if n_in else 0.0,
        misses=misses,
        answer_hit=answered_right / with_fact if with_fact else None,
        n_with_fact=with_fact,
        answer_misses=answer_misses,
        answer_hit_given_document=found_right / found_with_fact if found_with_fact else None,
        n_document_found=found_with_fact,
    )


def evaluate_by_language(
    service: "KnowledgeService",
    kb_id: str,
    golden: Sequence[GoldenItem],
    *,
    k: int = 5,
    answerer: Answerer | None = None,
) -> dict[str, EvalReport]:
    """One report per language of the questions, and ``all``."""
    out = {"all": evaluate(service, kb_id, golden, k=k, answerer=answerer)}
    for lang in sorted({g.language for g in golden}):
        out[lang] = evaluate(service, kb_id, [g for g in golden if g.language == lang], k=k, answerer=answerer)
    return out


def format_table(reports: dict[str, EvalReport], targets: dict[str, str] | None = None) -> str:
    """A Markdown table: one row per figure, one column per language (then the target)."""
    targets = targets or {}
    cols = [c for c in reports if c != "all"] + ["all"]
    head = "| figure | " + " | ".join(cols) + (" | target |" if targets else " |")
    rule = "| --- " * (len(cols) + 1 + bool(targets)) + "|"
    rows = [head, rule]

    def row(label: str, key: str, value: Callable[[EvalReport], str]) -> None:
        cells = [value(reports[c]) for c in cols]
        rows.append(f"| {label} | " + " | ".join(cells) + (f" | {targets.get(key, '')} |" if targets else " |"))

    row("questions (in scope / out of scope)", "n", lambda r: f"{r.n_in_scope} / {r.n_out_of_scope}")
    row("retrieval hit@1", "hit1", lambda r: f"{r.hit_at_1:.3f}")
    row("retrieval hit@5", "hit5", lambda r: f"{r.hit_at_5:.3f}")
    row("MRR", "mrr", lambda r: f"{r.mrr:.3f}")
    row("answer hit (right document cited + fact)", "answer",
        lambda r: "-" if r.answer_hit is None else f"{r.answer_hit:.3f}")
    row("answer hit given the right document retrieved", "answer",
        lambda r: "-" if r.answer_hit_given_document is None
        else f"{r.answer_hit_given_document:.3f} ({r.n_document_found})")
    row("out of scope answered \"shall I get a person?\"", "oos",
        lambda r: f"{r.abstention_rate:.3f}" if r.n_out_of_scope else "-")
    row("in scope wrongly abstained", "false", lambda r: f"{r.false_abstention_rate:.3f}")
    return "\n".join(rows)


_THRESHOLDS = tuple(step / 100 for step in range(20, 61, 2))


def calibrate_threshold(
    service: "KnowledgeService",
    kb_id: str,
    dev: Sequence[GoldenItem],
    candidates: Sequence[float] = _THRESHOLDS,
) -> tuple[float, EvalReport]:
    """The threshold that maximises hit@5 + abstention on ``dev``; ties go to the middle of
    the best plateau, so the choice does not sit on the edge of what the dev set saw."""
    scored = [(t, evaluate(service, kb_id, dev, threshold=t)) for t in candidates]
    best = max(r.hit_at_5 + r.abstention_rate for _, r in scored)
    plateau = [(t, r) for t, r in scored if r.hit_at_5 + r.abstention_rate >= best - 1e-9]
    return plateau[len(plateau) // 2]


def format_report(report: EvalReport, *, show_misses: bool = True) -> str:
    lines = [
        f"questions          {report.n} ({report.n_in_scope} in scope, {report.n_out_of_scope} out of scope)",
        f"hit@1              {report.hit_at_1:.3f}",
        f"hit@5              {report.hit_at_5:.3f}",
        f"MRR                {report.mrr:.3f}",
        f"abstention (OOS)   {report.abstention_rate:.3f}",
        f"false abstention   {report.false_abstention_rate:.3f}",
    ]
    if report.answer_hit is not None:
        lines.append(f"answer hit         {report.answer_hit:.3f} ({report.n_with_fact} questions with a fact)")
    if report.answer_hit_given_document is not None:
        lines.append(f"answer hit | doc   {report.answer_hit_given_document:.3f} "
                     f"({report.n_document_found} with the document in the top k)")
    if show_misses and report.misses:
        lines.append("misses:")
        for question, expected, found in report.misses:
            lines.append(f"  - {question!r}: expected {expected or 'no answer'}, got {found or 'nothing'}")
    if show_misses and report.answer_misses:
        lines.append("answer misses:")
        for question, why, text in report.answer_misses:
            lines.append(f"  - {question!r}: {why}; answered {' '.join(text.split())[:200]!r}")
    return "\n".join(lines)


def load_directory(service: "KnowledgeService", kb_id: str, directory: Path) -> int:
    """Ingest every document file of ``directory`` under its file stem (our own evaluation
    sets, so parsed in-process); the number of chunks."""
    from knowledge.loaders import parse_document

    service.create_kb(kb_id, exist_ok=True)
    chunks = 0
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in (".md", ".html", ".htm", ".txt", ".csv", ".json", ".pdf", ".docx"):
            continue
        parsed = parse_document(path.read_bytes(), path.name, None, service.settings)
        chunks += service.ingest(kb_id, path.stem, parsed).chunk_count
    return chunks


def collect_signals(
    service: "KnowledgeService", kb_id: str, golden: Sequence[GoldenItem]
) -> list[tuple["ScopeSignals", bool]]:
    """The scope signals of every question with whether it is in scope: what ``scope.fit`` needs."""
    out: list[tuple[ScopeSignals, bool]] = []
    for item in golden:
        found = service.retrieve(kb_id, item.question, scope=_SIGNALS_ONLY)
        if found.signals is not None:
            out.append((found.signals, item.expected_document is not None))
    return out
