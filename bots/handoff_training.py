"""Training of the learned handoff layer (``parley bots train-handoff``), numpy only.

Reproduces ``bots/data/handoff_model.npz`` from labelled sets (``bots.evaluation`` format), by
default :func:`default_training_paths`: the own sets ``bots/data/handoff_set.jsonl``,
``bots/data/handoff_extra.jsonl`` (turns written for training: other businesses, both languages, hard
negatives) and ``bots/data/handoff_fresh.jsonl``, ``handoff_fresh2.jsonl`` and ``handoff_fresh3.jsonl``
(eight to ten other fields each, written as fresh checks and measured once before they were trained
on), both halves of the
Voltway held-out set and both halves of the Kestrel one. Their test halves were reported
(Kestrel's twice) and are retired to training; any other test half (``*_test.jsonl``, e.g. a fresh
held-out set, or ``bots/data/handoff_fresh4_test.jsonl``, the own check written after the last tuning
round and kept out of training) is refused::

    python -m bots.handoff_training            # = parley bots train-handoff; writes the shipped npz
    python -m bots.handoff_training --out /tmp/m.npz bots/data/handoff_set.jsonl ...
    python -m bots.handoff_training --leave-one-out   # per business: train on the others, test on it

Training is deterministic: the embedder is deterministic, the folds are the businesses (own turns,
Voltway, Kestrel: :func:`business_of`) and the fit is full-batch gradient descent from zero.
Only turns whose label the text alone decides are used: cases whose label comes from the
conversation (repeats, an earlier offer, a VIP attribute, a tenant topic) teach a text model
nothing true (the policy adds the conversation itself: ``bots.handoff.conversation_trouble``).
The threshold is the lowest one whose precision reaches ``target_precision`` on turns of each
business scored by a model trained on the *other* businesses only, so it is chosen the way the
model will meet a new business, not on a random split of the same writers' turns.
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
    "business_of",
    "check_trainable_path",
    "default_training_paths",
    "fit_logistic",
    "load_training_cases",
    "train",
    "train_from_paths",
    "trainable",
]

_DATA = Path(__file__).parent / "data"
#: Test halves already reported and now trained on; every other ``*_test.jsonl`` is refused.
RETIRED_TEST_HALVES = (_DATA / "heldout" / "handoff_test.jsonl", _DATA / "heldout" / "kestrel_handoff_test.jsonl")


def default_training_paths() -> list[Path]:
    """The labelled sets the shipped weights are trained on (those present in this checkout)."""
    paths = [default_set_path(), _DATA / "handoff_extra.jsonl", _DATA / "handoff_fresh.jsonl",
             _DATA / "handoff_fresh2.jsonl", _DATA / "handoff_fresh3.jsonl",
             _DATA / "heldout" / "handoff_tune.jsonl",
             _DATA / "heldout" / "kestrel_handoff_tune.jsonl",
             *RETIRED_TEST_HALVES]
    return [p for p in paths if p.exists()]


def business_of(path: Path) -> str:
    """The business a labelled set was written for: the unit of cross-validation. A held-out set
    is named ``<business>_handoff_<half>.jsonl`` (Voltway's, the first, is ``handoff_<half>``); the
    sets directly in ``bots/data`` are the project's own turns."""
    name = path.name
    if path.parent.name != "heldout":
        return "own"
    return name.split("_handoff_")[0] if "_handoff_" in name else "voltway"


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


def _group_folds(groups: Sequence[str], k: int) -> list[np.ndarray]:
    """One fold per business when there are several; random folds when all turns share one."""
    names = sorted(set(groups))
    if len(names) < 2:
        return _folds(len(groups), k)
    arr = np.array(groups)
    return [np.where(arr == g)[0] for g in names]


def _fit_model(vectors: Vector, y: np.ndarray, l2: float, threshold: float) -> LogisticTurnModel:
    mean = vectors.mean(axis=0)
    spread = vectors.std(axis=0) + 1e-6
    w, b = fit_logistic((vectors - mean) / spread, y, l2=l2)
    return LogisticTurnModel(w, b, mean.astype(np.float32), spread.astype(np.float32), threshold)


def _threshold(oof: np.ndarray, y: np.ndarray, target_precision: float) -> tuple[float, float, float]:
    """The lowest threshold whose precision meets the target, with that precision and recall."""
    threshold, precision, recall = 1.01, 1.0, 0.0
    for t in sorted(set(np.round(oof, 3)), reverse=True):
        hit = oof >= t
        tp = float((hit & (y == 1)).sum())
        prec = tp / max(1.0, float(hit.sum()))
        if prec < target_precision:
            continue  # the lowest threshold that still meets the target wins, not the first dip
        threshold, precision, recall = float(t), prec, tp / max(1.0, float(y.sum()))
    return threshold, precision, recall


def train(cases: Sequence[Mapping[str, Any]], *, target_precision: float = 0.97, folds: int = 5,
          l2: float = 1e-2, vectors: Vector | None = None) -> TrainingReport:
    """Fit on the trainable ``cases``; the threshold comes from out-of-business predictions (each
    case's ``_business``, see :func:`business_of`; random ``folds`` when there is one business).
    ``vectors`` are the cases' embeddings when the caller has them already."""
    keep = [i for i, c in enumerate(cases) if trainable(c)]
    rows = [cases[i] for i in keep]
    texts = [str(c["text"]) for c in rows]
    y = np.array([1.0 if c["handoff"] else 0.0 for c in rows])
    raw = embed(texts) if vectors is None else vectors[keep]
    oof = np.zeros(len(rows))
    for idx in _group_folds([str(c.get("_business", "own")) for c in rows], folds):
        mask = np.ones(len(rows), dtype=bool)
        mask[idx] = False
        oof[idx] = _fit_model(raw[mask], y[mask], l2, 1.0).probabilities(raw[idx])
    threshold, precision, recall = _threshold(oof, y, target_precision)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:12]
    model = _fit_model(raw, y, l2, threshold)
    return TrainingReport(model, len(rows), int(y.sum()), precision, recall, digest)


