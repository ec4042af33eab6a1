"""What the scope signals and the score fusion add to a search, beside the whole search.

    python bench/search_cost_bench.py                   # 10k and 100k chunks
    python bench/search_cost_bench.py --sizes 10000     # what a shared machine can afford

The store is filled as in bench/knowledge_bench.py (synthetic chunk texts, random unit vectors,
the real multilingual USE embedding the questions). Measured in the same run, per question: the
whole ``KnowledgeService.retrieve`` (embed, Chroma top 20, BM25, fusion, scope signals and
model) and the parts this search added to it: ``KeywordIndex.evidence`` over the first passage
and the first three, and ``retrieval.rank`` (score fusion). Prints to stdout only.
"""

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from knowledge_bench import percentile, synthetic_text, unit_vectors  # noqa: E402

from knowledge.embeddings import MultilingualUSE  # noqa: E402
from knowledge.retrieval import Candidate, rank  # noqa: E402
from knowledge.service import KnowledgeService  # noqa: E402
from knowledge.store import ChromaStore  # noqa: E402

QUERIES = [
    "How do I descale the espresso machine?",
    "refund to my card",
    "pump pressure low after cleaning",
    "退货需要多久",
    "where is my parcel tracking",
    "change the password on my account",
    "who won the football world cup in 1998",
    "咖啡机漏水怎么办",
]


def fill(path: Path, size: int, dimension: int) -> None:
    store = ChromaStore.persistent(path)
    store.create("big", "use-multilingual-v3:bench", dimension)
    rng = np.random.default_rng(size)
    for base in range(0, size, 5000):
        n = min(5000, size - base)
        store.add(
            "big",
            [f"d{(base + i) // 10}:{(base + i) % 10}" for i in range(n)],
            unit_vectors(rng, n, dimension),
            [synthetic_text(random.Random(base + i), base + i) for i in range(n)],
            [{"document_id": f"d{(base + i) // 10}", "title": f"Doc {(base + i) // 10}", "source": "synthetic",
              "heading_path": "Section", "content_hash": f"h{(base + i) // 10}"} for i in range(n)],
        )


def bench(size: int, embedder: MultilingualUSE, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="searchcost-") as tmp:
        path = Path(tmp) / "store"
        fill(path, size, embedder.dimension)

        class Named:  # the store records the model id; the bench embeds with the real USE
            model_id = "use-multilingual-v3:bench"
            dimension = embedder.dimension

            def embed(self, texts: list[str]) -> list[list[float]]:
                return embedder.embed(texts)

        service = KnowledgeService(ChromaStore.persistent(path), Named())
        service.search("big", "warm up the in-memory copy")
        keyword = service._index("big").keyword
        found = {q: service.retrieve("big", q, 5) for q in QUERIES}
        ranked = {q: [h.chunk_id for h in found[q].hits] for q in QUERIES}
        pool = {q: [Candidate(f"d{i}:0", similarity=0.5 - i / 100, vector_rank=i + 1, keyword_rank=i + 1,
                              keyword_score=10.0 - i / 4, coverage=0.5) for i in range(40)] for q in QUERIES}
        documents = {f"d{i}:0": f"d{i}" for i in range(40)}
        steps: dict[str, Callable[[str], object]] = {
            "whole search (KnowledgeService.retrieve, k=5)": lambda q: service.retrieve("big", q, 5),
            "added: passage evidence, first and first three": lambda q: keyword.evidence(
                q, [ranked[q][:1], ranked[q][:3]]),
            "added: score fusion of 40 candidates (rank)": lambda q: rank(
                pool[q], k=5, per_document=1, documents=documents),
        }
        times: dict[str, list[float]] = {name: [] for name in steps}
        for round_ in range(rounds):
            for q in QUERIES:
                for name, step in steps.items():
                    start = time.perf_counter()
                    step(q)
                    if round_ > 0:
                        times[name].append((time.perf_counter() - start) * 1000)
        print(f"\n{size // 1000}k chunks, {len(QUERIES)} questions x {rounds - 1} rounds "
              "(target: whole search p99 ≤ 5 ms)")
        for name, values in times.items():
            print(f"  {name:52s} p50 {percentile(values, 50):6.3f} ms  p99 {percentile(values, 99):6.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    embedder = MultilingualUSE(threads=1)
    for size in [int(x) for x in args.sizes.split(",") if x]:
        bench(size, embedder, max(2, args.rounds))


if __name__ == "__main__":
    main()
