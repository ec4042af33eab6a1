"""The claim check on a help centre it was not written against: Voltway (knowledge/eval/voltway,
test half only). For each in-scope question whose fact holds a number, the sentence of the
expected document that states the fact is a faithful answer, and the same sentence with that
number changed is a wrong one; the passages are the document's sections. Prints the share of
faithful answers kept (each false alarm costs a good answer its model wording), the share of
wrong ones caught, and the time of one check.

    python bench/grounding_bench.py
"""

from __future__ import annotations

import json
import re
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bots.grounding import ground_answer  # noqa: E402
from bots.ports import Passage  # noqa: E402
from bots.text import split_sentences  # noqa: E402
from knowledge.loaders import parse_document  # noqa: E402
from knowledge.settings import KnowledgeSettings  # noqa: E402

VOLTWAY = ROOT / "knowledge" / "eval" / "voltway"


def passages(stem: str) -> list[Passage]:
    path = next(p for p in (VOLTWAY / "docs").iterdir() if p.stem == stem)
    doc = parse_document(path.read_bytes(), path.name, None, KnowledgeSettings())
    out = [
        Passage(f"{stem}-{i}", stem, doc.title, doc.source, " > ".join(s.heading_path), s.text, 0.9)
        for i, s in enumerate(doc.sections)
    ]
    out += [
        Passage(f"{stem}-qa{i}", stem, doc.title, doc.source, qa.question, qa.answer, 0.9)
        for i, qa in enumerate(doc.faq)
    ]
    return out


def bump(match: re.Match[str]) -> str:
    n = match.group(0)
    return str(int(n) + 1) if n.isdigit() else f"{float(n) + 1:g}"


def main() -> None:
    kept = caught = cases = 0
    misses: list[str] = []
    alarms: list[str] = []
    elapsed = 0.0
    for line in (VOLTWAY / "questions_test.jsonl").read_text().splitlines():
        q = json.loads(line)
        fact = unicodedata.normalize("NFKC", q.get("fact") or "")
        if q["out_of_scope"] or not re.search(r"\d", fact):
            continue
        ps = passages(q["expected_document"])
        sentence = next(
            (
                s
                for p in ps
                for s in split_sentences(unicodedata.normalize("NFKC", p.text))
                if fact.casefold() in s.casefold()
            ),
            None,
        )
        if sentence is None:
            continue
        start = sentence.casefold().index(fact.casefold())
        wrong_fact = re.sub(r"\d+(?:\.\d+)?", bump, sentence[start : start + len(fact)], count=1)
        wrong = sentence[:start] + wrong_fact + sentence[start + len(fact) :]
        cases += 1
        t0 = time.perf_counter()
        good = ground_answer(sentence, ps, question=q["question"])
        bad = ground_answer(wrong, ps, question=q["question"])
        elapsed += time.perf_counter() - t0
        if good.report.ok:
            kept += 1
        else:
            alarms.append(f"{q['id']}: {good.report.reason_code}: {sentence[:100]}")
        if not bad.report.ok:
            caught += 1
        else:
            misses.append(f"{q['id']}: {wrong[:100]}")
    print(f"Voltway test half, {cases} in-scope questions whose fact holds a number")
    print(f"faithful answers kept:  {kept}/{cases} = {kept / max(cases, 1):.3f}   (target 1.000)")
    print(f"changed numbers caught: {caught}/{cases} = {caught / max(cases, 1):.3f}   (target 1.000)")
    print(f"one check: {elapsed / max(2 * cases, 1) * 1e3:.2f} ms (a document's sections as passages)")
    for a in alarms[:10]:
        print("  false alarm", a)
    for m in misses[:10]:
        print("  missed     ", m)


if __name__ == "__main__":
    main()
