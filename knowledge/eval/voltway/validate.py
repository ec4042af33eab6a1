"""Check the Voltway held-out set with the shared validator (:mod:`knowledge.eval.validate`): every
file parses, every question names a document the loaders produce, and every `fact` is in that
document after normalisation; plus the held-out handoff halves of ``bots/data/heldout``.

Run from the repository root: ``python -m knowledge.eval.voltway.validate``.
"""

import sys
import unicodedata
from collections import Counter
from pathlib import Path

from knowledge.eval.validate import HeldOutSet, check_split, read_rows, run

HERE = Path(__file__).parent
HANDOFF_DIR = HERE.parents[2] / "bots" / "data" / "heldout"
HANDOFF_FILES = ("handoff_tune.jsonl", "handoff_test.jsonl")
_HANDOFF_KEYS = {"id", "lang", "category", "history", "text", "best_score", "offered_human_before", "user_attributes"}


def normalise(text: str) -> str:
    """How a `fact` is matched: NFKC, case-folded, with every whitespace character removed (so
    "100 %" matches "100%" and "6 小时" matches "6小时")."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


VOLTWAY = HeldOutSet(directory=HERE, seed="voltway-11", normalise=normalise)


def check_handoff() -> list[str]:
    problems: list[str] = []
    for name in HANDOFF_FILES:
        counts: Counter[tuple[str, bool]] = Counter()
        for row in read_rows(HANDOFF_DIR / name):
            if "_settings" in row:
                continue
            missing = _HANDOFF_KEYS - row.keys()
            if missing or not isinstance(row.get("handoff"), bool):
                problems.append(f"{name}: {row.get('id')}: missing {sorted(missing)} or handoff not a bool")
            for turn in row.get("history", []):
                if turn.get("role") not in ("user", "bot") or not isinstance(turn.get("text"), str):
                    problems.append(f"{name}: {row.get('id')}: bad history turn {turn!r}")
            counts[(row["lang"], row["handoff"])] += 1
        print(name, dict(sorted(counts.items())))
    return problems


def _handoff() -> list[str]:
    if not all((HANDOFF_DIR / n).exists() for n in HANDOFF_FILES):
        return []
    files = (HANDOFF_DIR / HANDOFF_FILES[0], HANDOFF_DIR / HANDOFF_FILES[1])
    return check_handoff() + check_split(files, ("lang", "category"), "voltway-handoff-11")


def main() -> int:
    return run(VOLTWAY, _handoff)


if __name__ == "__main__":
    sys.exit(main())