def train_from_paths(paths: Sequence[Path], **kw: Any) -> TrainingReport:
    """:func:`train` on the cases of ``paths`` (each checked with :func:`check_trainable_path`)."""
    return train(load_training_cases(paths), **kw)


def load_training_cases(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The cases of ``paths`` (each checked with :func:`check_trainable_path`), each marked with its
    ``_business`` and the ``_settings`` its labels assume."""
    cases: list[dict[str, Any]] = []
    for path in paths:
        check_trainable_path(path)
        rows, settings = load_cases(path)
        cases.extend({**c, "_business": business_of(path), "_settings": settings} for c in rows)
    return cases


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bots.handoff_training", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="labelled sets (default: the shipped training sets)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the weights (default: shipped npz)")
    parser.add_argument("--leave-one-out", action="store_true",
                        help="measure instead: per business, train on the others and run the policy on it")
    args = parser.parse_args(argv)
    paths = list(args.paths) or default_training_paths()
    if args.leave_one_out:
        from bots.handoff_crossval import format_results, leave_one_business_out  # it imports this module

        try:
            results = leave_one_business_out(paths)
        except ConfigError as exc:
            parser.error(exc.detail)
        print("\n".join(format_results(results)))
        return
    try:
        report = train_from_paths(paths)
    except ConfigError as exc:
        parser.error(exc.detail)
    target = args.out or default_model_path()
    report.model.save(target)
    print(f"trained on {report.turns} turns ({report.positives} handoffs) from {', '.join(p.name for p in paths)}; "
          f"texts sha256 {report.sources}")
    print(f"out-of-business at threshold {report.model.threshold:.3f}: precision {report.oof_precision:.3f}, "
          f"recall {report.oof_recall:.3f}")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
