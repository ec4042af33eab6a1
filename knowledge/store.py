"""The vector store port and its Chroma adapter.

One Chroma collection per knowledge base (never a shared collection filtered by tenant: a
filter is one forgotten argument away from a leak, and FACTS.md measured it 6-20x slower).
Collections are created without an embedding function and always given explicit vectors, so
Chroma's default model, which downloads at first use, can never run. Each collection records
the embedding model id and dimension it was built with.
"""

import hashlib
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import chromadb
import numpy as np
import numpy.typing as npt
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import NotFoundError

from knowledge.errors import KnowledgeBaseExists, KnowledgeBaseNotFound, ModelMismatch

__all__ = ["ChromaStore", "MemoryIndex", "StoredChunk", "VectorStore", "collection_name"]

Metadata = Mapping[str, str | int | float | bool]
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class StoredChunk:
    id: str
    text: str
    metadata: Metadata
    similarity: float = 0.0
    embedding: Sequence[float] | None = None


class VectorStore(Protocol):
    def create(self, kb_id: str, model_id: str, dimension: int) -> None: ...
    def open(self, kb_id: str, model_id: str, dimension: int) -> None: ...
    def drop(self, kb_id: str) -> None: ...
    def exists(self, kb_id: str) -> bool: ...
    def list_kbs(self) -> list[str]: ...
    def count(self, kb_id: str) -> int: ...
    def add(
        self,
        kb_id: str,
        ids: list[str],
        embeddings: list[list[float]],
        texts: list[str],
        metadatas: Sequence[Metadata],
    ) -> None: ...
    def ids_where(self, kb_id: str, key: str, value: str) -> list[str]: ...
    def delete_where(self, kb_id: str, key: str, value: str) -> list[str]: ...
    def first_where(self, kb_id: str, key: str, value: str) -> StoredChunk | None: ...
    def query(self, kb_id: str, embedding: list[float], k: int) -> list[StoredChunk]: ...
    def get(self, kb_id: str, ids: list[str], *, with_embeddings: bool = False) -> list[StoredChunk]: ...
    def scan(self, kb_id: str, *, with_embeddings: bool = False) -> Iterator[StoredChunk]: ...
    def listing(self, kb_id: str) -> dict[str, str]: ...
    def revision(self, kb_id: str) -> str: ...
    def touch(self, kb_id: str) -> str: ...
    def model_of(self, kb_id: str) -> tuple[str, int]: ...
    def reembed(
        self, kb_id: str, model_id: str, dimension: int, embed: Callable[[list[StoredChunk]], list[list[float]]]
    ) -> int: ...


def _reembed_name(kb_id: str) -> str:
    return collection_name(kb_id) + "-new"


