"""Answer quality on the help centres we have, per language, beside the targets of QUALITY.md.

    python bench/knowledge_eval.py --calibrate          # fit the scope model (demo + all of Voltway)
    python bench/knowledge_eval.py                      # report demo and Voltway
    python bench/knowledge_eval.py --kestrel knowledge/eval/kestrel            # + Kestrel's tuning half
    python bench/knowledge_eval.py --kestrel knowledge/eval/kestrel --kestrel-half test --write
                                                        # the one held-out reporting run

The demo set (Brightbrew) and both halves of Voltway are tuned on (Voltway's test half was
reported once, then counted as seen); a help centre the scope model was never fitted on is what
says whether a change carries over. Writes bench/results/knowledge_eval.md.
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
from server.agent.knowledge import extractive_answerer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "knowledge_eval.md"
TARGETS = {"hit5": "≥ 0.95", "answer": "≥ 0.85 per language", "oos": "≥ 0.90"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voltway", type=Path, default=ROOT / "knowledge" / "eval" / "voltway")
    parser.add_argument("--kestrel", "--heldout", type=Path, default=None,
                        help="a held-out help centre (Kestrel, Sunmere: a folder with docs/ and question halves)")
    parser.add_argument("--embedder", default="use", choices=["use", "minilm"])
    parser.add_argument("--calibrate", action="store_true", help="fit and print the scope model")
    parser.add_argument("--no-answers", action="store_true", help="retrieval and abstention only (fast)")
    parser.add_argument("--misses", action="store_true")
    parser.add_argument("--kestrel-half", "--half", choices=["tune", "test"], default="tune",
                        help="which half to report: test is the one held-out reporting run")
    parser.add_argument("--write", action="store_true", help="write the tables to --out")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    settings = KnowledgeSettings()
    service = KnowledgeService(ChromaStore.ephemeral(), default_embedder(settings, args.embedder), settings)
    start = time.perf_counter()
    load_demo(service, "demo")
    load_directory(service, "voltway", args.voltway / "docs")
    if args.kestrel is not None:
        load_directory(service, "kestrel", args.kestrel / "docs")
    print(f"loaded the help centres in {time.perf_counter() - start:.0f} s ({service.embedder.model_id})")
    demo = load_golden(GOLDEN_PATH)
    voltway = load_golden(args.voltway / "questions_tune.jsonl") + load_golden(args.voltway / "questions_test.jsonl")
    if args.calibrate:
        pairs = collect_signals(service, "demo", demo) + collect_signals(service, "voltway", voltway)
        print("fitted:", fit([s for s, _ in pairs], [y for _, y in pairs]))
        return
    sets = [("Brightbrew demo (fitted on)", "demo", demo), ("Voltway, both halves (fitted on)", "voltway", voltway)]
    if args.kestrel is not None:
        name = args.kestrel.resolve().name.capitalize()
        title = {"tune": f"{name} tuning half (never fitted on; looked at)",
                 "test": f"{name} test half (held out: never read, fitted or looked at)"}[args.kestrel_half]
        sets.insert(0, (title, "kestrel", load_golden(args.kestrel / f"questions_{args.kestrel_half}.jsonl")))
    sections = []
    for title, kb_id, golden in sets:
        answerer = None if args.no_answers else extractive_answerer(service, kb_id)
        reports = evaluate_by_language(service, kb_id, golden, answerer=answerer)
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
        "fact (case and width folded). Produced by `python bench/knowledge_eval.py`.\n\n"
        + "\n".join(sections)
    )
    if args.write:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
