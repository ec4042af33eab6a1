"""Does the out-of-scope decision carry over to a help centre it was not fitted on?

    python bench/scope_cv.py              # leave one help centre out: fit on two, report the third
    python bench/scope_cv.py --calibrate  # the model fitted on all three (for knowledge/scope.py)

The help centres tuned on are the Brightbrew demo, Voltway (both halves) and Kestrel's tuning half.
Each is held out in turn: the scope model (``knowledge.scope.fit``) is fitted on the other two
and the held-out one is reported per language. Kestrel's test half is printed as a further check
for the fold that holds Kestrel out (it was reported twice before and is spent: the same help
centre as the tuning half, other questions). The figures are those of ``/search``: hit@5 counts an
abstention on an in-scope question as a miss. The model currently shipped is printed beside,
for the same questions (it was fitted on all three, so its figures are not held out).
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from knowledge.demo import GOLDEN_PATH, load_demo  # noqa: E402
from knowledge.embeddings import default_embedder  # noqa: E402
from knowledge.evaluation import GoldenItem, load_directory, load_golden  # noqa: E402
from knowledge.retrieval import Hit  # noqa: E402
from knowledge.scope import ScopeModel, ScopeSignals, fit, scope_model_for  # noqa: E402
from knowledge.service import KnowledgeService  # noqa: E402
from knowledge.settings import KnowledgeSettings  # noqa: E402
from knowledge.store import ChromaStore  # noqa: E402

EVAL = ROOT / "knowledge" / "eval"
TARGETS = "targets: hit@5 ≥ 0.95, out of scope abstained ≥ 0.90"


@dataclass(frozen=True, slots=True)
class Row:
    language: str
    in_scope: bool
    found_at: int | None
    """Rank of the expected document among the hits (whatever the scope decision)."""
    signals: ScopeSignals


def _rank(item: GoldenItem, hits: list[Hit]) -> int | None:
    for i, hit in enumerate(hits, start=1):
        if item.expected_document in (hit.document_id, hit.title, hit.source, Path(hit.source).stem):
            return i
    return None


def collect(service: KnowledgeService, kb_id: str, golden: list[GoldenItem]) -> list[Row]:
    neutral = ScopeModel((0.0,), 0.0)  # the decision is ignored: only the signals are kept
    rows = []
    for item in golden:
        found = service.retrieve(kb_id, item.question, 5, scope=neutral)
        if found.signals is None:
            continue
        rows.append(Row(item.language, item.expected_document is not None, _rank(item, found.hits), found.signals))
    return rows


def figures(model: ScopeModel, rows: list[Row], threshold: float) -> str:
    cells = []
    for language in ("en", "zh", "all"):
        chosen = [r for r in rows if language in ("all", r.language)]
        inside = [r for r in chosen if r.in_scope]
        outside = [r for r in chosen if not r.in_scope]
        kept = [model.probability(r.signals) >= threshold for r in inside]
        hit5 = sum(k and r.found_at is not None and r.found_at <= 5 for r, k in zip(inside, kept, strict=True))
        abstained = sum(model.probability(r.signals) < threshold for r in outside)
        cells.append(
            f"{language}: hit@5 {hit5 / max(1, len(inside)):.3f}, out of scope abstained "
            f"{abstained / max(1, len(outside)):.3f}, in scope abstained {1 - sum(kept) / max(1, len(inside)):.3f} "
            f"({len(inside)}/{len(outside)})"
        )
    return "; ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibrate", action="store_true", help="print the model fitted on all three")
    args = parser.parse_args()
    settings = KnowledgeSettings()
    service = KnowledgeService(ChromaStore.ephemeral(), default_embedder(settings, "use"), settings)
    load_demo(service, "demo")
    load_directory(service, "voltway", EVAL / "voltway" / "docs")
    load_directory(service, "kestrel", EVAL / "kestrel" / "docs")
    sets = {
        "demo": collect(service, "demo", load_golden(GOLDEN_PATH)),
        "voltway": collect(service, "voltway", load_golden(EVAL / "voltway" / "questions_tune.jsonl")
                           + load_golden(EVAL / "voltway" / "questions_test.jsonl")),
        "kestrel": collect(service, "kestrel", load_golden(EVAL / "kestrel" / "questions_tune.jsonl")),
    }
    check = collect(service, "kestrel", load_golden(EVAL / "kestrel" / "questions_test.jsonl"))
    everything = [r for rows in sets.values() for r in rows]
    if args.calibrate:
        print("fitted on all three:", fit([r.signals for r in everything], [r.in_scope for r in everything]))
        return
    threshold = settings.scope_probability
    shipped = scope_model_for(service.embedder.model_id)
    print(f"embedder {service.embedder.model_id}; in-scope probability threshold {threshold}; {TARGETS}")
    for held, rows in sets.items():
        train = [r for name, others in sets.items() if name != held for r in others]
        model = fit([r.signals for r in train], [r.in_scope for r in train])
        print(f"\n## {held} held out (fitted on {', '.join(n for n in sets if n != held)})")
        print(f"  held out      {figures(model, rows, threshold)}")
        if shipped is not None:
            print(f"  shipped model {figures(shipped, rows, threshold)}")
        if held == "kestrel":
            print(f"  kestrel test half (spent), held-out model: {figures(model, check, threshold)}")
            if shipped is not None:
                print(f"  kestrel test half (spent), shipped model:  {figures(shipped, check, threshold)}")


if __name__ == "__main__":
    main()