def _kb_metadata(kb_id: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    return {"kb_id": kb_id, "embedding_model": meta["embedding_model"],
            "embedding_dimension": meta["embedding_dimension"]}


def collection_name(kb_id: str) -> str:
    """A valid, collision-free Chroma name for any kb id, still readable in Chroma's tools."""
    readable = re.sub(r"[^a-zA-Z0-9_-]+", "-", kb_id).strip("-_")[:40]
    digest = hashlib.sha256(kb_id.encode()).hexdigest()[:12]
    return f"kb-{readable}-{digest}" if readable else f"kb-{digest}"


class ChromaStore:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._collections: dict[str, Any] = {}
        max_batch = getattr(client, "get_max_batch_size", None)
        self._max_batch = int(max_batch()) if callable(max_batch) else 5000

    @classmethod
    def persistent(cls, path: Path) -> "ChromaStore":
        path.mkdir(parents=True, exist_ok=True)
        settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        return cls(chromadb.PersistentClient(path=str(path), settings=settings))

    @classmethod
    def http(
        cls, host: str, port: int = 8000, *, ssl: bool = False, headers: dict[str, str] | None = None
    ) -> "ChromaStore":
        settings = ChromaSettings(anonymized_telemetry=False)
        return cls(chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=headers, settings=settings))

    @classmethod
    def ephemeral(cls) -> "ChromaStore":
        return cls(chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False)))

    def _collection(self, kb_id: str) -> Any:
        collection = self._collections.get(kb_id)
        if collection is None:
            try:
                collection = self._client.get_collection(collection_name(kb_id), embedding_function=None)
            except (NotFoundError, ValueError) as exc:
                collection = self._finish_reembed(kb_id)
                if collection is None:
                    raise KnowledgeBaseNotFound(f"knowledge base {kb_id!r} does not exist") from exc
            self._collections[kb_id] = collection
        return collection

    def _get_or_none(self, name: str) -> Any:
        try:
            return self._client.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError):
            return None

    def _finish_reembed(self, kb_id: str) -> Any:
        """A re-embedding that stopped after dropping the old collection: its complete copy
        is the knowledge base now (it is only ever complete once the old one is gone)."""
        fresh = self._get_or_none(_reembed_name(kb_id))
        meta = dict(fresh.metadata or {}) if fresh is not None else {}
        if fresh is None or not meta.get("reembed_complete"):
            return None
        fresh.modify(name=collection_name(kb_id), metadata=_kb_metadata(kb_id, meta))
        return fresh

    def model_of(self, kb_id: str) -> tuple[str, int]:
        meta = self._collection(kb_id).metadata or {}
        return str(meta.get("embedding_model")), int(meta.get("embedding_dimension") or 0)

    def reembed(
        self, kb_id: str, model_id: str, dimension: int, embed: Callable[[list[StoredChunk]], list[list[float]]]
    ) -> int:
        """Rebuild the knowledge base's vectors with another model, from its stored chunk texts.

        The new vectors go into a separate collection that replaces the old one only when
        complete, so a crash midway leaves the old knowledge base intact (and a crash between
        the drop and the rename is finished on the next open). The number of chunks re-embedded.
        """
        old = self._collection(kb_id)
        name = _reembed_name(kb_id)
        if self._get_or_none(name) is not None:
            self._client.delete_collection(name)  # an earlier attempt that did not finish
        fresh = self._client.create_collection(
            name,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"reembed_of": kb_id, "embedding_model": model_id, "embedding_dimension": dimension},
        )
        count = 0
        batch: list[StoredChunk] = []

        def flush() -> None:
            vectors = embed(batch)
            fresh.add(
                ids=[c.id for c in batch],
                embeddings=vectors,
                documents=[c.text for c in batch],
                metadatas=[dict(c.metadata) for c in batch],
            )

        for chunk in self.scan(kb_id):
            batch.append(chunk)
            if len(batch) >= 256:
                flush()
                count += len(batch)
                batch = []
        if batch:
            flush()
            count += len(batch)
        meta = {"reembed_of": kb_id, "embedding_model": model_id, "embedding_dimension": dimension}
        fresh.modify(metadata={**meta, "reembed_complete": True})
        del old
        self._collections.pop(kb_id, None)
        self._client.delete_collection(collection_name(kb_id))
        fresh.modify(name=collection_name(kb_id), metadata=_kb_metadata(kb_id, meta))
        self._collections[kb_id] = fresh
        return count

    def create(self, kb_id: str, model_id: str, dimension: int) -> None:
        if self.exists(kb_id):
            raise KnowledgeBaseExists(f"knowledge base {kb_id!r} already exists")
        self._collections[kb_id] = self._client.create_collection(
            collection_name(kb_id),
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"kb_id": kb_id, "embedding_model": model_id, "embedding_dimension": dimension},
        )

    def open(self, kb_id: str, model_id: str, dimension: int) -> None:
        meta = self._collection(kb_id).metadata or {}
        stored = (meta.get("embedding_model"), meta.get("embedding_dimension"))
        if stored != (model_id, dimension):
            raise ModelMismatch(
                f"knowledge base {kb_id!r} was built with {stored[0]} ({stored[1]} dimensions); "
                f"the configured embedder is {model_id} ({dimension} dimensions). Re-create the "
                "knowledge base to switch models."
            )

    def drop(self, kb_id: str) -> None:
        self._collections.pop(kb_id, None)
        try:
            self._client.delete_collection(collection_name(kb_id))
        except (NotFoundError, ValueError) as exc:
            raise KnowledgeBaseNotFound(f"knowledge base {kb_id!r} does not exist") from exc

    def exists(self, kb_id: str) -> bool:
        try:
            self._collection(kb_id)
        except KnowledgeBaseNotFound:
            return False
        return True

    def list_kbs(self) -> list[str]:
        names: list[str] = []
        for collection in self._client.list_collections():
            meta = collection.metadata or {}
            if "kb_id" in meta:
                names.append(str(meta["kb_id"]))
            elif meta.get("reembed_complete") and "reembed_of" in meta:
                names.append(str(meta["reembed_of"]))
        return sorted(names)

    def count(self, kb_id: str) -> int:
        return int(self._collection(kb_id).count())

    def add(
        self,
        kb_id: str,
        ids: list[str],
        embeddings: list[list[float]],
        texts: list[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        collection = self._collection(kb_id)
        step = max(1, min(self._max_batch, 5000))
        for start in range(0, len(ids), step):
            end = start + step
            collection.add(
                ids=ids[start:end],
                embeddings=embeddings[start:end],
                documents=texts[start:end],
                metadatas=[dict(m) for m in metadatas[start:end]],
            )

    def ids_where(self, kb_id: str, key: str, value: str) -> list[str]:
        return list(self._collection(kb_id).get(where={key: value}, include=[])["ids"])

    def delete_where(self, kb_id: str, key: str, value: str) -> list[str]:
        collection = self._collection(kb_id)
        ids = self.ids_where(kb_id, key, value)
        for start in range(0, len(ids), _PAGE):
            collection.delete(ids=ids[start : start + _PAGE])
        return ids

    def first_where(self, kb_id: str, key: str, value: str) -> StoredChunk | None:
        found = self._collection(kb_id).get(where={key: value}, limit=1, include=["documents", "metadatas"])
        if not found["ids"]:
            return None
        return StoredChunk(found["ids"][0], found["documents"][0] or "", found["metadatas"][0] or {})

    def query(self, kb_id: str, embedding: list[float], k: int) -> list[StoredChunk]:
        collection = self._collection(kb_id)
        result = collection.query(
            query_embeddings=[embedding], n_results=k, include=["documents", "metadatas", "distances"]
        )
        return [
            StoredChunk(cid, text or "", meta or {}, 1.0 - float(distance))
            for cid, text, meta, distance in zip(
                result["ids"][0],
                result["documents"][0],
                result["metadatas"][0],
                result["distances"][0],
                strict=True,
            )
        ]

    def get(self, kb_id: str, ids: list[str], *, with_embeddings: bool = False) -> list[StoredChunk]:
        if not ids:
            return []
        include = ["documents", "metadatas", *(["embeddings"] if with_embeddings else [])]
        found = self._collection(kb_id).get(ids=ids, include=include)
        vectors = found.get("embeddings")
        return [
            StoredChunk(
                cid,
                found["documents"][i] or "",
                found["metadatas"][i] or {},
                embedding=None if vectors is None else list(vectors[i]),
            )
            for i, cid in enumerate(found["ids"])
        ]

    def scan(self, kb_id: str, *, with_embeddings: bool = False) -> Iterator[StoredChunk]:
        collection = self._collection(kb_id)
        include = ["documents", "metadatas", *(["embeddings"] if with_embeddings else [])]
        offset = 0
        while True:
            page = collection.get(include=include, limit=_PAGE, offset=offset)
            if not page["ids"]:
                return
            vectors = page.get("embeddings")
            for i, cid in enumerate(page["ids"]):
                yield StoredChunk(
                    cid,
                    page["documents"][i] or "",
                    page["metadatas"][i] or {},
                    embedding=None if vectors is None else list(vectors[i]),
                )
            offset += len(page["ids"])

    def listing(self, kb_id: str) -> dict[str, str]:
        """Every chunk id with the content hash of its document version: what an in-memory copy
        compares itself with to find what another process added, replaced or removed."""
        collection = self._collection(kb_id)
        out: dict[str, str] = {}
        offset = 0
        while True:
            page = collection.get(include=["metadatas"], limit=_PAGE * 10, offset=offset)
            if not page["ids"]:
                return out
            for cid, meta in zip(page["ids"], page["metadatas"], strict=True):
                out[cid] = str((meta or {}).get("content_hash", ""))
            offset += len(page["ids"])

    def revision(self, kb_id: str) -> str:
        """The knowledge base's change stamp as the server has it now (one small round trip):
        it changes whenever any process adds or removes chunks (``touch``)."""
        try:
            fresh = self._client.get_collection(collection_name(kb_id), embedding_function=None)
        except (NotFoundError, ValueError) as exc:
            raise KnowledgeBaseNotFound(f"knowledge base {kb_id!r} does not exist") from exc
        return str((fresh.metadata or {}).get("revision", ""))

    def touch(self, kb_id: str) -> str:
        """Record that the knowledge base changed: a new random stamp in its metadata (Chroma
        replaces the metadata whole, so the rest is written back with it). The new stamp."""
        collection = self._collection(kb_id)
        fresh = self._client.get_collection(collection_name(kb_id), embedding_function=None)
        stamp = uuid.uuid4().hex
        collection.modify(metadata={**dict(fresh.metadata or {}), "revision": stamp})
        return stamp


class MemoryIndex:
    """An in-memory copy of one knowledge base for the search hot path: every chunk's text in a
    BM25 index, and its vector, so a chunk the keyword index found is scored without a round
    trip to Chroma (the nearest neighbours themselves come from Chroma's HNSW index, faster
    than scanning this copy). Chroma stays the store of record; ``KnowledgeService`` keeps this
    copy in step with it by the knowledge base's change stamp, so changes made by other
    processes sharing the Chroma server are seen too.
    """

    def __init__(self, dimension: int) -> None:
        from knowledge.keyword import KeywordIndex

        self.keyword = KeywordIndex()
        self.revision: str | None = None
        """The change stamp this copy reflects (None: never synchronised)."""
        self.checked_at = float("-inf")
        self._dimension = dimension
        self._vectors: npt.NDArray[np.float32] = np.zeros((64, dimension), dtype=np.float32)
        self._alive: npt.NDArray[np.bool_] = np.zeros(64, dtype=bool)
        self._chunks: list[StoredChunk | None] = []
        self._slot: dict[str, int] = {}
        self._hash: dict[str, str] = {}
        self._dead = 0

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._slot

    def hashes(self) -> dict[str, str]:
        return dict(self._hash)

    def put(self, chunk: StoredChunk, keyword_text: str) -> None:
        """Add or replace a chunk (its ``embedding`` must be set)."""
        if chunk.embedding is None:
            raise ValueError(f"chunk {chunk.id!r} has no vector")
        self.remove(chunk.id)
        slot = len(self._chunks)
        if slot >= len(self._vectors):
            grown = max(64, 2 * len(self._vectors))
            vectors = np.zeros((grown, self._dimension), dtype=np.float32)
            vectors[:slot] = self._vectors[:slot]
            alive = np.zeros(grown, dtype=bool)
            alive[:slot] = self._alive[:slot]
            self._vectors, self._alive = vectors, alive
        self._vectors[slot] = np.asarray(chunk.embedding, dtype=np.float32)
        self._alive[slot] = True
        self._chunks.append(StoredChunk(chunk.id, chunk.text, chunk.metadata))
        self._slot[chunk.id] = slot
        self._hash[chunk.id] = str(chunk.metadata.get("content_hash", ""))
        self.keyword.add(chunk.id, keyword_text)

    def remove(self, chunk_id: str) -> None:
        slot = self._slot.pop(chunk_id, None)
        if slot is None:
            return
        self._hash.pop(chunk_id, None)
        self._alive[slot] = False
        self._chunks[slot] = None
        self._dead += 1
        self.keyword.remove(chunk_id)
        if self._dead > 1000 and self._dead > len(self._slot):
            self._compact()

    def _compact(self) -> None:
        keep = [i for i, chunk in enumerate(self._chunks) if chunk is not None]
        self._vectors = np.ascontiguousarray(self._vectors[keep]) if keep else np.zeros((64, self._dimension),
                                                                                       dtype=np.float32)
        self._alive = np.ones(len(self._vectors), dtype=bool) if keep else np.zeros(64, dtype=bool)
        self._chunks = [self._chunks[i] for i in keep]
        self._slot = {c.id: i for i, c in enumerate(self._chunks) if c is not None}
        self._dead = 0

    def chunk(self, chunk_id: str) -> StoredChunk | None:
        slot = self._slot.get(chunk_id)
        return None if slot is None else self._chunks[slot]

    def similarity(self, query: npt.NDArray[np.float32], chunk_id: str) -> float | None:
        """Cosine of the query to one chunk (None when it is not here)."""
        slot = self._slot.get(chunk_id)
        return None if slot is None else float(self._vectors[slot] @ query)
