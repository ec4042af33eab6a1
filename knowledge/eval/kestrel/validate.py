"""Check the Kestrel held-out set against the loaders and the evaluator: every file parses, every
question names a document the loaders produce, every `fact` is in that document under the
evaluator's own folding, the halves are the README's split, and the counts meet issue 11.

Run from the repository root: ``python -m knowledge.eval.kestrel.validate``.
"""

import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from knowledge.evaluation import normalise_fact
from knowledge.loaders import parse_document
from knowledge.settings import KnowledgeSettings

HERE = Path(__file__).parent
DOCS = HERE / "docs"
QUESTION_FILES = ("questions_tune.jsonl", "questions_test.jsonl")
SEED = "kestrel-11"
STRATA = ("lang", "out_of_scope", "doc_lang")
_KEYS = {"id", "lang", "question", "expected_document", "fact", "out_of_scope", "doc_lang"}
# The floor each count must reach (the brief of this set; issue 11 asks for 20 EN / 10 ZH documents,
# 150 questions with a fact and 50 out of scope).
MINIMUM = {"documents en": 22, "documents zh": 11, "in scope": 160, "in scope en": 100, "in scope zh": 55,
           "out of scope": 60, "out of scope en": 35, "out of scope zh": 25}


def document_lang(stem: str) -> str:
    return "zh" if stem.startswith("zh-") else "en"


def document_texts() -> dict[str, str]:
    """Document id (the file stem, as ``parley kb`` and ``load_directory`` name them) to its text."""
    settings = KnowledgeSettings()
    texts: dict[str, str] = {}
    for path in sorted(DOCS.iterdir()):
        if path.name.startswith("__"):
            continue
        if path.stem in texts:
            raise ValueError(f"two documents have the id {path.stem!r}: the file stem must be unique")
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


def check_questions(texts: dict[str, str], counts: Counter[str], directory: Path = HERE) -> list[str]:
    problems: list[str] = []
    seen_questions: set[str] = set()
    seen_ids: set[str] = set()
    for name in QUESTION_FILES:
        half: Counter[tuple[str, str]] = Counter()
        for row in _rows(directory / name):
            if missing := _KEYS - row.keys():
                problems.append(f"{name}: {row.get('id')}: missing {sorted(missing)}")
                continue
            question, doc, fact, lang = row["question"], row["expected_document"], row["fact"], row["lang"]
            if question in seen_questions:
                problems.append(f"{name}: duplicate question {question!r}")
            if row["id"] in seen_ids:
                problems.append(f"{name}: duplicate id {row['id']}")
            seen_questions.add(question)
            seen_ids.add(row["id"])
            if row["out_of_scope"]:
                half[(lang, "out of scope")] += 1
                counts["out of scope"] += 1
                counts[f"out of scope {lang}"] += 1
                counts[f"out of scope {row.get('oos_kind')}"] += 1
                if doc is not None or fact is not None or row["doc_lang"] is not None:
                    problems.append(f"{name}: out-of-scope {question!r} names a document, fact or doc_lang")
                continue
            half[(lang, "in scope")] += 1
            counts["in scope"] += 1
            counts[f"in scope {lang}"] += 1
            if doc not in texts:
                problems.append(f"{name}: {question!r}: no document {doc!r}")
                continue
            if row["doc_lang"] != document_lang(doc):
                problems.append(f"{name}: {question!r}: doc_lang {row['doc_lang']!r} but {doc} is {document_lang(doc)}")
            if row["doc_lang"] != lang:
                counts[f"cross-lingual {lang} -> {row['doc_lang']}"] += 1
            if not isinstance(fact, str) or not fact or normalise_fact(fact) not in normalise_fact(texts[doc]):
                problems.append(f"{name}: {question!r}: fact {fact!r} not in {doc}")
        print(name, {f"{k[0]} {k[1]}": v for k, v in sorted(half.items())})
    return problems


def _halves(rows: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    """The README's split: per stratum, sort by id, shuffle with a string seed, first half to tune."""
    strata: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        strata.setdefault(tuple(str(row[k]) for k in STRATA), []).append(row)
    tune: set[str] = set()
    test: set[str] = set()
    for key, items in strata.items():
        items.sort(key=lambda r: str(r["id"]))
        random.Random(":".join((SEED, *key))).shuffle(items)
        half = len(items) // 2
        tune.update(r["id"] for r in items[:half])
        test.update(r["id"] for r in items[half:])
    return tune, test


def check_split() -> list[str]:
    tune_rows, test_rows = (_rows(HERE / name) for name in QUESTION_FILES)
    tune, test = _halves(tune_rows + test_rows)
    if tune == {r["id"] for r in tune_rows} and test == {r["id"] for r in test_rows}:
        return []
    return ["questions_tune.jsonl/questions_test.jsonl: not the split the README describes"]


def check_counts(counts: Counter[str]) -> list[str]:
    problems = [f"{key}: {counts[key]} < {floor}" for key, floor in MINIMUM.items() if counts[key] < floor]
    if 2 * counts["out of scope near_miss"] < counts["out of scope"]:
        problems.append("fewer than half of the out-of-scope questions are near misses")
    return problems


def main() -> int:
    texts = document_texts()
    counts: Counter[str] = Counter()
    formats: Counter[tuple[str, str]] = Counter()
    for path in DOCS.iterdir():
        if path.stem in texts:
            counts[f"documents {document_lang(path.stem)}"] += 1
            formats[(document_lang(path.stem), path.suffix)] += 1
    print(f"{len(texts)} documents", {f"{k[0]} {k[1]}": v for k, v in sorted(formats.items())})
    problems = check_questions(texts, counts)
    problems += check_split()
    problems += check_counts(counts)
    print("counts", dict(sorted(counts.items())))
    for problem in problems:
        print(problem)
    print("OK" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
