"""Training of the learned handoff layer (``parley bots train-handoff``), numpy only.

Reproduces ``bots/data/handoff_model.npz`` from labelled sets (``bots.evaluation`` format):
``bots/data/handoff_set.jsonl`` and the tuning half of the held-out set, never its test half.
Only turns whose label the text alone decides are used: cases whose label comes from the
conversation (repeats, an earlier offer, a VIP attribute, a tenant topic) teach a text model
nothing true. The threshold is the lowest one whose out-of-fold precision on the training turns
reaches ``target_precision``, so it is chosen on data the fold's model never saw.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bots.handoff_model import LogisticTurnModel, Vector, embed

__all__ = ["CONTEXT_CATEGORIES", "TrainingReport", "fit_logistic", "train", "trainable"]

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
