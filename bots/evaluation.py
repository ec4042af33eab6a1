"""Evaluation of the handoff policy on a labelled set of conversation prefixes.

The set (``bots/data/handoff_set.jsonl``) is JSON lines: an optional first line
``{"_settings": {...}}`` with the tenant settings the labels assume, then one case per line:
``text``, ``history`` [{role, text}], ``best_score`` (simulated retrieval), ``offered_human_before``,
``user_attributes``, ``handoff`` (expected: true/false) and optionally the expected ``action``.
Positive class = the policy hands off. Figures come overall and per ``lang`` and ``category``.

``bots/data/handoff_extra.jsonl`` (turns written for training: other businesses, both languages,
hard negatives) and the held-out sets (``bots/data/heldout/*.jsonl``) share the format. A test half
is for reporting only, never for tuning, until it is retired to training
(``bots.handoff_training.RETIRED_TEST_HALVES``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bots.config import HandoffSettings
from bots.errors import ConfigError
from bots.handoff import HandoffInputs, decide
from bots.handoff_model import TurnScorer
from bots.values import Turn

__all__ = [
    "Confusion",
    "HandoffReport",
    "default_set_path",
    "evaluate_handoff",
    "heldout_paths",
    "load_cases",
    "report_handoff",
]


@dataclass(slots=True)
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    action_matches: int = 0
    action_total: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def count(self, predicted: bool, expected: bool) -> None:
        if predicted and expected:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif expected:
            self.fn += 1
        else:
            self.tn += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "action_accuracy": self.action_matches / self.action_total if self.action_total else None,
        }


def default_set_path() -> Path:
    return Path(__file__).parent / "data" / "handoff_set.jsonl"


def heldout_paths() -> dict[str, Path]:
    """The held-out halves that exist in this checkout, by name."""
    folder = Path(__file__).parent / "data" / "heldout"
    return {n: folder / f"handoff_{n}.jsonl" for n in ("tune", "test") if (folder / f"handoff_{n}.jsonl").exists()}


def load_cases(path: Path | None = None) -> tuple[list[dict[str, Any]], HandoffSettings]:
    path = path or default_set_path()
    cases: list[dict[str, Any]] = []
    settings = HandoffSettings()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not JSON") from exc
        if "_settings" in row:
            settings = HandoffSettings.from_dict(row["_settings"])
        else:
            cases.append(row)
    return cases, settings


def _inputs(case: Mapping[str, Any], learned: float | None = None) -> HandoffInputs:
    return HandoffInputs(
        text=str(case["text"]),
        history=tuple(Turn.from_dict(t) for t in case.get("history", ())),
        offered_human_before=bool(case.get("offered_human_before", False)),
        user_attributes=dict(case.get("user_attributes") or {}),
        best_score=float(case.get("best_score", 1.0)),
        handoff_requested=bool(case.get("handoff_requested", False)),
        learned_score=learned,
    )


@dataclass(slots=True)
class HandoffReport:
    overall: Confusion
    by_lang: dict[str, Confusion]
    by_category: dict[str, Confusion]
    #: Handoffs per reason code (true and false ones).
    reasons: dict[str, int]


def report_handoff(
    cases: Sequence[Mapping[str, Any]], settings: HandoffSettings, scorer: TurnScorer | None = None
) -> HandoffReport:
    """Decide every case (with the learned layer when ``scorer`` is given) and count."""
    scores: list[float | None] = list(scorer.score([str(c["text"]) for c in cases])) if scorer else [None] * len(
        cases)
    report = HandoffReport(Confusion(), {}, {}, {})
    for case, learned in zip(cases, scores, strict=True):
        decision = decide(_inputs(case, learned), settings)
        predicted = decision.action == "handoff"
        expected = bool(case["handoff"])
        lang = str(case.get("lang", "?"))
        category = str(case.get("category", "?"))
        for conf in (
            report.overall,
            report.by_lang.setdefault(lang, Confusion()),
            report.by_category.setdefault(category, Confusion()),
        ):
            conf.count(predicted, expected)
        if predicted:
            report.reasons[decision.reason_code] = report.reasons.get(decision.reason_code, 0) + 1
        conf = report.overall
        if predicted != expected:
            conf.errors.append(
                f"{case.get('id', '?')}: expected {expected}, got {decision.action}/"
                f"{decision.reason_code}: {str(case['text'])[:80]}"
            )
        if "action" in case:
            conf.action_total += 1
            conf.action_matches += decision.action == case["action"]
    return report


def evaluate_handoff(
    cases: Sequence[Mapping[str, Any]], settings: HandoffSettings, scorer: TurnScorer | None = None
) -> tuple[float, float, Confusion]:
    """Return (precision, recall, confusion) of "hand off" over ``cases``."""
    conf = report_handoff(cases, settings, scorer).overall
    return conf.precision, conf.recall, conf
