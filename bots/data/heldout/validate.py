"""Check a held-out handoff set (its tune and test halves) and print its counts.

    PYTHONPATH=$PWD python bots/data/heldout/validate.py SET [TUNE.jsonl TEST.jsonl]

SET is ``sunmere``, ``kestrel`` or ``voltway`` (see ``SETS``); the two paths replace the shipped
halves (to check a copy). Checks: the ``_settings`` first line, every field and its type, unique ids
(across both halves), id = ``{lang}-{category}-NN``, the label and ``action`` each category implies,
histories that alternate user/bot and end with the bot, the size and shares each set promises
(turns, English share, hand-off share, multi-turn share), that ``best_score`` does not give the
label away (AUC near 0.5) and, where the set documents it, that it is the seeded draw, that no turn
(history and text) occurs twice, so none is in both halves, that the halves are the documented
stratified split, that every category occurs in both languages, that a fresh set repeats no text of
the sets listed in its ``distinct_from``, and that ``bots.evaluation.load_cases`` reads both files.
Exits 1 with every problem listed.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
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
EVIDENCE = {"no_evidence", "no_evidence_after_offer"}
SHORT_REPLIES = {"thanks", "offer_accepted", "offer_declined"}
ALWAYS_ANSWER = {"thanks", "offer_declined"}  # a reply, never an offer of a person
SCORE_THRESHOLD = 0.35  # the policy's default, for the evidence categories
CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass(frozen=True, slots=True)
class HandoffSet:
    """What one held-out set promises; its README documents the same numbers."""

    tune: str
    test: str
    split_seed: str  # formatted with lang and category
    min_turns: int
    en_share: tuple[float, float]
    handoff_share: tuple[float, float]
    min_multi_turn: float
    score_range: tuple[float, float] = (0.15, 0.85)
    #: bounds of the AUC of best_score for the label: near 0.5, the score gives nothing away.
    auc_range: tuple[float, float] = (0.40, 0.60)
    #: ``random.Random(score_seed.format(id=...)).uniform(*range)`` rounded to 2 places, the range
    #: narrower for short replies and the evidence categories; None: not a documented draw.
    score_seed: str | None = None
    #: negatives' ``action`` is ``offer_human`` exactly when ``best_score`` < 0.35 (else ``answer``),
    #: and always ``answer`` for thanks and a declined offer.
    action_follows_score: bool = False
    #: other handoff files (relative to this folder) whose turn texts this set must not repeat.
    distinct_from: tuple[str, ...] = field(default=())
    #: Chinese cases typed in pinyin, without a Chinese character (e.g. "rengong").
    pinyin_ids: frozenset[str] = field(default=frozenset())

    def paths(self) -> dict[str, Path]:
        return {"tune": HERE / self.tune, "test": HERE / self.test}


SETS: dict[str, HandoffSet] = {
    "sunmere": HandoffSet(
        tune="sunmere_handoff_tune.jsonl", test="sunmere_handoff_test.jsonl",
        split_seed="sunmere-handoff-11:{lang}:{category}", min_turns=460, en_share=(0.50, 0.60),
        handoff_share=(0.40, 0.50), min_multi_turn=0.30, score_seed="sunmere-score:{id}",
        action_follows_score=True,
        distinct_from=("kestrel_handoff_tune.jsonl", "kestrel_handoff_test.jsonl", "handoff_tune.jsonl",
                       "handoff_test.jsonl", "../handoff_set.jsonl", "../handoff_extra.jsonl"),
    ),
    "kestrel": HandoffSet(
        tune="kestrel_handoff_tune.jsonl", test="kestrel_handoff_test.jsonl",
        split_seed="kestrel-handoff-11:{lang}:{category}", min_turns=440, en_share=(0.50, 0.60),
        handoff_share=(0.40, 0.50), min_multi_turn=0.25, score_seed="kestrel-score:{id}",
        action_follows_score=True,
    ),
    # Voltway's best_score has another scale, its negatives are mostly "answer" whatever the score,
    # and its positives score lower (AUC 0.23): it was not drawn to hide the label, so not checked.
    "voltway": HandoffSet(
        tune="handoff_tune.jsonl", test="handoff_test.jsonl", split_seed="voltway-handoff-11:{lang}:{category}",
        min_turns=400, en_share=(0.55, 0.65), handoff_share=(0.45, 0.55), min_multi_turn=0.20,
        score_range=(0.0, 1.0), auc_range=(0.0, 1.0), pinyin_ids=frozenset({"zh-explicit_request-22"}),
    ),
}


def read(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines or json.loads(lines[0]) != {"_settings": SETTINGS}:
        problems.append(f"{path.name}: first line must be {{'_settings': {SETTINGS}}}")
    return [json.loads(ln) for ln in lines[1:]]


def check_fields(spec: HandoffSet, row: dict[str, Any], problems: list[str]) -> bool:
    """Fields, types, lang, category and id; False when the row is too broken to check further."""
    rid = row.get("id", "?")
    if set(row) != set(FIELDS):
        problems.append(f"{rid}: fields {sorted(set(row) ^ set(FIELDS))} missing or extra")
        return False
    for name, kind in FIELDS.items():
        value = row[name]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            problems.append(f"{rid}: {name} is {type(value).__name__}, expected {kind}")
            return False
    lang, category = row["lang"], row["category"]
    if lang not in ("en", "zh"):
        problems.append(f"{rid}: lang {lang!r}")
    if category not in CATEGORIES:
        problems.append(f"{rid}: unknown category {category!r}")
        return False
    if not re.fullmatch(rf"{lang}-{category}-\d{{2}}", rid):
        problems.append(f"{rid}: id is not {lang}-{category}-NN")
    if not row["text"].strip():
        problems.append(f"{rid}: empty text")
    if bool(CJK.search(row["text"])) != (lang == "zh" and rid not in spec.pinyin_ids):
        problems.append(f"{rid}: text is not in {lang}")
    return True


def score_draw(spec: HandoffSet, row: dict[str, Any]) -> float | None:
    if spec.score_seed is None:
        return None
    category = row["category"]
    high = 0.33 if category in EVIDENCE else 0.50 if category in SHORT_REPLIES else spec.score_range[1]
    return round(random.Random(spec.score_seed.format(id=row["id"])).uniform(spec.score_range[0], high), 2)


def check_labels(spec: HandoffSet, row: dict[str, Any], problems: list[str]) -> None:
    rid, category, score = row["id"], row["category"], row["best_score"]
    if row["handoff"] is not CATEGORIES[category]:
        problems.append(f"{rid}: category {category} implies handoff={CATEGORIES[category]}")
    expected_actions = {"handoff"} if row["handoff"] else {"answer", "offer_human"}
    if spec.action_follows_score and not row["handoff"]:
        expected_actions = {"answer" if category in ALWAYS_ANSWER or score >= SCORE_THRESHOLD else "offer_human"}
    if row["action"] not in expected_actions:
        problems.append(f"{rid}: action {row['action']!r}, expected {' or '.join(sorted(expected_actions))}")
    low, high = spec.score_range
    if not low <= score <= high:
        problems.append(f"{rid}: best_score {score} outside {low}-{high}")
    drawn = score_draw(spec, row)
    if drawn is not None and drawn != score:
        problems.append(f"{rid}: best_score {score} is not the seeded draw {drawn}")
    if row["offered_human_before"] is not (category in OFFERED):
        problems.append(f"{rid}: offered_human_before must be {category in OFFERED} for {category}")
    if category in EVIDENCE and score >= SCORE_THRESHOLD:
        problems.append(f"{rid}: {category} needs best_score < {SCORE_THRESHOLD}")


def check_history(row: dict[str, Any], problems: list[str]) -> None:
    rid, history = row["id"], row["history"]
    if row["category"] in MULTI_TURN_ONLY and not history:
        problems.append(f"{rid}: {row['category']} needs a history")
    for i, turn in enumerate(history):
        role = "user" if i % 2 == 0 else "bot"
        if not isinstance(turn, dict) or set(turn) != {"role", "text"} or turn["role"] != role:
            problems.append(f"{rid}: history[{i}] must be {{role: {role}, text}}")
        elif not isinstance(turn["text"], str) or not turn["text"].strip():
            problems.append(f"{rid}: history[{i}] has no text")
    if history and (not isinstance(history[-1], dict) or history[-1].get("role") != "bot"):
        problems.append(f"{rid}: history must end with the bot's turn")


def auc(scores_pos: list[float], scores_neg: list[float]) -> float:
    """Probability that a positive's best_score exceeds a negative's (ties count half)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in scores_pos for n in scores_neg)
    return wins / (len(scores_pos) * len(scores_neg))


