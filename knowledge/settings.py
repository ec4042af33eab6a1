"""Limits and tunables of the knowledge package, each with a safe default.

The composition root builds one from its own settings; nothing here reads the environment.
"""

from dataclasses import dataclass, field

__all__ = ["KnowledgeSettings"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class KnowledgeSettings:
    # Uploads and parsing
    max_upload_bytes: int = 20 * MiB
    max_decompressed_bytes: int = 100 * MiB
    # A zip member may expand this many times its compressed size before we call it a bomb.
    max_compression_ratio: int = 200
    max_extracted_chars: int = 5_000_000
    max_pdf_pages: int = 2_000
    max_csv_rows: int = 50_000
    parse_cpu_seconds: int = 30
    parse_wall_seconds: float = 60.0
    parse_memory_bytes: int = 1024 * MiB

    # Chunking
    chunk_size: int = 800
    chunk_overlap: int = 120

    # URL fetching
    fetch_timeout_seconds: float = 10.0
    max_redirects: int = 5
    sitemap_page_limit: int = 50
    allowed_ports: frozenset[int] = field(default_factory=lambda: frozenset({80, 443}))
    # Only tests turn this on, so a local test server on 127.0.0.1 can be fetched.
    allow_loopback: bool = False
    user_agent: str = "ParleyKnowledgeFetcher/0.1"

    # Embeddings
    embed_batch_size: int = 32
    embed_max_batch_tokens: int = 512
    embed_max_tokens: int = 256
    onnx_intra_op_threads: int = 1
    # A knowledge base built with another embedding model is re-embedded from its stored chunk
    # texts when opened (true), or refused with ModelMismatch (false). Never mixed.
    reembed_on_mismatch: bool = False

    # Retrieval
    k_default: int = 5
    k_max: int = 50
    # Cosine similarity below which a vector hit is not trusted. Calibrated on the dev half of
    # the demo golden set (even lines) with the offline MiniLM model; see knowledge/demo/README.md.
    score_threshold: float = 0.42
    # For mostly-CJK questions: the rarity-weighted share of the question's character bigrams a
    # chunk must contain (the offline model cannot judge these; see knowledge/retrieval.py).
    keyword_coverage_threshold: float = 0.5
    # With a calibrated scope model (knowledge/scope.py): the in-scope probability below which
    # the search abstains, and how many chunks of one document may fill the top k. 0.4 rather
    # than 0.5: on the sets it was fitted on it abstained as often out of scope and kept more
    # in-scope questions (an in-scope question refused is a miss too).
    scope_probability: float = 0.4
    max_chunks_per_document: int = 1
    # Extractive answers: how many sentences of a chunk to quote, and how much the embedder's
    # judgement counts against the share of the question's words a sentence contains.
    answer_sentences: int = 3
    answer_semantic_weight: float = 0.4
    # How many neighbouring chunks of a hit's page are searched for the sentence that answers,
    # and how many sentences one answer may embed (the rest are judged by their words).
    answer_window: int = 6
    answer_max_embedded: int = 64
    # Several processes may share one Chroma server: how often (at most) a search asks Chroma
    # whether another process changed the knowledge base, so its in-memory copy catches up.
    store_check_seconds: float = 1.0
    # How many candidates each retriever contributes before fusion.
    candidate_pool: int = 20
    rrf_k: int = 60
    # With a calibrated scope model, candidates are ranked by cosine + keyword_weight x (BM25 as a
    # share of the best) + coverage_weight x (share of the question's content words held); see
    # knowledge/retrieval.py's ``rank``.
    fusion_keyword_weight: float = 0.1
    fusion_coverage_weight: float = 0.2
