"""Check the Voltway held-out set against the loaders: every file parses, every question names a
document the loaders produce, and every `fact` is in that document after normalisation.

Run from the repository root: ``python -m knowledge.eval.voltway.validate``.
"""

import json
import random
import sys
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from knowledge.loaders import parse_document
from knowledge.settings import KnowledgeSettings

HERE = Path(__file__).parent
DOCS = HERE / "docs"
QUESTION_FILES = ("questions_tune.jsonl", "questions_test.jsonl")
HANDOFF_DIR = HERE.parents[2] / "bots" / "data" / "heldout"
HANDOFF_FILES = ("handoff_tune.jsonl", "handoff_test.jsonl")
_HANDOFF_KEYS = {"id", "lang", "category", "history", "text", "best_score", "offered_human_before", "user_attributes"}


def normalise(text: str) -> str:
    """How a `fact` is matched: NFKC, case-folded, with every whitespace character removed (so
    "100 %" matches "100%" and "6 小时" matches "6小时")."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def document_texts() -> dict[str, str]:
    """Document id (the file stem, as ``parley kb`` and the demo loader name them) to its text."""
    settings = KnowledgeSettings()
    texts: dict[str, str] = {}
    for path in sorted(DOCS.iterdir()):
        if path.name.startswith("__"):
            continue
        parsed = parse_document(path.read_bytes(), path.name, None, settings)
        parts = [s.text for s in parsed.sections] + [f"{qa.question}\n{qa.answer}" for qa in parsed.faq]
        texts[path.stem] = "\n".join(parts)
    return texts


def _rows(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"{path.name}:{number}: not an object")
            rows.append(row)
    return rows


def check_questions(texts: dict[str, str]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for name in QUESTION_FILES:
        counts: Counter[tuple[str, bool]] = Counter()
        for row in _rows(HERE / name):
            question, doc, fact = row["question"], row["expected_document"], row.get("fact")
            if question in seen:
                problems.append(f"{name}: duplicate question {question!r}")
            seen.add(question)
            oos = bool(row.get("out_of_scope"))
            counts[(row["lang"], oos)] += 1
            if oos:
                if doc is not None or fact is not None:
                    problems.append(f"{name}: out-of-scope {question!r} names a document or fact")
                continue
            if doc not in texts:
                problems.append(f"{name}: {question!r}: no document {doc!r}")
            elif not fact or normalise(fact) not in normalise(texts[doc]):
                problems.append(f"{name}: {question!r}: fact {fact!r} not in {doc}")
        print(name, dict(sorted(counts.items())))
    return problems


def check_handoff() -> list[str]:
    problems: list[str] = []
    for name in HANDOFF_FILES:
        path = HANDOFF_DIR / name
        counts: Counter[tuple[str, bool]] = Counter()
        for row in _rows(path):
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


def _halves(rows: list[dict[str, Any]], keys: tuple[str, ...], seed: str) -> tuple[set[str], set[str]]:
    """The README's split: per stratum, sort by id, shuffle with a string seed, first half to tune."""
    strata: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        strata.setdefault(tuple(str(row[k]) for k in keys), []).append(row)
    tune: set[str] = set()
    test: set[str] = set()
    for key, items in strata.items():
        items.sort(key=lambda r: str(r["id"]))
        random.Random(":".join((seed, *key))).shuffle(items)
        half = len(items) // 2
        tune.update(r["id"] for r in items[:half])
        test.update(r["id"] for r in items[half:])
    return tune, test


def check_split(files: tuple[Path, Path], keys: tuple[str, ...], seed: str) -> list[str]:
    tune_rows = [r for r in _rows(files[0]) if "_settings" not in r]
    test_rows = [r for r in _rows(files[1]) if "_settings" not in r]
    tune, test = _halves(tune_rows + test_rows, keys, seed)
    if tune == {r["id"] for r in tune_rows} and test == {r["id"] for r in test_rows}:
        return []
    return [f"{files[0].name}/{files[1].name}: not the split the README describes"]


def main() -> int:
    texts = document_texts()
    print(f"{len(texts)} documents")
    problems = check_questions(texts)
    question_files = (HERE / QUESTION_FILES[0], HERE / QUESTION_FILES[1])
    problems += check_split(question_files, ("lang", "out_of_scope", "doc_lang"), "voltway-11")
    if all((HANDOFF_DIR / n).exists() for n in HANDOFF_FILES):
        problems += check_handoff()
        handoff_files = (HANDOFF_DIR / HANDOFF_FILES[0], HANDOFF_DIR / HANDOFF_FILES[1])
        problems += check_split(handoff_files, ("lang", "category"), "voltway-handoff-11")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