def resplit(spec: HandoffSet, rows: list[dict[str, Any]]) -> set[str]:
    """The ids of the tuning half, by the documented method: strata (lang, category), ids sorted,
    shuffled with the set's seed, the first ``len // 2`` to tune."""
    strata: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        strata.setdefault((r["lang"], r["category"]), []).append(r["id"])
    tune: set[str] = set()
    for (lang, category), ids in strata.items():
        ids = sorted(ids)
        random.Random(spec.split_seed.format(lang=lang, category=category)).shuffle(ids)
        tune.update(ids[: len(ids) // 2])
    return tune


def normalise(text: str) -> str:
    """How texts are compared across sets: case-folded, without spaces and punctuation."""
    return re.sub(r"[\W_]+", "", text.casefold())


def repeated_texts(spec: HandoffSet, rows: list[dict[str, Any]]) -> list[str]:
    """Turn texts of this set that another handoff file (``distinct_from``) already has."""
    seen: set[str] = set()
    for name in spec.distinct_from:
        for line in (HERE / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else {}
            if isinstance(row.get("text"), str):
                seen.add(normalise(row["text"]))
    return [f"{r['id']}: text {r['text']!r} is already in {', '.join(spec.distinct_from)}"
            for r in rows if normalise(r["text"]) in seen]


def check_set(spec: HandoffSet, halves: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Every problem of rows that each passed ``check_fields``."""
    problems: list[str] = []
    rows = [r for part in halves.values() for r in part]
    for r in rows:
        check_labels(spec, r, problems)
        check_history(r, problems)
    ids = Counter(r["id"] for r in rows)
    problems += [f"{i}: id used {n} times" for i, n in ids.items() if n > 1]
    turns = Counter((json.dumps(r["history"], ensure_ascii=False), r["text"].strip().lower()) for r in rows)
    problems += [f"the same turn {t[1]!r} (same history) {k} times" for t, k in turns.items() if k > 1]
    if resplit(spec, rows) != {r["id"] for r in halves["tune"]}:
        problems.append("the halves are not the documented stratified split")
    present = {(r["lang"], r["category"]) for r in rows}
    problems += [f"no {lang} case of {category}" for category in CATEGORIES for lang in ("en", "zh")
                 if (lang, category) not in present]
    problems += repeated_texts(spec, rows)
    return problems


def shares(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    return {
        "turns": n,
        "en": sum(r["lang"] == "en" for r in rows) / n,
        "handoff": sum(r["handoff"] for r in rows) / n,
        "multi": sum(bool(r["history"]) for r in rows) / n,
        "auc": auc([r["best_score"] for r in rows if r["handoff"]],
                   [r["best_score"] for r in rows if not r["handoff"]]),
    }


def check_shares(spec: HandoffSet, figures: dict[str, float]) -> list[tuple[bool, str]]:
    (en_lo, en_hi), (pos_lo, pos_hi), (auc_lo, auc_hi) = spec.en_share, spec.handoff_share, spec.auc_range
    multi, handoff = figures["multi"], figures["handoff"]
    return [
        (figures["turns"] >= spec.min_turns, f"{figures['turns']:.0f} turns (>= {spec.min_turns})"),
        (en_lo <= figures["en"] <= en_hi, f"English share {figures['en']:.3f} ({en_lo:.2f}-{en_hi:.2f})"),
        (pos_lo <= handoff <= pos_hi, f"hand-off share {handoff:.3f} ({pos_lo:.2f}-{pos_hi:.2f})"),
        (multi >= spec.min_multi_turn, f"multi-turn share {multi:.3f} (>= {spec.min_multi_turn:.2f})"),
        (auc_lo <= figures["auc"] <= auc_hi,
         f"AUC of best_score for the label {figures['auc']:.3f} ({auc_lo:.2f}-{auc_hi:.2f})"),
    ]


def tables(halves: dict[str, list[dict[str, Any]]]) -> str:
    """The README's two count tables (Markdown)."""
    out = ["| category | hands off | EN tune | EN test | ZH tune | ZH test | multi-turn |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    count = Counter((r["category"], r["lang"], name) for name, part in halves.items() for r in part)
    multi_by = Counter(r["category"] for part in halves.values() for r in part if r["history"])
    for category, label in CATEGORIES.items():
        cells = [str(count[(category, lang, name)]) for lang in ("en", "zh") for name in ("tune", "test")]
        out.append(f"| {category} | {'yes' if label else 'no'} | {' | '.join(cells)} | {multi_by[category]} |")
    out += ["", "| half | English (hands off / not) | Chinese (hands off / not) | all | multi-turn |",
            "| --- | --- | --- | --- | --- |"]
    for name, part in halves.items():
        cells = []
        for lang in ("en", "zh"):
            sub = [r for r in part if r["lang"] == lang]
            p = sum(r["handoff"] for r in sub)
            cells.append(f"{len(sub)} ({p} / {len(sub) - p})")
        out.append(f"| {name} | {' | '.join(cells)} | {len(part)} | {sum(bool(r['history']) for r in part)} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 3) or argv[0] not in SETS:
        print(f"usage: validate.py {{{','.join(SETS)}}} [TUNE.jsonl TEST.jsonl]")
        return 2
    spec = SETS[argv[0]]
    paths = dict(zip(("tune", "test"), map(Path, argv[1:]), strict=True)) if argv[1:] else spec.paths()
    problems: list[str] = []
    halves = {name: read(path, problems) for name, path in paths.items()}
    for r in (r for part in halves.values() for r in part):
        check_fields(spec, r, problems)
    if problems:
        print("\n".join(problems))
        return 1
    problems += check_set(spec, halves)
    figures = shares([r for part in halves.values() for r in part])
    for ok, what in check_shares(spec, figures):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            problems.append(what)

    sys.path.insert(0, str(HERE.parents[2]))
    from bots.evaluation import load_cases

    for name, path in paths.items():
        cases, _ = load_cases(path)
        if len(cases) != len(halves[name]):
            problems.append(f"{path.name}: load_cases read {len(cases)} cases, expected {len(halves[name])}")
    print("\n" + tables(halves))
    print(f"\nall: {figures['turns']:.0f} turns, English {figures['en']:.1%}, hands off {figures['handoff']:.1%}, "
          f"multi-turn {figures['multi']:.1%}, best_score AUC {figures['auc']:.3f}")
    if problems:
        print("\n".join(["", "PROBLEMS:", *problems]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
