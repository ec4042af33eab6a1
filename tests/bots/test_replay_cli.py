from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bots.circuit import CircuitBreaker
from bots.cli import bots
from bots.config import HandoffSettings
from bots.pipeline import AnswerPipeline, Final, Handoff, Offer
from bots.replay import replay
from tests.bots.helpers import collect, ctx, retriever, terminal


async def _records() -> list[dict[str, object]]:
    pipeline = AnswerPipeline(retriever(), None, CircuitBreaker())
    out = []
    for text in [
        "How much is shipping to Canada?",
        "Do you sell boats?",
        "转人工",
        "This is ridiculous!!!",
        "When are refunds issued?",
    ]:
        last = terminal(await collect(pipeline, ctx(text)))
        assert isinstance(last, Final | Offer | Handoff)
        assert last.decision is not None
        out.append(last.decision.to_record())
    return out


async def test_replay_same_settings_changes_nothing() -> None:
    records = await _records()
    report = replay(json.loads(json.dumps(records)), HandoffSettings())
    assert report.total == 5 and report.changed == 0


async def test_replay_counts_changes_of_a_new_policy() -> None:
    records = await _records()
    stricter = HandoffSettings(offer_before_handoff=False, frustration_threshold=3)
    report = replay(records, stricter)
    assert report.changed == 2
    assert report.transitions["offer_human/no_evidence -> handoff/no_evidence"] == 1
    assert report.transitions["handoff/frustration -> answer/none"] == 1


async def test_cli_replay_and_eval(tmp_path: Path) -> None:
    records = await _records()
    log = tmp_path / "decisions.jsonl"
    log.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({"offer_before_handoff": False}), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(bots, ["replay", str(log), "--settings", str(settings)])
    assert res.exit_code == 0, res.output
    assert "decisions: 5" in res.output and "changed: 1" in res.output
    res = runner.invoke(bots, ["eval-handoff"])
    assert res.exit_code == 0, res.output
    precision = float(res.output.split("precision: ")[1].split()[0])
    recall = float(res.output.split("recall: ")[1].split()[0])
    assert precision >= 0.9 and recall >= 0.9
