"""Check the Kestrel held-out handoff halves and print their counts.

    PYTHONPATH=$PWD python bots/data/heldout/validate_kestrel.py [TUNE.jsonl TEST.jsonl]

Checks: the ``_settings`` first line, every field and its type, unique ids (across both halves),
id = ``{lang}-{category}-NN``, the label and ``action`` each category implies, histories that
alternate user/bot, the size and shares the brief asks for (>= 440 turns, ~55 % English, ~45 %
hand off, >= 25 % multi-turn), that ``best_score`` does not give the label away (AUC near 0.5),
that no turn (history and text) occurs twice, so none is in both halves, that the halves are the
documented stratified split, and that ``bots.evaluation.load_cases`` reads both files.
Exits 1 with every problem listed.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HALVES = {"tune": HERE / "kestrel_handoff_tune.jsonl", "test": HERE / "kestrel_handoff_test.jsonl"}
SETTINGS: dict[str, Any] = {"human_only_topics": [], "vip_attributes": {}}
FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "lang": str, "category": str, "history": list, "text": str, "best_score": float,
    "offered_human_before": bool, "user_attributes": dict, "handoff": bool, "action": str,
}
#: category -> the label it implies (True = hand off).
CATEGORIES = {
    "explicit_request": True, "callback_request": True, "safety_hazard": True, "legal_complaint": True,
    "frustration": True, "repeated_failure": True, "offer_accepted": True, "no_evidence_after_offer": True,
    "about_humans": False, "ordinary": False, "follow_up": False, "thanks": False, "safety_question": False,
    "other_sense": False, "mild_annoyance": False, "offer_declined": False, "no_evidence": False,
}
#: categories whose case only makes sense with a prior offer of a person / with a conversation.
OFFERED = {"offer_accepted", "offer_declined", "no_evidence_after_offer"}
MULTI_TURN_ONLY = {"repeated_failure", "follow_up"} | OFFERED
SCORE_THRESHOLD = 0.35  # the policy's default, for the evidence categories
CJK = re.compile(r"[\u4e00-\u9fff]")
SEED = "kestrel-handoff-11:{lang}:{category}"


def read(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines or json.loads(lines[0]) != {"_settings": SETTINGS}:
        problems.append(f"{path.name}: first line must be {{'_settings': {SETTINGS}}}")
    return [json.loads(ln) for ln in lines[1:]]


def check_row(row: dict[str, Any], problems: list[str]) -> None:  # noqa: C901 (one flat list of data checks)
    rid = row.get("id", "?")
    if set(row) != set(FIELDS):
        problems.append(f"{rid}: fields {sorted(set(row) ^ set(FIELDS))} missing or extra")
        return
    for name, kind in FIELDS.items():
        value = row[name]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            problems.append(f"{rid}: {name} is {type(value).__name__}, expected {kind}")
            return
    lang, category = row["lang"], row["category"]
    if lang not in ("en", "zh"):
        problems.append(f"{rid}: lang {lang!r}")
    if category not in CATEGORIES:
        problems.append(f"{rid}: unknown category {category!r}")
        return
    if not re.fullmatch(rf"{lang}-{category}-\d{{2}}", rid):
        problems.append(f"{rid}: id is not {lang}-{category}-NN")
    if not row["text"].strip():
        problems.append(f"{rid}: empty text")
    if bool(CJK.search(row["text"])) != (lang == "zh"):
        problems.append(f"{rid}: text is not in {lang}")
    if row["handoff"] is not CATEGORIES[category]:
        problems.append(f"{rid}: category {category} implies handoff={CATEGORIES[category]}")
    expected_actions = {"handoff"} if row["handoff"] else {"answer", "offer_human"}
    if row["action"] not in expected_actions:
        problems.append(f"{rid}: action {row['action']!r} with handoff={row['handoff']}")
    if not 0.15 <= row["best_score"] <= 0.85:
        problems.append(f"{rid}: best_score {row['best_score']} outside 0.15-0.85")
    if row["offered_human_before"] is not (category in OFFERED):
        problems.append(f"{rid}: offered_human_before must be {category in OFFERED} for {category}")
    if category in ("no_evidence", "no_evidence_after_offer") and row["best_score"] >= SCORE_THRESHOLD:
        problems.append(f"{rid}: {category} needs best_score < {SCORE_THRESHOLD}")
    history = row["history"]
    if category in MULTI_TURN_ONLY and not history:
        problems.append(f"{rid}: {category} needs a history")
    for i, turn in enumerate(history):
        role = "user" if i % 2 == 0 else "bot"
        if not isinstance(turn, dict) or set(turn) != {"role", "text"} or turn["role"] != role:
            problems.append(f"{rid}: history[{i}] must be {{role: {role}, text}}")
        elif not isinstance(turn["text"], str) or not turn["text"].strip():
            problems.append(f"{rid}: history[{i}] has no text")
    if history and history[-1].get("role") != "bot":
        problems.append(f"{rid}: history must end with the bot's turn")


def auc(scores_pos: list[float], scores_neg: list[float]) -> float:
    """Probability that a positive's best_score exceeds a negative's (ties count half)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in scores_pos for n in scores_neg)
    return wins / (len(scores_pos) * len(scores_neg))


