"""KnowledgeService: the one API the server and the CLI use for knowledge bases.

Synchronous on purpose: embedding and Chroma are CPU-bound or blocking, so the server calls
these methods through ``asyncio.to_thread``. A lock per knowledge base keeps a search from
seeing a half-replaced document in the keyword index.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from knowledge.answers import Highlight, highlight
from knowledge.chunking import BREADCRUMB_SEPARATOR, Chunk, chunk_document, embedding_text
from knowledge.documents import ParsedDocument
from knowledge.embeddings import Embedder
from knowledge.errors import ModelMismatch, ParseFailed
from knowledge.keyword import KeywordHit, is_cjk_query
from knowledge.retrieval import Candidate, Hit, fuse, rank
from knowledge.scope import ScopeModel, ScopeSignals, scope_model_for
from knowledge.settings import KnowledgeSettings
from knowledge.store import MemoryIndex, Metadata, StoredChunk, VectorStore

__all__ = ["IngestResult", "KnowledgeService", "Progress", "Retrieval"]

log = logging.getLogger("parley.knowledge")

Progress = Callable[[float], None]
_EMBED_STEP = 64


@dataclass(frozen=True, slots=True)
class IngestResult:
    chunk_count: int
    content_hash: str
    skipped_duplicate: bool
    duplicate_of: str | None = None
    """The document id that already holds this content, when it was skipped."""


def _embedding_text_of(chunk: StoredChunk) -> str:
    """What ingestion embedded for this chunk, rebuilt from what the store keeps."""
    meta = chunk.metadata
    path = str(meta.get("heading_path", ""))
    heading = tuple(path.split(BREADCRUMB_SEPARATOR)) if path else ()
    rebuilt = Chunk(chunk.id, str(meta.get("document_id", "")), int(meta.get("index", 0)), chunk.text, heading,
                    str(meta.get("kind", "text")))
    return embedding_text(str(meta.get("title", "")), rebuilt)


def _keyword_text(text: str, meta: Metadata) -> str:
    title = str(meta.get("title", ""))
    path = str(meta.get("heading_path", ""))
    return f"{title}\n{path}\n{text}"


class KnowledgeService:
    def __init__(self, store: VectorStore, embedder: Embedder, settings: KnowledgeSettings | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings or KnowledgeSettings()
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self._memory: dict[str, MemoryIndex] = {}
        self._opened: set[str] = set()

    # -- knowledge bases -------------------------------------------------------------------

    def _lock(self, kb_id: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(kb_id, threading.RLock())

    def _open(self, kb_id: str) -> None:
        if kb_id not in self._opened:
            try:
                self.store.open(kb_id, self.embedder.model_id, self.embedder.dimension)
            except ModelMismatch:
                if not self.settings.reembed_on_mismatch:
                    raise
                self._reembed(kb_id)
            self._opened.add(kb_id)

    def reembed_kb(self, kb_id: str) -> int:
        """Re-embed every chunk of the knowledge base with this service's embedder (from the
        stored chunk texts, so no source document is needed); the number of chunks."""
        with self._lock(kb_id):
            count = self._reembed(kb_id)
            self._opened.add(kb_id)
            return count

    def _reembed(self, kb_id: str) -> int:
        before = self.store.model_of(kb_id)
        log.warning(
            "knowledge base %s was built with %s (%d dimensions); re-embedding it with %s",
            kb_id, before[0], before[1], self.embedder.model_id,
        )

        def embed(chunks: list[StoredChunk]) -> list[list[float]]:
            return self.embedder.embed([_embedding_text_of(c) for c in chunks])

        count = self.store.reembed(kb_id, self.embedder.model_id, self.embedder.dimension, embed)
        self._memory.pop(kb_id, None)  # its vectors are the old model's
        return count

    def create_kb(self, kb_id: str, *, exist_ok: bool = False) -> None:
        with self._lock(kb_id):
            if exist_ok and self.store.exists(kb_id):
                self._open(kb_id)
                return
            self.store.create(kb_id, self.embedder.model_id, self.embedder.dimension)
            self._opened.add(kb_id)
            self._memory[kb_id] = MemoryIndex(self.embedder.dimension)

    def drop_kb(self, kb_id: str) -> None:
        with self._lock(kb_id):
            self.store.drop(kb_id)
            self._opened.discard(kb_id)
            self._memory.pop(kb_id, None)

    def list_kbs(self) -> list[str]:
        return self.store.list_kbs()

    def open_kb(self, kb_id: str) -> None:
        """Check the knowledge base exists and was built with this embedder (``ModelMismatch``)."""
        with self._lock(kb_id):
            self._open(kb_id)

    def chunk_count(self, kb_id: str) -> int:
        self.open_kb(kb_id)
        return self.store.count(kb_id)

    def _index(self, kb_id: str, *, check: bool = False) -> MemoryIndex:
        """The knowledge base's in-memory copy, brought in step with Chroma (the only truth).

        Other processes may share the Chroma server (several nodes): every change stamps the
        collection (``store.touch``), and the stamp is compared at most every
        ``store_check_seconds`` (always with ``check``); when it moved, the chunk listing is
        compared and only what was added, replaced or removed is fetched. Call with the lock held.
        """
        memory = self._memory.get(kb_id)
        if memory is None:
            memory = self._memory[kb_id] = MemoryIndex(self.embedder.dimension)
        now = time.monotonic()
        if not check and memory.revision is not None and now - memory.checked_at < self.settings.store_check_seconds:
            return memory
        memory.checked_at = now
        revision = self.store.revision(kb_id)
        if revision == memory.revision:
            return memory
        if memory.revision is None and len(memory) == 0:
            for chunk in self.store.scan(kb_id, with_embeddings=True):
                memory.put(chunk, _keyword_text(chunk.text, chunk.metadata))
        else:
            listing = self.store.listing(kb_id)
            mine = memory.hashes()
            for chunk_id, content_hash in mine.items():
                if listing.get(chunk_id) != content_hash:
                    memory.remove(chunk_id)
            wanted = [cid for cid, content_hash in listing.items() if mine.get(cid) != content_hash]
            for start in range(0, len(wanted), 1000):
                for chunk in self.store.get(kb_id, wanted[start : start + 1000], with_embeddings=True):
                    memory.put(chunk, _keyword_text(chunk.text, chunk.metadata))
        memory.revision = revision
        return memory

    # -- documents -------------------------------------------------------------------------

    def ingest(
        self, kb_id: str, document_id: str, parsed: ParsedDocument, progress: Progress | None = None
    ) -> IngestResult:
        report = progress or (lambda _fraction: None)
        with self._lock(kb_id):
            self._open(kb_id)
            content_hash = parsed.content_hash()
            same = self.store.first_where(kb_id, "content_hash", content_hash)
            if same is not None:
                owner = str(same.metadata.get("document_id", ""))
                if owner != document_id:
                    # This id's previous version is outdated either way; its new content is
                    # already indexed under ``owner``.
                    memory = self._index(kb_id)
                    removed = self.store.delete_where(kb_id, "document_id", document_id)
                    for old in removed:
                        memory.remove(old)
                    if removed:
                        self.store.touch(kb_id)
                report(1.0)
                count = len(self.store.ids_where(kb_id, "document_id", owner))
                return IngestResult(count, content_hash, True, owner)

        chunks = chunk_document(document_id, parsed, self.settings)
        if not chunks:
            raise ParseFailed("the document has no text to index")
        texts = [embedding_text(parsed.title, c) for c in chunks]
        # Embedding runs outside the lock: it is the slow part, and it touches no shared state.
        vectors: list[list[float]] = []
        for start in range(0, len(texts), _EMBED_STEP):
            vectors.extend(self.embedder.embed(texts[start : start + _EMBED_STEP]))
            report(0.9 * min(1.0, (start + _EMBED_STEP) / len(texts)))
        metadatas = [self._metadata(parsed, c, content_hash) for c in chunks]

        with self._lock(kb_id):
            memory = self._index(kb_id)
            # Replace after the new version is ready, so a failure keeps the old one searchable.
            for old in self.store.delete_where(kb_id, "document_id", document_id):
                memory.remove(old)
            self.store.add(kb_id, [c.id for c in chunks], vectors, [c.text for c in chunks], metadatas)
            for chunk, vector, meta in zip(chunks, vectors, metadatas, strict=True):
                memory.put(StoredChunk(chunk.id, chunk.text, meta, embedding=vector), _keyword_text(chunk.text, meta))
            # The copy's own stamp stays as it was, so the next check compares listings once and
            # picks up whatever another process wrote meanwhile.
            self.store.touch(kb_id)
        report(1.0)
        return IngestResult(len(chunks), content_hash, False)

    @staticmethod
    def _metadata(parsed: ParsedDocument, chunk: Chunk, content_hash: str) -> Metadata:
        return {
            "document_id": chunk.document_id,
            "title": parsed.title,
            "source": parsed.source,
            "heading_path": BREADCRUMB_SEPARATOR.join(chunk.heading_path),
            "index": chunk.index,
            "kind": chunk.kind,
            "content_hash": content_hash,
        }

    def delete_document(self, kb_id: str, document_id: str) -> int:
        """Remove every chunk of the document; the number removed."""
        with self._lock(kb_id):
            self._open(kb_id)
            memory = self._index(kb_id)
            removed = self.store.delete_where(kb_id, "document_id", document_id)
            for chunk_id in removed:
                memory.remove(chunk_id)
            if removed:
                self.store.touch(kb_id)
            return len(removed)

    # -- search ----------------------------------------------------------------------------

    def search(self, kb_id: str, query: str, k: int | None = None, *, threshold: float | None = None) -> list[Hit]:
        """Up to ``k`` hits, best first; an empty list means "not in the knowledge base".

        ``threshold`` overrides the configured similarity threshold of the plain rule (used
        when the embedder has no calibrated scope model).
        """
        found = self.retrieve(kb_id, query, k, threshold=threshold)
        return found.hits if found.in_scope else []

    def retrieve(
        self,
        kb_id: str,
        query: str,
        k: int | None = None,
        *,
        threshold: float | None = None,
        scope: ScopeModel | bool | None = True,
    ) -> "Retrieval":
        """The ranked hits with the scope decision and the signals it was made from.

        ``scope`` picks the scope model: True for the embedder's calibrated one, a model to try
        another (calibration), or False/None for the plain threshold rule.
        """
        settings = self.settings
        k = max(1, min(k or settings.k_default, settings.k_max))
        query = query.strip()[:2000]
        if not query:
            return Retrieval([], False, 0.0, None, [])
        self.open_kb(kb_id)
        pool = max(k, settings.candidate_pool)
        query_vector = self.embedder.embed([query])[0]
        q = np.asarray(query_vector, dtype=np.float32)
        candidates: dict[str, Candidate] = {}
        stored: dict[str, StoredChunk] = {}
        with self._lock(kb_id):
            memory = self._index(kb_id)
            keyword_hits = memory.keyword.search(query, pool)
            unknown = memory.keyword.unknown_shares(query)
            # Chroma's HNSW index answers the top k: an exact scan of an in-memory matrix was
            # slower at 10k and 100k chunks (memory-bound, bench/results/knowledge.md).
            for rank_, chunk in enumerate(self.store.query(kb_id, query_vector, pool), start=1):
                candidates[chunk.id] = Candidate(chunk.id, chunk.similarity, vector_rank=rank_)
                stored[chunk.id] = chunk
            for rank_, kw in enumerate(keyword_hits, start=1):
                found_chunk = memory.chunk(kw.chunk_id)
                if found_chunk is None:
                    continue
                candidate = candidates.get(kw.chunk_id)
                if candidate is None:
                    candidate = candidates[kw.chunk_id] = Candidate(kw.chunk_id, memory.similarity(q, kw.chunk_id))
                stored[kw.chunk_id] = found_chunk
                candidate.keyword_rank, candidate.keyword_score = rank_, kw.score
                candidate.exact_term, candidate.coverage = kw.exact_term, kw.coverage
        model = scope_model_for(self.embedder.model_id) if scope is True else (scope or None)
        cjk = is_cjk_query(query)
        coverage_threshold = settings.keyword_coverage_threshold

        signals: ScopeSignals | None = None
        documents = {cid: str(chunk.metadata.get("document_id", "")) for cid, chunk in stored.items()}
        if model is None:
            probability = 1.0
            trusted = fuse(
                list(candidates.values()),
                threshold=settings.score_threshold if threshold is None else threshold,
                k=k,
                rrf_k=settings.rrf_k,
                cjk=cjk,
                coverage_threshold=coverage_threshold,
                per_document=max(1, settings.max_chunks_per_document),
                documents=documents,
            )
            in_scope = bool(trusted)
        else:
            trusted = rank(
                list(candidates.values()),
                k=k,
                per_document=max(1, settings.max_chunks_per_document),
                documents=documents,
                keyword_weight=settings.fusion_keyword_weight,
                coverage_weight=settings.fusion_coverage_weight,
            )
            ranked = [c.chunk_id for c, _fused in trusted]
            with self._lock(kb_id):
                first, first_three = memory.keyword.evidence(query, [ranked[:1], ranked[:3]])
            signals = _signals(keyword_hits, candidates, cjk, unknown, documents, (first, first_three))
            probability = model.probability(signals)
            in_scope = probability >= settings.scope_probability

        hits: list[Hit] = []
        for candidate, _fused in trusted:
            found = stored.get(candidate.chunk_id)
            if found is None:  # deleted between the keyword lookup and the fetch
                continue
            meta = found.metadata
            path = str(meta.get("heading_path", ""))
            hits.append(
                Hit(
                    chunk_id=found.id,
                    document_id=str(meta.get("document_id", "")),
                    title=str(meta.get("title", "")),
                    source=str(meta.get("source", "")),
                    heading_path=tuple(path.split(BREADCRUMB_SEPARATOR)) if path else (),
                    text=found.text,
                    score=round(candidate.similarity or 0.0, 4),
                    confidence=round(probability, 4),
                )
            )
        return Retrieval(hits, in_scope and bool(hits), probability, signals, query_vector)

    def highlights(
        self, query: str, hits: Sequence[Hit], query_vector: Sequence[float] | None = None
    ) -> list[Highlight]:
        """The sentences of each hit that answer ``query`` (plain text, navigation dropped)."""
        if not hits:
            return []
        vector = query_vector if query_vector is not None else self.embedder.embed([query.strip()[:2000]])[0]
        headings = [(h.title, *h.heading_path) for h in hits]
        return highlight(
            query,
            vector,
            [h.text for h in hits],
            self.embedder,
            headings=headings,
            max_sentences=self.settings.answer_sentences,
            semantic_weight=self.settings.answer_semantic_weight,
            max_total=self.settings.answer_max_embedded,
        )

    def answer_passages(
        self, kb_id: str, query: str, found: "Retrieval", *, documents: int = 2, window: int | None = None
    ) -> list[tuple[Hit, Highlight]]:
        """For each of the first ``documents`` documents among the hits, the chunk and sentences
        of it that answer ``query`` best, looking ``window`` chunks either side of the hit.

        Retrieval finds the page; the sentence that answers is often in a neighbouring chunk
        (a list of specifications under the introduction that matched), so the neighbours are
        scored too, the hit's own chunk first.
        """
        window = self.settings.answer_window if window is None else window
        anchors: list[Hit] = []
        for hit in found.hits:
            if hit.document_id not in {a.document_id for a in anchors}:
                anchors.append(hit)
            if len(anchors) >= documents:
                break
        if not anchors:
            return []
        groups: list[list[Hit]] = []
        with self._lock(kb_id):
            for anchor in anchors:
                base, _, number = anchor.chunk_id.rpartition(":")
                group = [anchor]
                if number.isdigit() and window > 0:
                    at = int(number)
                    near = sorted(range(max(0, at - window), at + window + 1), key=lambda i: (abs(i - at), i))
                    wanted = [f"{base}:{i}" for i in near if i != at]
                    chunks = {c.id: c for c in self.store.get(kb_id, wanted)}
                    for cid in wanted:
                        chunk = chunks.get(cid)
                        if chunk is None or str(chunk.metadata.get("document_id", "")) != anchor.document_id:
                            continue
                        path = str(chunk.metadata.get("heading_path", ""))
                        group.append(
                            replace(
                                anchor,
                                chunk_id=chunk.id,
                                text=chunk.text,
                                heading_path=tuple(path.split(BREADCRUMB_SEPARATOR)) if path else (),
                            )
                        )
                groups.append(group)
        flat = [h for group in groups for h in group]
        lights = self.highlights(query, flat, found.query_vector)
        out: list[tuple[Hit, Highlight]] = []
        offset = 0
        for group in groups:
            scored = list(zip(group, lights[offset : offset + len(group)], strict=True))
            offset += len(group)
            # Ties keep the hit's own chunk, which comes first.
            # The hit's own chunk is preferred by a little: retrieval read all of it and its
            # headings; a neighbour wins when its sentences answer clearly better.
            best = max(
                scored,
                key=lambda pair: (pair[1].score + (_ANCHOR_PREFERENCE if pair[0] is group[0] else 0.0))
                if pair[1].sentences
                else -1.0,
            )
            out.append(best)
        return out


# How much better a neighbouring chunk's quote must score than the hit's own to be answered from.
_ANCHOR_PREFERENCE = 0.03


@dataclass(frozen=True, slots=True)
class Retrieval:
    hits: list[Hit]
    in_scope: bool
    probability: float
    """The scope model's probability that the knowledge base answers the question."""
    signals: ScopeSignals | None
    query_vector: list[float]


