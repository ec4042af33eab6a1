"""The Kestrel held-out set stays consistent with the loaders and the evaluator: every fact is in
its document as the loaders parse it, the halves are the documented split, the counts hold."""

import json
from collections import Counter
from pathlib import Path

import pytest

from knowledge.eval.kestrel import validate


def test_kestrel_set_validates(capsys: pytest.CaptureFixture[str]) -> None:
    code = validate.main()
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.rstrip().endswith("OK")


def test_a_fact_missing_from_its_document_is_reported(tmp_path: Path) -> None:
    row = {"id": "en-in-001", "lang": "en", "question": "late payment fee", "expected_document": "billing",
           "fact": "£7.60", "out_of_scope": False, "doc_lang": "en"}
    good = dict(row, id="en-in-002", question="late fee?", fact="£7.50")
    wrong_lang = dict(row, id="en-in-003", question="fee late", fact="£7.50", doc_lang="zh")
    lines = "".join(json.dumps(r) + "\n" for r in (row, good, wrong_lang))
    for name in validate.QUESTION_FILES:
        (tmp_path / name).write_text(lines if name.endswith("tune.jsonl") else "", encoding="utf-8")
    problems = validate.check_questions({"billing": "A late payment fee of £7.50 applies."}, Counter(), tmp_path)
    assert len(problems) == 2
    assert "'£7.60' not in billing" in problems[0]
    assert "doc_lang 'zh'" in problems[1]
