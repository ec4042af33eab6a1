"""The Sunmere held-out set stays consistent with the loaders and the evaluator: every fact is in
its document as the loaders parse it, the halves are the documented split, the counts hold; and the
shared validator reports what is wrong in a set."""

import json
from collections import Counter
from pathlib import Path

import pytest

from knowledge.eval import validate as shared
from knowledge.eval.sunmere import validate


def test_sunmere_set_validates(capsys: pytest.CaptureFixture[str]) -> None:
    code = validate.main()
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.rstrip().endswith("OK")
    assert "'documents en': 23" in out and "'documents zh': 12" in out


def _row(n: int, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {"id": f"en-in-{n:03d}", "lang": "en", "question": f"battery price {n}",
                              "expected_document": "home-batteries", "fact": "£4,900", "out_of_scope": False,
                              "doc_lang": "en"}
    return row | fields


def _write(directory: Path, tune: list[dict[str, object]], test: list[dict[str, object]]) -> None:
    for name, rows in zip(shared.QUESTION_FILES, (tune, test), strict=True):
        (directory / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def test_wrong_fact_language_repeats_and_oos_fields_are_reported(tmp_path: Path) -> None:
    rows = [
        _row(1),
        _row(2, fact="£4,990"),
        _row(3, doc_lang="zh"),
        _row(4, question="battery price 1"),
        _row(1, question="another"),
        _row(5, expected_document="no-such-page"),
        {"id": "en-oos-001", "lang": "en", "question": "wind turbine", "expected_document": None,
         "fact": "£1", "out_of_scope": True, "doc_lang": None, "oos_kind": "near_miss"},
        {"id": "en-in-006", "lang": "en", "question": "no fact field"},
    ]
    _write(tmp_path, rows, [])
    counts: Counter[str] = Counter()
    texts = {"home-batteries": "Sunmere Store 10: £4,900 fitted with solar."}
    problems = shared.check_questions(texts, counts, tmp_path)
    assert len(problems) == 7, problems
    assert "'£4,990' not in home-batteries" in problems[0]
    assert "doc_lang 'zh'" in problems[1]
    assert "duplicate question 'battery price 1'" in problems[2]
    assert "duplicate id en-in-001" in problems[3]
    assert "no document 'no-such-page'" in problems[4]
    assert "names a document, fact or doc_lang" in problems[5]
    assert "missing" in problems[6]
    assert counts["in scope en"] == 6 and counts["out of scope near_miss"] == 1


def test_a_fact_is_matched_after_the_evaluators_folding(tmp_path: Path) -> None:
    _write(tmp_path, [_row(1, fact="ＳＴＯＲＥ  10")], [])
    assert shared.check_questions({"home-batteries": "the Store 10"}, Counter(), tmp_path) == []


def test_halves_that_are_not_the_documented_split_are_reported(tmp_path: Path) -> None:
    rows = [_row(n) for n in range(1, 9)]
    tune_ids, _ = shared.halves(rows, validate.SUNMERE.strata, validate.SUNMERE.seed)
    tune = [r for r in rows if r["id"] in tune_ids]
    test = [r for r in rows if r["id"] not in tune_ids]
    _write(tmp_path, tune, test)
    files = (tmp_path / shared.QUESTION_FILES[0], tmp_path / shared.QUESTION_FILES[1])
    assert len(tune) == 4
    assert shared.check_split(files, validate.SUNMERE.strata, validate.SUNMERE.seed) == []
    _write(tmp_path, tune[1:], [*test, tune[0]])
    assert shared.check_split(files, validate.SUNMERE.strata, validate.SUNMERE.seed) != []


def test_counts_below_the_floors_are_reported() -> None:
    counts = Counter({"documents en": 23, "documents zh": 10, "in scope": 170, "in scope en": 110,
                      "in scope zh": 60, "cross-lingual en -> zh": 5, "cross-lingual zh -> en": 5,
                      "out of scope": 64, "out of scope en": 40, "out of scope zh": 24,
                      "out of scope near_miss": 31})
    problems = shared.check_counts(counts, validate.SUNMERE.minimum)
    assert problems == ["documents zh: 10 < 11", "fewer than half of the out-of-scope questions are near misses"]
