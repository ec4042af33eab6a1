"""Is the question answered by this knowledge base at all? A calibrated decision, not a cutoff.

One cosine threshold tuned on one help centre does not carry over to another: the best
similarity of an in-scope question depends on how the pages are written. Several signals that
mean the same on any knowledge base are combined instead:

- ``similarity``: the best cosine of the question to a chunk (the embedder's own scale);
- ``margin``: how far the best chunk stands above the rest of the candidate pool (a question
  the KB answers has a clear winner; an off-topic one is equally far from everything);
- ``coverage``: the rarity-weighted share of the question's content words (or Chinese
  characters) that the best keyword match contains;
- ``keyword_similarity``: the cosine of the best keyword match, which must also mean something;
- ``unknown``: the share of the question's content words that no chunk contains at all;
- ``passage_coverage`` / ``passage_lacking``: how much of the question's rarity-weighted content
  the best-ranked passage holds, and the weight of the rarest content word it lacks
  (``KeywordIndex.evidence``); ``top_coverage`` / ``top_lacking`` the same for the first three
  (a question about a feature or a model the pages never name lacks its rarest word in every
  passage, however close its wording);
- ``agreement``: whether the two retrievers (the vectors and the keyword index) put the same
  document first: on an answerable question they usually do, on an off-topic one each finds a
  different near miss.

A logistic model turns them into a probability, fitted per embedding model on labelled
questions from more than one help centre (``fit``; the figures are in knowledge/models/README.md).
An exact code of the question (``AC-2041``) found in a chunk always counts as in scope: the
user named the thing.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["SCOPE_MODELS", "ScopeModel", "ScopeSignals", "fit", "scope_model_for"]


@dataclass(frozen=True, slots=True)
class ScopeSignals:
    similarity: float
    margin: float
    coverage: float
    keyword_similarity: float
    unknown: float = 0.0
    exact_term: bool = False
    cjk: bool = False
    unknown_latin: float | None = None
    """The part of ``unknown`` made of Latin words; None: all of it in a Latin question, none
    of it in a CJK one."""
    passage_coverage: float = 0.0
    passage_lacking: float = 1.0
    top_coverage: float = 0.0
    top_lacking: float = 1.0
    agreement: float = 0.0

    def features(self) -> list[float]:
        """The model's inputs. A model fitted before a signal existed has fewer weights, and the
        signals past its last weight do not count for it."""
        # Unknown words mean more in Latin text (a product name, in either language) than Chinese
        # bigrams do (a question's bigrams straddle words), so the two get their own weights.
        latin_unknown = self.unknown_latin
        if latin_unknown is None:
            latin_unknown = 0.0 if self.cjk else self.unknown
        cjk_unknown = self.unknown - latin_unknown
        return [self.similarity, self.margin, self.coverage, self.keyword_similarity, float(self.cjk),
                latin_unknown, cjk_unknown, self.passage_coverage, self.passage_lacking, self.top_coverage,
                self.top_lacking, self.agreement]


@dataclass(frozen=True, slots=True)
class ScopeModel:
    weights: tuple[float, ...]
    bias: float

    def probability(self, signals: ScopeSignals) -> float:
        if signals.exact_term:
            return 1.0
        features = signals.features()
        if len(self.weights) > len(features):
            raise ValueError(f"the scope model has {len(self.weights)} weights for {len(features)} signals")
        z = self.bias + sum(w * x for w, x in zip(self.weights, features, strict=False))
        return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))


def fit(signals: Sequence[ScopeSignals], in_scope: Sequence[bool], *, l2: float = 0.1, steps: int = 50) -> ScopeModel:
    """Logistic regression (Newton's method, L2-penalised so a small set cannot overfit it).

    Classes are weighted equally: out-of-scope questions are usually the fewer, and answering
    one wrongly costs as much as abstaining on an answerable one.
    """
    x: npt.NDArray[np.float64] = np.asarray([s.features() for s in signals], dtype=np.float64)
    y: npt.NDArray[np.float64] = np.asarray(in_scope, dtype=np.float64)
    if len(x) == 0 or y.min() == y.max():
        raise ValueError("fitting needs questions of both kinds")
    x = np.hstack([x, np.ones((len(x), 1))])
    pos = y.sum()
    sample = np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * (len(y) - pos)))
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -40, 40)))
        grad = x.T @ (sample * (p - y)) + penalty * w
        hess = (x * (sample * p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return ScopeModel(tuple(round(float(v), 4) for v in w[:-1]), round(float(w[-1]), 4))


# Fitted by bench/scope_cv.py --calibrate on three help centres: the Brightbrew demo (67
# questions), both halves of Voltway (315) and Kestrel's tuning half (130). Whether the signals
# carry over is measured by leaving one help centre out (fit on the other two, report the third:
# bench/scope_cv.py, figures in knowledge/models/README.md), never on the questions fitted on.
# The earlier model (7 signals, fitted on the demo and Voltway) is kept in the history; the
# passage evidence and agreement signals (with the score-fusion ranking) raised the leave-one-out
# mean of hit@5 and out-of-scope abstention from 0.842 to 0.860 at the same threshold (0.4).
# Keyed by the embedder's model id prefix; an embedder without an entry (MiniLM, OpenAI, hash)
# keeps the plain similarity threshold.
SCOPE_MODELS: dict[str, ScopeModel] = {
    "use-multilingual-v3": ScopeModel(
        (0.9912, 7.7221, 1.7373, 2.6633, -0.4426, -4.7807, -3.0077, 2.3818, 1.5788, 0.5472, -0.7207, -0.4217), -3.7664
    ),
}


def scope_model_for(model_id: str) -> ScopeModel | None:
    """The calibrated model for an embedder, or None (then the plain threshold rule applies)."""
    for prefix, model in SCOPE_MODELS.items():
        if model_id.startswith(prefix):
            return model
    return None
