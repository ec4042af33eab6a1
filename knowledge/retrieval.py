"""Fusing vector and keyword candidates into hits, and deciding when to abstain.

With a calibrated scope model (``knowledge.scope``) every candidate is ranked by ``rank``, a
fusion of its cosine, its keyword score and its coverage of the question, and the scope model
decides whether to answer at all. Without one (``fuse``, the plain rule of embedders with no
calibration), a candidate is trusted when its cosine similarity to the question reaches the
threshold, or when it contains an exact term of the question (a product code, an error number)
that the keyword index matched; trusted candidates are ordered by reciprocal rank fusion of the
two rankings, and when none is trusted the answer is "not in the knowledge base".
"""

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Candidate", "Hit", "fuse", "rank"]


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    document_id: str
    title: str
    source: str
    heading_path: tuple[str, ...]
    text: str
    score: float
    """Cosine similarity of the chunk to the question (the list is ordered by fused rank)."""
    confidence: float = 1.0
    """Probability that the question is answered by the knowledge base (``knowledge.scope``);
    1.0 when the embedder has no calibrated scope model and the plain threshold rule decided."""


@dataclass(slots=True)
class Candidate:
    chunk_id: str
    similarity: float | None = None
    vector_rank: int | None = None
    keyword_rank: int | None = None
    keyword_score: float = 0.0
    exact_term: bool = False
    coverage: float = 0.0


def _trusted(c: Candidate, *, threshold: float, cjk: bool, coverage_threshold: float) -> bool:
    if c.exact_term:
        return True
    if cjk:
        # The offline model maps most CJK characters to [UNK], so its similarity says nothing
        # for these queries; how much of the question the chunk contains decides instead.
        return c.coverage >= coverage_threshold
    return c.similarity is not None and c.similarity >= threshold


def fuse(
    candidates: Sequence[Candidate],
    *,
    threshold: float,
    k: int,
    rrf_k: int,
    cjk: bool = False,
    coverage_threshold: float = 0.5,
    per_document: int | None = None,
    documents: dict[str, str] | None = None,
) -> list[tuple[Candidate, float]]:
    """The ``k`` trusted candidates, best first, each with its fused score (with
    ``per_document``, at most that many chunks of one document)."""
    trusted: list[tuple[Candidate, float]] = []
    for c in candidates:
        if not _trusted(c, threshold=threshold, cjk=cjk, coverage_threshold=coverage_threshold):
            continue
        fused = 0.0
        if c.vector_rank is not None and not cjk:
            fused += 1.0 / (rrf_k + c.vector_rank)
        if c.keyword_rank is not None:
            fused += 1.0 / (rrf_k + c.keyword_rank)
        if c.exact_term:
            # An exact code match outranks paraphrase similarity: the user named the thing.
            fused += 1.0 / rrf_k
        trusted.append((c, fused))
    trusted.sort(key=lambda item: (item[1], item[0].similarity or 0.0), reverse=True)
    if per_document is None:
        return trusted[:k]
    return _capped(trusted, k, per_document, documents or {})


def rank(
    candidates: Sequence[Candidate],
    *,
    k: int,
    per_document: int,
    documents: dict[str, str],
    keyword_weight: float = 0.1,
    coverage_weight: float = 0.2,
    exact_bonus: float = 0.1,
) -> list[tuple[Candidate, float]]:
    """Every candidate by a fused score, at most ``per_document`` chunks of one document in the
    first ``k`` (five chunks of one long page would crowd out the page that answers).

    The score is the cosine to the question plus ``keyword_weight`` times the chunk's BM25 score
    as a share of the query's best one, plus ``coverage_weight`` times the share of the
    question's content words it contains (and ``exact_bonus`` when it holds a code the question
    names). Scores rather than ranks: reciprocal rank fusion gave the tenth vector neighbour
    as much as the first keyword one whatever their distances; every candidate has its cosine,
    since the keyword index's finds are scored against the question's vector too. On the demo,
    Voltway and Kestrel's tuning half this raised the rank-only doc hit@5 from 0.961 to 0.976 and
    MRR from 0.859 to 0.885 (weights from a coarse grid, the middle of a plateau; see
    knowledge/models/README.md).
    """
    best_keyword = max((c.keyword_score for c in candidates), default=0.0)
    scored: list[tuple[Candidate, float]] = []
    for c in candidates:
        fused = c.similarity or 0.0
        if best_keyword > 0:
            fused += keyword_weight * c.keyword_score / best_keyword
        fused += coverage_weight * c.coverage
        if c.exact_term:
            fused += exact_bonus
        scored.append((c, fused))
    scored.sort(key=lambda item: (item[1], item[0].similarity or 0.0), reverse=True)
    return _capped(scored, k, per_document, documents)


def _capped(scored: list[tuple[Candidate, float]], k: int, per_document: int,
            documents: dict[str, str]) -> list[tuple[Candidate, float]]:
    out: list[tuple[Candidate, float]] = []
    taken: dict[str, int] = {}
    for c, fused in scored:
        doc = documents.get(c.chunk_id, c.chunk_id)
        if taken.get(doc, 0) >= per_document:
            continue
        taken[doc] = taken.get(doc, 0) + 1
        out.append((c, fused))
        if len(out) >= k:
            break
    return out
