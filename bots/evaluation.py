"""Evaluation of the handoff policy on a labelled set of conversation prefixes.

The set (``bots/data/handoff_set.jsonl``) is JSON lines: an optional first line
``{"_settings": {...}}`` with the tenant settings the labels assume, then one case per line:
``text``, ``history`` [{role, text}], ``best_score`` (simulated retrieval), ``offered_human_before``,
``user_attributes``, ``handoff`` (expected: true/false) and optionally the expected ``action``.
Positive class = the policy hands off.
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
from bots.values import Turn

__all__ = ["Confusion", "default_set_path", "evaluate_handoff", "load_cases"]


@dataclass(slots=True)
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    action_matches: int = 0
    action_total: int = 0
    errors: list[str] = field(default_factory=list)

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


def _inputs(case: Mapping[str, Any]) -> HandoffInputs:
    return HandoffInputs(
        text=str(case["text"]),
        history=tuple(Turn.from_dict(t) for t in case.get("history", ())),
        offered_human_before=bool(case.get("offered_human_before", False)),
        user_attributes=dict(case.get("user_attributes") or {}),
        best_score=float(case.get("best_score", 1.0)),
        handoff_requested=bool(case.get("handoff_requested", False)),
    )


def evaluate_handoff(cases: Sequence[Mapping[str, Any]], settings: HandoffSettings) -> tuple[float, float, Confusion]:
    """Return (precision, recall, confusion) of "hand off" over ``cases``."""
    conf = Confusion()
    for case in cases:
        decision = decide(_inputs(case), settings)
        predicted = decision.action == "handoff"
        expected = bool(case["handoff"])
        if predicted and expected:
            conf.tp += 1
        elif predicted:
            conf.fp += 1
        elif expected:
            conf.fn += 1
        else:
            conf.tn += 1
        if predicted != expected:
            conf.errors.append(
                f"{case.get('id', '?')}: expected {expected}, got {decision.action}/"
                f"{decision.reason_code}: {case['text'][:80]}"
            )
        if "action" in case:
            conf.action_total += 1
            conf.action_matches += decision.action == case["action"]
    precision = conf.tp / (conf.tp + conf.fp) if conf.tp + conf.fp else 1.0
    recall = conf.tp / (conf.tp + conf.fn) if conf.tp + conf.fn else 1.0
    return precision, recall, conf
