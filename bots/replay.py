"""Offline replay of logged handoff decisions against (possibly changed) settings, to measure a
policy change before shipping it (``parley bots replay FILE.jsonl``)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bots.config import HandoffSettings
from bots.errors import ConfigError
from bots.handoff import HandoffInputs, decide
from bots.handoff_model import TurnScorer

__all__ = ["ReplayChange", "ReplayReport", "load_records", "replay"]


@dataclass(frozen=True, slots=True)
class ReplayChange:
    index: int
    old: str
    new: str
    text: str


@dataclass(slots=True)
class ReplayReport:
    total: int = 0
    changed: int = 0
    transitions: Counter[str] = field(default_factory=Counter)
    changes: list[ReplayChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "changed": self.changed,
            "transitions": dict(self.transitions),
            "changes": [_change(c) for c in self.changes],
        }


def _change(c: ReplayChange) -> dict[str, Any]:
    return {"index": c.index, "old": c.old, "new": c.new, "text": c.text}


def load_records(path: Path) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{n}: not JSON") from exc
    return out


def replay(
    records: Iterable[Mapping[str, Any]], settings: HandoffSettings, scorer: TurnScorer | None = None
) -> ReplayReport:
    """Re-decide every record (``HandoffDecision.to_record()`` shape) and count what changes,
    comparing ``action/reason_code``. The learned score stored with each record is reused, so a
    replay needs no model; with ``scorer`` every turn is scored again (to try a retrained model)."""
    report = ReplayReport()
    rows = list(records)
    all_inputs = [HandoffInputs.from_dict(rec.get("inputs", {})) for rec in rows]
    if scorer is not None:
        scores = scorer.score([i.text for i in all_inputs])
        all_inputs = [replace(i, learned_score=s) for i, s in zip(all_inputs, scores, strict=True)]
    for i, (rec, inputs) in enumerate(zip(rows, all_inputs, strict=True)):
        new = decide(inputs, settings)
        old_key = f"{rec.get('action')}/{rec.get('reason_code')}"
        new_key = f"{new.action}/{new.reason_code}"
        report.total += 1
        if old_key != new_key:
            report.changed += 1
            report.transitions[f"{old_key} -> {new_key}"] += 1
            report.changes.append(ReplayChange(i, old_key, new_key, inputs.text[:120]))
    return report
