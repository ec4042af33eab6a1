from pathlib import Path

from click.testing import CliRunner

import server.cli  # noqa: F401  (plugs the bot's extractive answers into `kb eval`)
from knowledge.cli import kb


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(kb, ["--data-dir", str(data_dir), *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_create_ingest_search_eval(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kettle.md").write_text("# Kettle KX-42\n\nThe KX-42 kettle holds 1.7 litres and boils in 3 minutes.\n")
    (docs / "faq.csv").write_text("question,answer\nDo you ship to Norway?,Yes within 5 days.\n")
    (docs / "bad.exe").write_bytes(b"MZ\x00\x00")
    golden = tmp_path / "golden.jsonl"
    golden.write_text(
        '{"question": "How big is the KX-42 kettle?", "expected_document": "kettle"}\n'
        '{"question": "Who painted the Mona Lisa?", "expected_document": null}\n'
    )
    data = tmp_path / "data"

    assert run(data, "create", "help")[0] == 0
    code, out = run(data, "create", "help")
    assert code == 1 and "already exists" in out
    code, out = run(data, "ingest", "help", str(docs))
    assert code == 1  # bad.exe failed, the rest went in
    assert "ready    kettle" in out and "ready    faq" in out and "bad" in out
    code, out = run(data, "ingest", "help", str(docs / "kettle.md"))
    assert "skipped  kettle: same content as kettle" in out
    code, out = run(data, "search", "help", "KX-42 capacity")
    assert code == 0 and "kettle" in out and "1.7 litres" in out
    code, out = run(data, "search", "help", "Who painted the Mona Lisa?")
    assert "No answer" in out
    code, out = run(data, "eval", "help", str(golden))
    assert code == 0 and "hit@5              1.000" in out and "abstention (OOS)   1.000" in out
    code, out = run(data, "search", "missing", "x")
    assert code == 1 and "not_found" in out


def test_eval_reports_answers_per_language_on_a_directory(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "delivery.md").write_text(
        "# Delivery\n\nHome / Help / Delivery\n\nStandard delivery takes **3 to 5 working days** and costs €4.95.\n"
    )
    (docs / "zh-battery.md").write_text(
        "# 电池安全\n\n电池鼓包时请立即停止充电，并联系售后，我们会在 3 个工作日内上门回收。\n"
    )
    golden = tmp_path / "golden.jsonl"
    golden.write_text(
        '{"question": "How long does standard delivery take?", "expected_document": "delivery",'
        ' "fact": "3 to 5 working days", "lang": "en"}\n'
        '{"question": "电池鼓包了，你们几天内上门回收？", "expected_document": "zh-battery",'
        ' "fact": "3 个工作日", "lang": "zh"}\n'
        '{"question": "Who painted the Mona Lisa?", "expected_document": null, "lang": "en"}\n'
    )
    code, out = run(tmp_path / "data", "eval", "voltway", str(golden), "--docs", str(docs))
    assert code == 0, out
    assert "| figure | en | zh | all |" in out
    assert "| answer hit (right document cited + fact) | 1.000 | 1.000 | 1.000 |" in out
    assert '| out of scope answered "shall I get a person?" | 1.000 | - | 1.000 |' in out
