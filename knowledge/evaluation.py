"""Measuring retrieval on a golden set, shipped with the product so every install can check
its own knowledge base.

Golden-set format, one JSON object per line::

    {"question": "How much is shipping to Canada?", "expected_document": "international-shipping"}
    {"question": "Do you sell car insurance?", "expected_document": null}

``expected_document`` is a document id, title or source file name (with or without extension);
``null`` means the answer is not in the knowledge base and the right behaviour is to abstain
(return no hits).
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from knowledge.errors import ParseFailed

if TYPE_CHECKING:
    from knowledge.retrieval import Hit
    from knowledge.service import KnowledgeService

__all__ = [
    "EvalReport",
    "GoldenItem",
    "calibrate_threshold",
    "evaluate",
    "format_report",
    "load_golden",
    "split_dev_test",
]


@dataclass(frozen=True, slots=True)
class GoldenItem:
    question: str
    expected_document: str | None


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
        except (ValueError, KeyError, TypeError) as exc:
            raise ParseFailed(f"golden set line {number} is not a valid entry") from exc
        if not isinstance(question, str) or not (expected is None or isinstance(expected, str)):
            raise ParseFailed(f"golden set line {number}: question must be text, expected_document text or null")
        items.append(GoldenItem(question, expected))
    return items


def split_dev_test(items: Sequence[GoldenItem]) -> tuple[list[GoldenItem], list[GoldenItem]]:
    """Alternate lines: even ones to calibrate on, odd ones to report on."""
    return list(items[0::2]), list(items[1::2])


def evaluate(
    service: "KnowledgeService",
    kb_id: str,
    golden: Sequence[GoldenItem],
    *,
    k: int = 5,
    threshold: float | None = None,
) -> EvalReport:
    in_scope = [g for g in golden if g.expected_document is not None]
    out_scope = [g for g in golden if g.expected_document is None]
    hit1 = hit5 = 0
    reciprocal = 0.0
    abstained = false_abstained = 0
    misses: list[tuple[str, str | None, list[str]]] = []
    for item in golden:
        hits = service.search(kb_id, item.question, k, threshold=threshold)
        found = [h.document_id for h in hits]
        if item.expected_document is None:
            if not hits:
                abstained += 1
            else:
                misses.append((item.question, None, found))
            continue
        if not hits:
            false_abstained += 1
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
    )


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
    if show_misses and report.misses:
        lines.append("misses:")
        for question, expected, found in report.misses:
            lines.append(f"  - {question!r}: expected {expected or 'no answer'}, got {found or 'nothing'}")
    return "\n".join(lines)
