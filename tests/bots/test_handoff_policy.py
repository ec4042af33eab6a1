"""The handoff policy as a truth table, plus the labelled set's precision/recall bar."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bots.config import BusinessHours, HandoffSettings, Window
from bots.evaluation import evaluate_handoff, load_cases
from bots.handoff import HandoffInputs, decide, decide_post_retrieval, decide_pre_retrieval
from bots.values import Turn

OFFER = [Turn("user", "Do you take Bitcoin?"), Turn("bot", "I couldn't find that — want a person?")]
ASKED_TWICE = [
    Turn("user", "How do I export my data?"),
    Turn("bot", "See [1]."),
    Turn("user", "how can I export my data"),
    Turn("bot", "See [1]."),
]
DIDNT = [
    Turn("user", "The export fails"),
    Turn("bot", "Retry [1]."),
    Turn("user", "that didn't help"),
    Turn("bot", "Try [2]."),
]
SETTINGS = HandoffSettings(human_only_topics=("legal", "退款"), vip_attributes={"plan": ("enterprise",)})
MONDAY_NOON = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
SUNDAY_NIGHT = datetime(2025, 3, 2, 23, 0, tzinfo=UTC)
HOURS = HandoffSettings(
    vip_attributes={"plan": ("enterprise",)},
    business_hours=BusinessHours("UTC", (Window((0, 1, 2, 3, 4), "09:00", "17:00"),)),
)

TABLE: list[tuple[str, dict[str, Any], HandoffSettings, str, str]] = [
    ("ordinary", {"text": "How long does shipping take?", "best_score": 0.8}, SETTINGS, "answer", "none"),
    ("en request", {"text": "Can I talk to a real person?"}, SETTINGS, "handoff", "user_request"),
    ("zh request", {"text": "转人工"}, SETTINGS, "handoff", "user_request"),
    ("zh request 2", {"text": "我要人工客服"}, SETTINGS, "handoff", "user_request"),
    ("frame", {"text": "", "handoff_requested": True}, SETTINGS, "handoff", "user_request"),
    ("are you human", {"text": "Are you a human?", "best_score": 0.8}, SETTINGS, "answer", "none"),
    ("AI feature zh", {"text": "人工智能功能怎么用？", "best_score": 0.8}, SETTINGS, "answer", "none"),
    ("topic", {"text": "I need legal advice about my contract"}, SETTINGS, "handoff", "human_only_topic"),
    ("topic zh", {"text": "怎么申请退款"}, SETTINGS, "handoff", "human_only_topic"),
    ("vip", {"text": "hello", "user_attributes": {"plan": "Enterprise"}}, SETTINGS, "handoff", "vip"),
    ("not vip", {"text": "hello", "user_attributes": {"plan": "free"}, "best_score": 0.9}, SETTINGS, "answer", "none"),
    (
        "vip in hours",
        {"text": "hi", "user_attributes": {"plan": "enterprise"}, "now": MONDAY_NOON},
        HOURS,
        "handoff",
        "vip",
    ),
    (
        "vip off hours",
        {"text": "hi", "user_attributes": {"plan": "enterprise"}, "now": SUNDAY_NIGHT, "best_score": 0.9},
        HOURS,
        "answer",
        "outside_business_hours",
    ),
    ("no evidence", {"text": "Do you sell boats?", "best_score": 0.1}, SETTINGS, "offer_human", "no_evidence"),
    (
        "no evidence, no offers",
        {"text": "Do you sell boats?", "best_score": 0.1},
        HandoffSettings(offer_before_handoff=False),
        "handoff",
        "no_evidence",
    ),
    (
        "no evidence again",
        {"text": "And cars?", "best_score": 0.1, "offered_human_before": True, "history": OFFER},
        SETTINGS,
        "handoff",
        "no_evidence_after_offer",
    ),
    (
        "accepts",
        {"text": "yes please", "offered_human_before": True, "history": OFFER},
        SETTINGS,
        "handoff",
        "offer_accepted",
    ),
    ("accepts zh", {"text": "好的", "offered_human_before": True}, SETTINGS, "handoff", "offer_accepted"),
    ("yes without offer", {"text": "yes", "best_score": 0.6}, SETTINGS, "answer", "none"),
    (
        "declines",
        {"text": "no thanks", "offered_human_before": True, "best_score": 0.0},
        SETTINGS,
        "answer",
        "offer_declined",
    ),
    ("frustration", {"text": "This is useless"}, SETTINGS, "handoff", "frustration"),
    ("frustration zh", {"text": "气死我了"}, SETTINGS, "handoff", "frustration"),
    ("profanity", {"text": "wtf is this"}, SETTINGS, "handoff", "frustration"),
    ("caps", {"text": "WHERE IS MY PARCEL I ORDERED IT TWO WEEKS AGO"}, SETTINGS, "handoff", "frustration"),
    ("mild alone", {"text": "ugh, how do I log in?", "best_score": 0.7}, SETTINGS, "answer", "none"),
    ("mild + !!!", {"text": "This is ridiculous!!!"}, SETTINGS, "handoff", "frustration"),
    ("excited thanks", {"text": "Thanks!!!", "best_score": 0.5}, SETTINGS, "answer", "none"),
    (
        "third time",
        {"text": "How do I export my data?", "history": ASKED_TWICE},
        SETTINGS,
        "handoff",
        "repeated_question",
    ),
    (
        "second time",
        {"text": "How do I export my data?", "history": ASKED_TWICE[:2], "best_score": 0.7},
        SETTINGS,
        "answer",
        "none",
    ),
    ("didn't help twice", {"text": "still not working", "history": DIDNT}, SETTINGS, "handoff", "didnt_help"),
    ("didn't help once", {"text": "that didn't help", "best_score": 0.6}, SETTINGS, "answer", "none"),
    ("没用 twice", {"text": "没用", "history": [Turn("user", "还是不行")]}, SETTINGS, "handoff", "didnt_help"),
    ("provider fault", {"text": "hi", "fault": "llm_timeout"}, SETTINGS, "handoff", "provider_error"),
    ("breaker open", {"text": "hi", "fault": "circuit_open"}, SETTINGS, "handoff", "circuit_open"),
    (
        "fault beats decline",
        {"text": "no", "offered_human_before": True, "fault": "llm_unavailable"},
        SETTINGS,
        "handoff",
        "provider_error",
    ),
]


@pytest.mark.parametrize(("name", "fields", "settings", "action", "reason"), TABLE, ids=[r[0] for r in TABLE])
def test_truth_table(name: str, fields: dict[str, Any], settings: HandoffSettings, action: str, reason: str) -> None:
    decision = decide(HandoffInputs(**fields), settings)
    assert (decision.action, decision.reason_code) == (action, reason), decision


def test_two_phase_equals_one_phase() -> None:
    for _name, fields, settings, _a, _r in TABLE:
        inputs = HandoffInputs(**fields)
        one = decide(inputs, settings)
        pre = decide_pre_retrieval(inputs, settings)
        two = pre if inputs.best_score is None else decide_post_retrieval(pre, inputs.best_score, settings)
        assert (one.action, one.reason_code) == (two.action, two.reason_code)


def test_record_round_trips() -> None:
    inputs = HandoffInputs(
        text="转人工", history=tuple(OFFER), user_attributes={"plan": "x"}, best_score=0.2, now=MONDAY_NOON
    )
    rec = decide(inputs, SETTINGS).to_record()
    assert rec["reason_code"] == "user_request" and rec["inputs"]["text"] == "转人工"
    assert HandoffInputs.from_dict(rec["inputs"]) == inputs


def test_offline_notice_flag() -> None:
    d = decide(HandoffInputs(text="talk to a human", now=SUNDAY_NIGHT), HOURS)
    assert d.action == "handoff" and d.humans_available is False


def test_labelled_set_precision_and_recall() -> None:
    cases, settings = load_cases()
    assert len(cases) >= 200
    assert {c["lang"] for c in cases} == {"en", "zh"}
    cats = {c["category"] for c in cases}
    assert {"explicit_request", "frustration", "loop", "out_of_scope", "ordinary"} <= cats
    assert sum(not c["handoff"] for c in cases) >= 80  # plenty of must-not-hand-off cases
    precision, recall, conf = evaluate_handoff(cases, settings)
    assert precision >= 0.9, conf.errors
    assert recall >= 0.9, conf.errors
    assert conf.action_total and conf.action_matches / conf.action_total >= 0.9