def _signals(
    keyword_hits: Sequence[KeywordHit],
    candidates: dict[str, Candidate],
    cjk: bool,
    unknown: tuple[float, float],
    documents: dict[str, str],
    evidence: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 1.0), (0.0, 1.0)),
) -> ScopeSignals:
    # Per document: five chunks of the page that answers are not five competitors.
    per_document: dict[str, float] = {}
    for c in candidates.values():
        if c.similarity is not None:
            doc = documents.get(c.chunk_id, c.chunk_id)
            per_document[doc] = max(per_document.get(doc, -1.0), c.similarity)
    sims = sorted(per_document.values(), reverse=True)
    best = sims[0] if sims else 0.0
    rest = sims[1:11]
    margin = best - (sum(rest) / len(rest)) if rest else 0.0
    top_keyword = keyword_hits[:3]
    coverage = max((kw.coverage for kw in top_keyword), default=0.0)
    keyword_similarity = candidates[keyword_hits[0].chunk_id].similarity or 0.0 if keyword_hits else 0.0
    exact = any(kw.exact_term for kw in top_keyword)
    latin_unknown, cjk_unknown = unknown
    by_vector = min((c for c in candidates.values() if c.vector_rank is not None), key=lambda c: c.vector_rank or 0,
                    default=None)
    agree = bool(keyword_hits) and by_vector is not None and (
        documents.get(by_vector.chunk_id, by_vector.chunk_id)
        == documents.get(keyword_hits[0].chunk_id, keyword_hits[0].chunk_id))
    (passage_coverage, passage_lacking), (top_coverage, top_lacking) = evidence
    return ScopeSignals(best, margin, coverage, keyword_similarity, latin_unknown + cjk_unknown, exact, cjk,
                        latin_unknown, passage_coverage, passage_lacking, top_coverage, top_lacking, float(agree))