def resplit(rows: list[dict[str, Any]]) -> set[str]:
    """The ids of the tuning half, by the documented method."""
    strata: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        strata.setdefault((r["lang"], r["category"]), []).append(r["id"])
    tune: set[str] = set()
    for (lang, category), ids in strata.items():
        ids = sorted(ids)
        random.Random(SEED.format(lang=lang, category=category)).shuffle(ids)
        tune.update(ids[: len(ids) // 2])
    return tune


def main(argv: list[str]) -> int:
    paths = dict(zip(HALVES, map(Path, argv), strict=True)) if argv else HALVES
    problems: list[str] = []
    halves = {name: read(path, problems) for name, path in paths.items()}
    rows = [r for part in halves.values() for r in part]
    for r in rows:
        check_row(r, problems)
    if problems:
        print("\n".join(problems))
        return 1

    ids = Counter(r["id"] for r in rows)
    problems += [f"{i}: id used {n} times" for i, n in ids.items() if n > 1]
    turns = Counter((json.dumps(r["history"], ensure_ascii=False), r["text"].strip().lower()) for r in rows)
    problems += [f"the same turn {t[1]!r} (same history) {k} times" for t, k in turns.items() if k > 1]
    tune_ids = {r["id"] for r in halves["tune"]}
    if resplit(rows) != tune_ids:
        problems.append("the halves are not the documented stratified split")

    n = len(rows)
    en = sum(r["lang"] == "en" for r in rows) / n
    pos = sum(r["handoff"] for r in rows) / n
    multi = sum(bool(r["history"]) for r in rows) / n
    area = auc([r["best_score"] for r in rows if r["handoff"]], [r["best_score"] for r in rows if not r["handoff"]])
    for ok, what in (
        (n >= 440, f"{n} turns (>= 440)"),
        (0.50 <= en <= 0.60, f"English share {en:.3f} (0.50-0.60)"),
        (0.40 <= pos <= 0.50, f"hand-off share {pos:.3f} (0.40-0.50)"),
        (multi >= 0.25, f"multi-turn share {multi:.3f} (>= 0.25)"),
        (0.40 <= area <= 0.60, f"AUC of best_score for the label {area:.3f} (0.40-0.60)"),
    ):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            problems.append(what)

    sys.path.insert(0, str(HERE.parents[2]))
    from bots.evaluation import load_cases

    for name, path in paths.items():
        cases, _ = load_cases(path)
        if len(cases) != len(halves[name]):
            problems.append(f"{path.name}: load_cases read {len(cases)} cases, expected {len(halves[name])}")

    print("\n| category | hands off | EN tune | EN test | ZH tune | ZH test | multi-turn |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    count = Counter((r["category"], r["lang"], name) for name, part in halves.items() for r in part)
    multi_by = Counter(r["category"] for r in rows if r["history"])
    for category, label in CATEGORIES.items():
        cells = [str(count[(category, lang, name)]) for lang in ("en", "zh") for name in HALVES]
        print(f"| {category} | {'yes' if label else 'no'} | {' | '.join(cells)} | {multi_by[category]} |")
    print("\n| half | English (hands off / not) | Chinese (hands off / not) | all | multi-turn |")
    print("| --- | --- | --- | --- | --- |")
    for name, part in halves.items():
        cells = []
        for lang in ("en", "zh"):
            sub = [r for r in part if r["lang"] == lang]
            p = sum(r["handoff"] for r in sub)
            cells.append(f"{len(sub)} ({p} / {len(sub) - p})")
        print(f"| {name} | {' | '.join(cells)} | {len(part)} | {sum(bool(r['history']) for r in part)} |")
    print(f"\nall: {n} turns, English {en:.1%}, hands off {pos:.1%}, multi-turn {multi:.1%}, "
          f"best_score AUC {area:.3f}")
    if problems:
        print("\n".join(["", "PROBLEMS:", *problems]))
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (1, 3):
        sys.exit("usage: validate_kestrel.py [TUNE.jsonl TEST.jsonl]")
    sys.exit(main(sys.argv[1:]))
