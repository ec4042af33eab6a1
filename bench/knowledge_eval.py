"""Answer quality on two help centres, per language, beside the targets of QUALITY.md.

    python bench/knowledge_eval.py --calibrate          # fit the scope model (demo + Voltway tuning half)
    python bench/knowledge_eval.py --test               # the one reporting run on the Voltway test half

The demo set (Brightbrew) and the Voltway tuning half were tuned on; only the Voltway test half
(knowledge/eval/voltway/questions_test.jsonl, written by someone else and never looked at while
tuning) says how Parley does for a new business. Writes bench/results/knowledge_eval.md.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knowledge.demo import GOLDEN_PATH, load_demo  # noqa: E402
from knowledge.embeddings import default_embedder  # noqa: E402
from knowledge.evaluation import (  # noqa: E402
    GoldenItem,
    collect_signals,
    evaluate_by_language,
    format_report,
    format_table,
    load_directory,
    load_golden,
)
from knowledge.scope import fit  # noqa: E402
from knowledge.service import KnowledgeService  # noqa: E402
from knowledge.settings import KnowledgeSettings  # noqa: E402
from knowledge.store import ChromaStore  # noqa: E402
from server.kb import extractive_answerer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "knowledge_eval.md"
TARGETS = {"hit5": "≥ 0.95", "answer": "≥ 0.85 per language", "oos": "≥ 0.90"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voltway", type=Path, default=ROOT / "knowledge" / "eval" / "voltway")
    parser.add_argument("--embedder", default="use", choices=["use", "minilm"])
    parser.add_argument("--calibrate", action="store_true", help="fit and print the scope model")
    parser.add_argument("--test", action="store_true", help="also report the Voltway test half")
    parser.add_argument("--misses", action="store_true")
    parser.add_argument("--kestrel", type=Path, help="also report DIR/questions_tune.jsonl on DIR/docs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where --test writes its tables")
    args = parser.parse_args()
    settings = KnowledgeSettings()
    service = KnowledgeService(ChromaStore.ephemeral(), default_embedder(settings, args.embedder), settings)
    start = time.perf_counter()
    load_demo(service, "demo")
    load_directory(service, "voltway", args.voltway / "docs")
    print(f"loaded both help centres in {time.perf_counter() - start:.0f} s ({service.embedder.model_id})")
    demo = load_golden(GOLDEN_PATH)
    tune = load_golden(args.voltway / "questions_tune.jsonl")
    if args.calibrate:
        pairs = collect_signals(service, "demo", demo) + collect_signals(service, "voltway", tune)
        print("fitted:", fit([s for s, _ in pairs], [y for _, y in pairs]))
        return
    sections = []
    extra = _extra_sets(service, args.kestrel)
    sets = [("Voltway tuning half (tuned on)", "voltway", tune), ("Brightbrew demo (tuned on)", "demo", demo)]
    if args.test:
        sets.insert(0, ("Voltway test half (held out, never tuned on)", "voltway",
                        load_golden(args.voltway / "questions_test.jsonl")))
    for title, kb_id, golden in sets + extra:
        reports = evaluate_by_language(service, kb_id, golden, answerer=extractive_answerer(service, kb_id))
        table = format_table(reports, TARGETS)
        sections.append(f"## {title}\n\n{table}\n")
        print(f"## {title}\n{table}\n")
        if args.misses:
            print(format_report(reports["all"]))
    text = (
        "# Knowledge answer quality\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC, embedder {service.embedder.model_id}, no LLM (extractive answers "
        "as the bot sends them). Retrieval hit@k counts what `/search` returns, so an abstention on an "
        "in-scope question is a miss; answer hit = the answer cites the expected document and contains its "
        "fact (case and width folded). Produced by `python bench/knowledge_eval.py --test`.\n\n"
        + "\n".join(sections)
    )
    if args.test:
        args.out.write_text(text, encoding="utf-8")


def _extra_sets(service: KnowledgeService, kestrel: Path | None) -> list[tuple[str, str, list[GoldenItem]]]:
    """Another help centre's tuning half, loaded into its own knowledge base (``--kestrel``)."""
    if kestrel is None:
        return []
    load_directory(service, "kestrel", kestrel / "docs")
    return [("Kestrel tuning half (checked, not tuned on)", "kestrel", load_golden(kestrel / "questions_tune.jsonl"))]


if __name__ == "__main__":
    main()
