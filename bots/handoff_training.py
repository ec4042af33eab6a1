"""Training of the learned handoff layer (``parley bots train-handoff``), numpy only.

Reproduces ``bots/data/handoff_model.npz`` from labelled sets (``bots.evaluation`` format), by
default :func:`default_training_paths`: ``bots/data/handoff_set.jsonl``, ``bots/data/handoff_extra.jsonl``
(turns written for training: other businesses, both languages, hard negatives) and both halves of
the Voltway held-out set, whose test half was reported once (bench/results/handoff_eval.md) and is
retired to training. Any other test half (``*_test.jsonl``, e.g. a fresh held-out set) is refused::

    python -m bots.handoff_training            # = parley bots train-handoff; writes the shipped npz
    python -m bots.handoff_training --out /tmp/m.npz bots/data/handoff_set.jsonl ...

Training is deterministic: the embedder is deterministic, folds come from a fixed seed and the
fit is full-batch gradient descent from zero.
Only turns whose label the text alone decides are used: cases whose label comes from the
conversation (repeats, an earlier offer, a VIP attribute, a tenant topic) teach a text model
nothing true. The threshold is the lowest one whose out-of-fold precision on the training turns
reaches ``target_precision``, so it is chosen on data the fold's model never saw.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bots.errors import ConfigError
from bots.evaluation import default_set_path, load_cases
from bots.handoff_model import LogisticTurnModel, Vector, default_model_path, embed

__all__ = [
    "CONTEXT_CATEGORIES",
    "TrainingReport",
    "check_trainable_path",
    "default_training_paths",
    "fit_logistic",
    "train",
    "train_from_paths",
    "trainable",
]

_DATA = Path(__file__).parent / "data"
#: Test halves already reported and now trained on; every other ``*_test.jsonl`` is refused.
RETIRED_TEST_HALVES = (_DATA / "heldout" / "handoff_test.jsonl",)


def default_training_paths() -> list[Path]:
    """The labelled sets the shipped weights are trained on (those present in this checkout)."""
    paths = [default_set_path(), _DATA / "handoff_extra.jsonl", _DATA / "heldout" / "handoff_tune.jsonl",
             *RETIRED_TEST_HALVES]
    return [p for p in paths if p.exists()]


def check_trainable_path(path: Path) -> None:
    """Refuse a test half that has not been retired: it is for reporting only."""
    if path.name.endswith("test.jsonl") and path.resolve() not in {p.resolve() for p in RETIRED_TEST_HALVES}:
        raise ConfigError(f"{path}: the held-out test half is for reporting only")

#: Categories whose label depends on the conversation or the tenant, not on the turn's words.
CONTEXT_CATEGORIES = frozenset(
    {"loop", "repeat", "repeated", "repeated_question", "repeated_failure", "didnt_help", "offer_reply", "vip",
     "topic", "human_only_topic", "multi_turn", "no_evidence", "no_evidence_after_offer", "offer_accepted",
     "offer_declined"}
)


def trainable(case: Mapping[str, Any]) -> bool:
    category = str(case.get("category", ""))
    if category in CONTEXT_CATEGORIES:
        return False
    if category == "out_of_scope" and case.get("handoff"):
        return False  # handed off for want of evidence: the retrieval score decided, not the words
    return not (case.get("offered_human_before") or case.get("user_attributes") or case.get("handoff_requested"))


def fit_logistic(x: Vector, y: np.ndarray, *, l2: float = 1e-2, epochs: int = 300, lr: float = 0.1) -> tuple[
        Vector, float]:
    """Class-balanced L2 logistic regression by full-batch gradient descent (deterministic)."""
    n, d = x.shape
    pos = max(1, int(y.sum()))
    neg = max(1, n - pos)
    sample_w = np.where(y == 1, n / (2 * pos), n / (2 * neg)).astype(np.float64)
    w = np.zeros(d, dtype=np.float64)
    b = 0.0
    xd = x.astype(np.float64)
    for _ in range(epochs):
        z = np.clip(xd @ w + b, -30, 30)
        p = 1.0 / (1.0 + np.exp(-z))
        g = (p - y) * sample_w
        w -= lr * (xd.T @ g / n + l2 * w)
        b -= lr * float(g.mean())
    return w.astype(np.float32), b


@dataclass(frozen=True, slots=True)
class TrainingReport:
    model: LogisticTurnModel
    turns: int
    positives: int
    oof_precision: float
    oof_recall: float
    sources: str


def _folds(n: int, k: int) -> list[np.ndarray]:
    order = np.random.default_rng(7).permutation(n)
    return [order[i::k] for i in range(k)]


def train(cases: Sequence[Mapping[str, Any]], *, target_precision: float = 0.97, folds: int = 5,
          l2: float = 1e-2) -> TrainingReport:
    rows = [c for c in cases if trainable(c)]
    texts = [str(c["text"]) for c in rows]
    y = np.array([1.0 if c["handoff"] else 0.0 for c in rows])
    raw = embed(texts)
    mean = raw.mean(axis=0)
    spread = raw.std(axis=0) + 1e-6
    x = (raw - mean) / spread
    oof = np.zeros(len(rows))
    for idx in _folds(len(rows), folds):
        mask = np.ones(len(rows), dtype=bool)
        mask[idx] = False
        w, b = fit_logistic(x[mask], y[mask], l2=l2)
        oof[idx] = 1.0 / (1.0 + np.exp(-(x[idx] @ w + b)))
    threshold, precision, recall = 1.01, 1.0, 0.0
    for t in sorted(set(np.round(oof, 3)), reverse=True):
        hit = oof >= t
        tp = float((hit & (y == 1)).sum())
        prec = tp / max(1.0, float(hit.sum()))
        if prec < target_precision:
            continue  # the lowest threshold that still meets the target wins, not the first dip
        threshold, precision, recall = float(t), prec, tp / max(1.0, float(y.sum()))
    w, b = fit_logistic(x, y, l2=l2)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    model = LogisticTurnModel(w, b, mean.astype(np.float32), spread.astype(np.float32), threshold)
    return TrainingReport(model, len(rows), int(y.sum()), precision, recall, digest)


def train_from_paths(paths: Sequence[Path], **kw: Any) -> TrainingReport:
    """:func:`train` on the cases of ``paths`` (each checked with :func:`check_trainable_path`)."""
    cases: list[dict[str, Any]] = []
    for path in paths:
        check_trainable_path(path)
        cases.extend(load_cases(path)[0])
    return train(cases, **kw)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bots.handoff_training", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="labelled sets (default: the shipped training sets)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the weights (default: shipped npz)")
    args = parser.parse_args(argv)
    paths = list(args.paths) or default_training_paths()
    try:
        report = train_from_paths(paths)
    except ConfigError as exc:
        parser.error(exc.detail)
    target = args.out or default_model_path()
    report.model.save(target)
    print(f"trained on {report.turns} turns ({report.positives} handoffs) from {', '.join(p.name for p in paths)}; "
          f"texts sha256 {report.sources}")
    print(f"out-of-fold at threshold {report.model.threshold:.3f}: precision {report.oof_precision:.3f}, "
          f"recall {report.oof_recall:.3f}")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
