"""The vector store port and its Chroma adapter.

One Chroma collection per knowledge base (never a shared collection filtered by tenant: a
filter is one forgotten argument away from a leak, and FACTS.md measured it 6-20x slower).
Collections are created without an embedding function and always given explicit vectors, so
Chroma's default model, which downloads at first use, can never run. Each collection records
the embedding model id and dimension it was built with.
"""

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import chromadb
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import NotFoundError

from knowledge.errors import KnowledgeBaseExists, KnowledgeBaseNotFound, ModelMismatch

__all__ = ["ChromaStore", "StoredChunk", "VectorStore", "collection_name"]

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
    def scan(self, kb_id: str) -> Iterator[StoredChunk]: ...
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

    def scan(self, kb_id: str) -> Iterator[StoredChunk]:
        collection = self._collection(kb_id)
        offset = 0
        while True:
            page = collection.get(include=["documents", "metadatas"], limit=_PAGE, offset=offset)
            if not page["ids"]:
                return
            for cid, text, meta in zip(page["ids"], page["documents"], page["metadatas"], strict=True):
                yield StoredChunk(cid, text or "", meta or {})
            offset += len(page["ids"])
