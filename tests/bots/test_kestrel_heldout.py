"""The Kestrel held-out handoff halves stay well-formed: the check script passes on the shipped
files and rejects a copy whose label contradicts its category or whose halves were reshuffled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELDOUT = ROOT / "bots" / "data" / "heldout"
SCRIPT = HELDOUT / "validate_kestrel.py"
TUNE, TEST = HELDOUT / "kestrel_handoff_tune.jsonl", HELDOUT / "kestrel_handoff_test.jsonl"


def run(*paths: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, paths)], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False)


def test_the_shipped_halves_pass() -> None:
    res = run()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "PROBLEMS" not in res.stdout


def test_a_flipped_label_is_rejected(tmp_path: Path) -> None:
    lines = TUNE.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[1])
    row["handoff"] = not row["handoff"]
    lines[1] = json.dumps(row, ensure_ascii=False)
    bad = tmp_path / "tune.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = run(bad, TEST)
    assert res.returncode == 1
    assert f"{row['id']}: category {row['category']} implies" in res.stdout


def test_a_row_moved_between_halves_is_rejected(tmp_path: Path) -> None:
    tune = TUNE.read_text(encoding="utf-8").splitlines()
    test = TEST.read_text(encoding="utf-8").splitlines()
    moved = tune.pop(1)
    (tmp_path / "tune.jsonl").write_text("\n".join(tune) + "\n", encoding="utf-8")
    (tmp_path / "test.jsonl").write_text("\n".join([*test, moved]) + "\n", encoding="utf-8")
    res = run(tmp_path / "tune.jsonl", tmp_path / "test.jsonl")
    assert res.returncode == 1
    assert "not the documented stratified split" in res.stdout
