import json

import httpx
import numpy as np
import pytest

from knowledge.embeddings import Embedder, HashEmbedder, OnnxMiniLM, OpenAIEmbeddings
from knowledge.errors import EmbeddingFailed


def cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_onnx_is_an_embedder_with_normalised_vectors(onnx: OnnxMiniLM) -> None:
    assert isinstance(onnx, Embedder)
    vectors = onnx.embed(["Hello world", "A much longer sentence about espresso machines and milk.", ""])
    assert len(vectors) == 3 and all(len(v) == onnx.dimension == 384 for v in vectors)
    assert all(abs(np.linalg.norm(v) - 1.0) < 1e-4 for v in vectors)
    assert onnx.embed([]) == []


def test_similar_sentences_are_closer_than_unrelated(onnx: OnnxMiniLM) -> None:
    a, b, c = onnx.embed(
        [
            "How do I return my coffee machine?",
            "What is the returns policy for espresso makers?",
            "The football match ended in a draw.",
        ]
    )
    assert cos(a, b) > cos(a, c) + 0.2


def test_padding_to_longest_matches_padding_to_256(onnx: OnnxMiniLM) -> None:
    texts = ["short", "a somewhat longer sentence about shipping to Canada", "word " * 80]
    ours = onnx.embed(texts)
    padded = onnx.embed_array(texts, pad_to=256)  # Chroma's way: every text padded to 256 tokens
    for mine, theirs in zip(ours, padded, strict=True):
        assert cos(mine, list(theirs)) >= 0.999


def test_batch_order_and_size_do_not_change_vectors(onnx: OnnxMiniLM) -> None:
    texts = [f"Sentence {i} " + "x " * (i * 7) for i in range(10)]
    together = np.array(onnx.embed(texts))
    alone = np.array([onnx.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=2e-3)


def test_hash_embedder_is_deterministic_and_normalised() -> None:
    e = HashEmbedder(64)
    assert e.embed(["AC-2041 kettle"]) == e.embed(["AC-2041 kettle"])
    assert abs(np.linalg.norm(e.embed(["anything"])[0]) - 1) < 1e-9
    assert e.model_id == "hash-64" and e.dimension == 64


def openai_client(handler: object) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]


def test_openai_adapter_batches_orders_and_normalises() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        data = [{"index": i, "embedding": [3.0, 4.0, float(i)]} for i in range(len(body["input"]))]
        return httpx.Response(200, json={"data": list(reversed(data)), "model": body["model"]})

    e = OpenAIEmbeddings(
        client=openai_client(handler),
        base_url="http://llm.test/v1/",
        api_key="sk-secret",
        model="text-embedding-3-small",
        dimension=3,
        batch_size=2,
    )
    vectors = e.embed(["a", "b", "c"])
    assert len(seen) == 2
    assert seen[0].url == "http://llm.test/v1/embeddings"
    assert seen[0].headers["authorization"] == "Bearer sk-secret"
    assert json.loads(seen[0].content) == {"model": "text-embedding-3-small", "input": ["a", "b"]}
    assert vectors[1] == pytest.approx(np.array([3, 4, 1]) / np.linalg.norm([3, 4, 1]))
    assert e.model_id == "openai:text-embedding-3-small"
    assert "sk-secret" not in repr(e)
    assert seen[0].extensions["timeout"]["read"] == 30.0


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500),
        httpx.Response(429),
        httpx.Response(200, json={"nope": 1}),
        httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0, 2.0]}]}),
    ],
)
def test_openai_adapter_errors(response: httpx.Response) -> None:
    e = OpenAIEmbeddings(
        client=openai_client(lambda r: response), base_url="http://llm.test/v1", api_key="k", model="m", dimension=3
    )
    with pytest.raises(EmbeddingFailed) as info:
        e.embed(["a"])
    assert info.value.code == "unavailable"


def test_openai_adapter_transport_error() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    e = OpenAIEmbeddings(client=openai_client(boom), base_url="http://llm.test", api_key="k", model="m", dimension=3)
    with pytest.raises(EmbeddingFailed):
        e.embed(["a"])
