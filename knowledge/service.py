"""KnowledgeService: the one API the server and the CLI use for knowledge bases.

Synchronous on purpose: embedding and Chroma are CPU-bound or blocking, so the server calls
these methods through ``asyncio.to_thread``. A lock per knowledge base keeps a search from
seeing a half-replaced document in the keyword index.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from knowledge.chunking import BREADCRUMB_SEPARATOR, Chunk, chunk_document, embedding_text
from knowledge.documents import ParsedDocument
from knowledge.embeddings import Embedder
from knowledge.errors import ParseFailed
from knowledge.keyword import KeywordIndex, is_cjk_query
from knowledge.retrieval import Candidate, Hit, fuse
from knowledge.settings import KnowledgeSettings
from knowledge.store import Metadata, StoredChunk, VectorStore

__all__ = ["IngestResult", "KnowledgeService", "Progress"]

Progress = Callable[[float], None]
_EMBED_STEP = 64


@dataclass(frozen=True, slots=True)
class IngestResult:
    chunk_count: int
    content_hash: str
    skipped_duplicate: bool
    duplicate_of: str | None = None
    """The document id that already holds this content, when it was skipped."""


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
        self._keyword: dict[str, KeywordIndex] = {}
        self._opened: set[str] = set()

    # -- knowledge bases -------------------------------------------------------------------

    def _lock(self, kb_id: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(kb_id, threading.RLock())

    def _open(self, kb_id: str) -> None:
        if kb_id not in self._opened:
            self.store.open(kb_id, self.embedder.model_id, self.embedder.dimension)
            self._opened.add(kb_id)

    def create_kb(self, kb_id: str, *, exist_ok: bool = False) -> None:
        with self._lock(kb_id):
            if exist_ok and self.store.exists(kb_id):
                self._open(kb_id)
                return
            self.store.create(kb_id, self.embedder.model_id, self.embedder.dimension)
            self._opened.add(kb_id)
            self._keyword[kb_id] = KeywordIndex()

    def drop_kb(self, kb_id: str) -> None:
        with self._lock(kb_id):
            self.store.drop(kb_id)
            self._opened.discard(kb_id)
            self._keyword.pop(kb_id, None)

    def list_kbs(self) -> list[str]:
        return self.store.list_kbs()

    def open_kb(self, kb_id: str) -> None:
        """Check the knowledge base exists and was built with this embedder (``ModelMismatch``)."""
        with self._lock(kb_id):
            self._open(kb_id)

    def warm_up(self, kb_id: str) -> None:
        """Open the knowledge base and build its keyword index now rather than on the first search
        (a few seconds per 10k chunks): call it at server start-up."""
        with self._lock(kb_id):
            self._open(kb_id)
            self._keyword_index(kb_id)

    def chunk_count(self, kb_id: str) -> int:
        self.open_kb(kb_id)
        return self.store.count(kb_id)

    def _keyword_index(self, kb_id: str) -> KeywordIndex:
        index = self._keyword.get(kb_id)
        if index is None:
            # Rebuilt from Chroma's documents once per process: Chroma stays the only truth.
            index = KeywordIndex()
            for chunk in self.store.scan(kb_id):
                index.add(chunk.id, _keyword_text(chunk.text, chunk.metadata))
            self._keyword[kb_id] = index
        return index

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
                    index = self._keyword_index(kb_id)
                    for old in self.store.delete_where(kb_id, "document_id", document_id):
                        index.remove(old)
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
            index = self._keyword_index(kb_id)
            # Replace after the new version is ready, so a failure keeps the old one searchable.
            for old in self.store.delete_where(kb_id, "document_id", document_id):
                index.remove(old)
            self.store.add(kb_id, [c.id for c in chunks], vectors, [c.text for c in chunks], metadatas)
            for chunk, meta in zip(chunks, metadatas, strict=True):
                index.add(chunk.id, _keyword_text(chunk.text, meta))
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
            index = self._keyword_index(kb_id)
            removed = self.store.delete_where(kb_id, "document_id", document_id)
            for chunk_id in removed:
                index.remove(chunk_id)
            return len(removed)

    # -- search ----------------------------------------------------------------------------

    def search(self, kb_id: str, query: str, k: int | None = None, *, threshold: float | None = None) -> list[Hit]:
        """Up to ``k`` trusted hits, best first; an empty list means "not in the knowledge base".

        ``threshold`` overrides the configured similarity threshold (calibration uses it).
        """
        settings = self.settings
        k = max(1, min(k or settings.k_default, settings.k_max))
        query = query.strip()[:2000]
        if not query:
            return []
        self.open_kb(kb_id)
        pool = max(k, settings.candidate_pool)
        query_vector = self.embedder.embed([query])[0]
        with self._lock(kb_id):
            keyword_hits = self._keyword_index(kb_id).search(query, pool)
            vector_hits = self.store.query(kb_id, query_vector, pool)

        candidates: dict[str, Candidate] = {}
        stored: dict[str, StoredChunk] = {}
        for rank, chunk in enumerate(vector_hits, start=1):
            candidates[chunk.id] = Candidate(chunk.id, chunk.similarity, vector_rank=rank)
            stored[chunk.id] = chunk
        for rank, kw in enumerate(keyword_hits, start=1):
            candidate = candidates.setdefault(kw.chunk_id, Candidate(kw.chunk_id))
            candidate.keyword_rank, candidate.keyword_score = rank, kw.score
            candidate.exact_term, candidate.coverage = kw.exact_term, kw.coverage
        cjk = is_cjk_query(query)
        coverage_threshold = settings.keyword_coverage_threshold
        pool_full = len(vector_hits) >= pool
        # A keyword-only candidate outside a full vector pool is less similar than every chunk
        # in it, so only an exact term or CJK coverage can make it trusted: skip fetching the rest.
        missing = [
            cid
            for cid, c in candidates.items()
            if c.similarity is None and (not pool_full or c.exact_term or (cjk and c.coverage >= coverage_threshold))
        ]
        if missing:
            q = np.asarray(query_vector, dtype=np.float32)
            for chunk in self.store.get(kb_id, missing, with_embeddings=True):
                stored[chunk.id] = chunk
                if chunk.embedding is not None:
                    candidates[chunk.id].similarity = float(np.dot(q, np.asarray(chunk.embedding)))

        hits: list[Hit] = []
        trusted = fuse(
            list(candidates.values()),
            threshold=settings.score_threshold if threshold is None else threshold,
            k=k,
            rrf_k=settings.rrf_k,
            cjk=cjk,
            coverage_threshold=coverage_threshold,
        )
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
                )
            )
        return hits
