"""The one validator of the held-out help centres (Voltway, Kestrel, Sunmere): every file parses
with the project's loaders, every question names a document they produce, every `fact` is in that
document under the set's folding, no question or id repeats, the halves are the README's split and
the counts reach the floors of the set's brief.

Each set's ``validate.py`` only describes itself with a :class:`HeldOutSet` and calls :func:`run`;
run one from the repository root, e.g. ``python -m knowledge.eval.sunmere.validate``.
"""

import json
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowledge.evaluation import normalise_fact
from knowledge.loaders import parse_document
from knowledge.settings import KnowledgeSettings

QUESTION_FILES = ("questions_tune.jsonl", "questions_test.jsonl")
STRATA = ("lang", "out_of_scope", "doc_lang")
KEYS = frozenset({"id", "lang", "question", "expected_document", "fact", "out_of_scope", "doc_lang"})


@dataclass(frozen=True)
class HeldOutSet:
    """What differs between the sets: where they live, the seed and strata of their split, how a fact
    is folded before it is looked for, and the floors their brief set (none if their brief gave none)."""

    directory: Path
    seed: str
    strata: tuple[str, ...] = STRATA
    normalise: Callable[[str], str] = normalise_fact
    minimum: Mapping[str, int] = field(default_factory=dict)

    @property
    def docs(self) -> Path:
        return self.directory / "docs"


def document_lang(stem: str) -> str:
    return "zh" if stem.startswith("zh-") else "en"


def document_texts(docs: Path) -> dict[str, str]:
    """Document id (the file stem, as ``parley kb`` and ``load_directory`` name them) to its text."""
    settings = KnowledgeSettings()
    texts: dict[str, str] = {}
    for path in sorted(docs.iterdir()):
        if path.name.startswith("__"):
            continue
        if path.stem in texts:
            raise ValueError(f"two documents have the id {path.stem!r}: the file stem must be unique")
        parsed = parse_document(path.read_bytes(), path.name, None, settings)
        parts = [s.text for s in parsed.sections] + [f"{qa.question}\n{qa.answer}" for qa in parsed.faq]
        texts[path.stem] = "\n".join(parts)
    return texts


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file (blank lines skipped)."""
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"{path.name}:{number}: not an object")
            rows.append(row)
    return rows


def _check_in_scope(
    row: dict[str, Any], texts: dict[str, str], counts: Counter[str], normalise: Callable[[str], str]
) -> list[str]:
    question, doc, fact, lang = row["question"], row["expected_document"], row["fact"], row["lang"]
    counts["in scope"] += 1
    counts[f"in scope {lang}"] += 1
    if doc not in texts:
        return [f"{question!r}: no document {doc!r}"]
    problems: list[str] = []
    if row["doc_lang"] != document_lang(doc):
        problems.append(f"{question!r}: doc_lang {row['doc_lang']!r} but {doc} is {document_lang(doc)}")
    if row["doc_lang"] != lang:
        counts[f"cross-lingual {lang} -> {row['doc_lang']}"] += 1
    if not isinstance(fact, str) or not fact or normalise(fact) not in normalise(texts[doc]):
        problems.append(f"{question!r}: fact {fact!r} not in {doc}")
    return problems


def check_questions(
    texts: dict[str, str], counts: Counter[str], directory: Path, normalise: Callable[[str], str] = normalise_fact
) -> list[str]:
    """Every row of both halves: its fields, no repeats, and its document and fact (in scope) or
    none of them (out of scope). Adds to ``counts``; prints each half's counts."""
    problems: list[str] = []
    seen_questions: set[str] = set()
    seen_ids: set[str] = set()
    for name in QUESTION_FILES:
        half: Counter[tuple[str, str]] = Counter()
        for row in read_rows(directory / name):
            if missing := KEYS - row.keys():
                problems.append(f"{name}: {row.get('id')}: missing {sorted(missing)}")
                continue
            question, lang = row["question"], row["lang"]
            if question in seen_questions:
                problems.append(f"{name}: duplicate question {question!r}")
            if row["id"] in seen_ids:
                problems.append(f"{name}: duplicate id {row['id']}")
            seen_questions.add(question)
            seen_ids.add(row["id"])
            if not row["out_of_scope"]:
                half[(lang, "in scope")] += 1
                problems += [f"{name}: {p}" for p in _check_in_scope(row, texts, counts, normalise)]
                continue
            half[(lang, "out of scope")] += 1
            counts["out of scope"] += 1
            counts[f"out of scope {lang}"] += 1
            counts[f"out of scope {row.get('oos_kind')}"] += 1
            if row["expected_document"] is not None or row["fact"] is not None or row["doc_lang"] is not None:
                problems.append(f"{name}: out-of-scope {question!r} names a document, fact or doc_lang")
        print(name, {f"{k[0]} {k[1]}": v for k, v in sorted(half.items())})
    return problems


def halves(rows: list[dict[str, Any]], keys: tuple[str, ...], seed: str) -> tuple[set[str], set[str]]:
    """The README's split: per stratum (the values of ``keys``, a missing key counting as ``None``),
    sort by id, shuffle with a string seed, first half to tune."""
    strata: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        strata.setdefault(tuple(str(row.get(k)) for k in keys), []).append(row)
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
    """The two files are exactly :func:`halves` of their rows (a ``_settings`` line is skipped)."""
    tune_rows = [r for r in read_rows(files[0]) if "_settings" not in r]
    test_rows = [r for r in read_rows(files[1]) if "_settings" not in r]
    tune, test = halves(tune_rows + test_rows, keys, seed)
    if tune == {r["id"] for r in tune_rows} and test == {r["id"] for r in test_rows}:
        return []
    return [f"{files[0].name}/{files[1].name}: not the split the README describes"]


def check_counts(counts: Counter[str], minimum: Mapping[str, int]) -> list[str]:
    problems = [f"{key}: {counts[key]} < {floor}" for key, floor in minimum.items() if counts[key] < floor]
    if minimum and 2 * counts["out of scope near_miss"] < counts["out of scope"]:
        problems.append("fewer than half of the out-of-scope questions are near misses")
    return problems


def run(held: HeldOutSet, extra: Callable[[], list[str]] | None = None) -> int:
    """Check the set (and ``extra``, a set's own further checks); print counts, problems and ``OK``;
    the exit code."""
    texts = document_texts(held.docs)
    counts: Counter[str] = Counter()
    formats: Counter[tuple[str, str]] = Counter()
    for path in held.docs.iterdir():
        if path.stem in texts:
            counts[f"documents {document_lang(path.stem)}"] += 1
            formats[(document_lang(path.stem), path.suffix)] += 1
    print(f"{len(texts)} documents", {f"{k[0]} {k[1]}": v for k, v in sorted(formats.items())})
    problems = check_questions(texts, counts, held.directory, held.normalise)
    files = (held.directory / QUESTION_FILES[0], held.directory / QUESTION_FILES[1])
    problems += check_split(files, held.strata, held.seed)
    problems += check_counts(counts, held.minimum)
    if extra is not None:
        problems += extra()
    print("counts", dict(sorted(counts.items())))
    for problem in problems:
        print(problem)
    print("OK" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0
