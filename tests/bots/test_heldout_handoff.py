"""The held-out handoff sets stay well-formed: the shared check (bots/data/heldout/validate.py)
passes on the shipped Sunmere, Kestrel and Voltway halves and rejects a copy whose label
contradicts its category, whose halves were reshuffled, whose score is not the seeded draw or that
repeats another set's text. The Sunmere set has the size, shares, categories and split its README
promises. Parley's handoff policy is never run on these turns here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELDOUT = ROOT / "bots" / "data" / "heldout"
SCRIPT = HELDOUT / "validate.py"


def _load_validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("heldout_validate", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


validate = _load_validator()
SUNMERE = validate.SETS["sunmere"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False)


def halves(name: str) -> dict[str, list[dict[str, Any]]]:
    problems: list[str] = []
    out = {half: validate.read(path, problems) for half, path in validate.SETS[name].paths().items()}
    assert problems == []
    return out


def write(tmp_path: Path, parts: dict[str, list[dict[str, Any]]]) -> tuple[Path, Path]:
    head = json.dumps({"_settings": validate.SETTINGS})
    paths = []
    for half, rows in parts.items():
        path = tmp_path / f"{half}.jsonl"
        path.write_text("\n".join([head, *(json.dumps(r, ensure_ascii=False) for r in rows)]) + "\n", encoding="utf-8")
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.parametrize("name", ["sunmere", "kestrel", "voltway"])
def test_the_shipped_halves_pass(name: str) -> None:
    res = run(name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PROBLEMS" not in res.stdout and "FAIL" not in res.stdout


def test_an_unknown_set_is_a_usage_error() -> None:
    res = run("nosuchset")
    assert res.returncode == 2 and "usage" in res.stdout


@pytest.mark.parametrize("name", ["sunmere", "kestrel"])
def test_a_flipped_label_is_rejected(tmp_path: Path, name: str) -> None:
    parts = halves(name)
    row = parts["tune"][0]
    row["handoff"] = not row["handoff"]
    res = run(name, *write(tmp_path, parts))
    assert res.returncode == 1
    assert f"{row['id']}: category {row['category']} implies" in res.stdout


@pytest.mark.parametrize("name", ["sunmere", "kestrel", "voltway"])
def test_a_row_moved_between_halves_is_rejected(tmp_path: Path, name: str) -> None:
    parts = halves(name)
    parts["test"].append(parts["tune"].pop(0))
    res = run(name, *write(tmp_path, parts))
    assert res.returncode == 1
    assert "not the documented stratified split" in res.stdout


def test_a_score_that_is_not_the_seeded_draw_is_rejected() -> None:
    row = dict(halves("sunmere")["test"][0])
    row["best_score"] = round(row["best_score"] + 0.01, 2)
    problems: list[str] = []
    validate.check_labels(SUNMERE, row, problems)
    assert any("is not the seeded draw" in p for p in problems)


def test_a_negative_offering_a_person_above_the_threshold_is_rejected() -> None:
    row = next(r for r in halves("sunmere")["tune"] if r["action"] == "answer" and r["category"] == "ordinary")
    problems: list[str] = []
    validate.check_labels(SUNMERE, {**row, "action": "offer_human"}, problems)
    assert problems == [f"{row['id']}: action 'offer_human', expected answer"]


def test_sunmere_repeats_no_text_of_the_other_sets() -> None:
    parts = halves("sunmere")
    kestrel_text = halves("kestrel")["test"][0]["text"]
    assert validate.repeated_texts(SUNMERE, [r for part in parts.values() for r in part]) == []
    copied = {**parts["tune"][0], "text": kestrel_text.upper() + "!"}
    assert validate.repeated_texts(SUNMERE, [copied]) == [
        f"{copied['id']}: text {copied['text']!r} is already in {', '.join(SUNMERE.distinct_from)}"]


def test_sunmere_size_shares_and_categories() -> None:
    parts = halves("sunmere")
    rows = [r for part in parts.values() for r in part]
    figures = validate.shares(rows)
    assert figures["turns"] >= 460
    assert 0.50 <= figures["en"] <= 0.60  # roughly 55 % English, 45 % Chinese
    assert 0.40 <= figures["handoff"] <= 0.50
    assert figures["multi"] >= 0.30
    kestrel = {r["category"] for part in halves("kestrel").values() for r in part}
    per_stratum = Counter((r["lang"], r["category"]) for r in rows)
    assert {c for _, c in per_stratum} == kestrel == set(validate.CATEGORIES)
    # every category has cases in both languages and in both halves
    assert all(per_stratum[(lang, c)] >= 2 for lang in ("en", "zh") for c in kestrel)
    # the weight is on what generalisation needs: hazards, legal threats, requests, hard negatives
    for lang in ("en", "zh"):
        for category in ("safety_hazard", "explicit_request", "about_humans", "other_sense", "safety_question"):
            assert per_stratum[(lang, category)] >= 14, (lang, category)
    multi = Counter(r["category"] for r in rows if r["history"])
    assert all(2 <= len(r["history"]) <= 6 for r in rows if r["history"])
    assert sum(multi[c] for c in ("explicit_request", "safety_hazard", "legal_complaint", "frustration",
                                  "about_humans", "mild_annoyance")) >= 40  # not only where a history is required


def test_sunmere_split_is_half_and_half_per_stratum() -> None:
    parts = halves("sunmere")
    rows = [r for part in parts.values() for r in part]
    assert validate.resplit(SUNMERE, rows) == {r["id"] for r in parts["tune"]}
    tune = Counter((r["lang"], r["category"]) for r in parts["tune"])
    test = Counter((r["lang"], r["category"]) for r in parts["test"])
    assert set(tune) == set(test)
    assert all(test[s] - tune[s] in (0, 1) for s in test)  # an odd stratum gives test the extra case


def test_the_sunmere_test_half_is_refused_for_training() -> None:
    from bots.errors import ConfigError
    from bots.handoff_training import check_trainable_path

    check_trainable_path(HELDOUT / SUNMERE.tune)
    with pytest.raises(ConfigError, match="reporting only"):
        check_trainable_path(HELDOUT / SUNMERE.test)
