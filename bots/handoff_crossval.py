"""Leave-one-business-out measurement of the handoff policy (``python -m bots.handoff_training
--leave-one-out``).

For each business of the training sets (:func:`bots.handoff_training.business_of`: the own turns,
Voltway, Kestrel) the learned layer is trained on the *other* businesses only (its threshold chosen
by the same cross-validation across those businesses) and the whole policy is run on the held-out
one, beside the rules alone and beside the in-sample figure (trained on everything). This is how
the learned layer meets a new business; the rules were written with all of these sets in view, so
their figures here are in-sample (the honest figure for them is a set nobody tuned on).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bots.config import HandoffSettings
from bots.evaluation import Confusion, HandoffReport, report_handoff
from bots.handoff_model import LogisticTurnModel, Vector, embed
from bots.handoff_training import load_training_cases, train

__all__ = ["FoldResult", "format_results", "leave_one_business_out"]


@dataclass(frozen=True, slots=True)
class FoldResult:
    business: str
    #: "held out" (trained on the other businesses) or "in sample" (trained on all).
    mode: str
    threshold: float
    rules: HandoffReport
    learned: HandoffReport


class _CachedScorer:
    """A fold's model over embeddings computed once for all folds."""

    def __init__(self, model: LogisticTurnModel, vectors: Mapping[str, Vector]) -> None:
        self.model = model
        self.vectors = vectors

    def score(self, texts: Sequence[str]) -> list[float]:
        return self.model.probabilities(np.stack([self.vectors[t] for t in texts]))


def _merge(into: HandoffReport, part: HandoffReport) -> None:
    def add(a: Confusion, b: Confusion) -> None:
        a.tp, a.fp, a.fn, a.tn = a.tp + b.tp, a.fp + b.fp, a.fn + b.fn, a.tn + b.tn
        a.action_matches += b.action_matches
        a.action_total += b.action_total
        a.errors.extend(b.errors)

    add(into.overall, part.overall)
    for name, conf in part.by_lang.items():
        add(into.by_lang.setdefault(name, Confusion()), conf)
    for name, conf in part.by_category.items():
        add(into.by_category.setdefault(name, Confusion()), conf)
    for code, n in part.reasons.items():
        into.reasons[code] = into.reasons.get(code, 0) + n


def _report(cases: Sequence[Mapping[str, Any]], scorer: _CachedScorer | None) -> HandoffReport:
    """The policy over cases that may assume different tenant settings (one run per settings), at
    the tenant's ``learned_threshold`` (the shipped default unless the set says otherwise)."""
    out = HandoffReport(Confusion(), {}, {}, {})
    by_settings: dict[int, tuple[HandoffSettings, list[Mapping[str, Any]]]] = {}
    for c in cases:
        settings = c["_settings"]
        by_settings.setdefault(id(settings), (settings, []))[1].append(c)
    for settings, rows in by_settings.values():
        _merge(out, report_handoff(rows, settings, scorer))
    return out


def leave_one_business_out(paths: Sequence[Path], **train_kw: Any) -> list[FoldResult]:
    cases = load_training_cases(paths)
    texts = sorted({str(c["text"]) for c in cases})
    vectors = dict(zip(texts, embed(texts), strict=True))
    all_vectors = np.stack([vectors[str(c["text"])] for c in cases])
    businesses = sorted({str(c["_business"]) for c in cases})
    results: list[FoldResult] = []
    full = train(cases, vectors=all_vectors, **train_kw).model
    for held in businesses:
        test = [c for c in cases if c["_business"] == held]
        keep = np.array([c["_business"] != held for c in cases])
        fold = train([c for c in cases if c["_business"] != held], vectors=all_vectors[keep], **train_kw).model
        for mode, model in (("held out", fold), ("in sample", full)):
            scorer = _CachedScorer(model, vectors)
            results.append(FoldResult(held, mode, model.threshold, _report(test, None), _report(test, scorer)))
    return results


def _row(name: str, rules: Confusion, learned: Confusion) -> str:
    return (f"  {name:<24} {rules.total:>4}   {rules.precision:.3f} {rules.recall:.3f}   "
            f"{learned.precision:.3f} {learned.recall:.3f}")


def format_results(results: Sequence[FoldResult]) -> list[str]:
    out: list[str] = []
    for r in results:
        out.append(f"== {r.business}, learned layer {r.mode} (cross-validated threshold {r.threshold:.3f}; "
                   f"the policy's learned_threshold applies)")
        out.append(f"  {'':<24} {'n':>4}   rules P/R     rules+learned P/R")
        out.append(_row("all", r.rules.overall, r.learned.overall))
        for lang in sorted(r.learned.by_lang):
            out.append(_row(f"lang {lang}", r.rules.by_lang[lang], r.learned.by_lang[lang]))
        for cat in sorted(r.learned.by_category):
            out.append(_row(cat, r.rules.by_category[cat], r.learned.by_category[cat]))
        out.extend(f"  miss {e}" for e in r.learned.overall.errors)
    return out
