"""Handoff detection that generalises: always-handoff rules (safety, legal, tenant phrases),
requests in many phrasings, callbacks, repeated failure over the conversation, the learned layer,
and questions *about* people told apart from requests *for* one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bots.circuit import CircuitBreaker
from bots.cli import bots
from bots.config import HandoffSettings
from bots.evaluation import heldout_paths, load_cases, report_handoff
from bots.handoff import HandoffInputs, decide
from bots.handoff_model import LogisticTurnModel, default_model_path, shipped_scorer
from bots.pipeline import AnswerPipeline, Final, Handoff
from bots.replay import replay
from bots.values import Turn
from tests.bots.helpers import collect, ctx, retriever, terminal

NONE = HandoffSettings()
FAILED = [
    Turn("user", "the rear light is broken"),
    Turn("bot", "I couldn't find that in our help centre."),
]
TWO_ANSWERS = [
    Turn("user", "how do I get my old trips as a file"),
    Turn("bot", "Every ride has a receipt in the app under Trips [1]."),
    Turn("user", "I want all my trips exported"),
    Turn("bot", "A monthly summary is emailed on the 1st [1]."),
]


def _reason(text: str, settings: HandoffSettings = NONE, **kw: object) -> str:
    d = decide(HandoffInputs(text=text, **kw), settings)  # type: ignore[arg-type]
    return d.reason_code if d.action == "handoff" else f"answer:{d.reason_code}"


@pytest.mark.parametrize(
    "text",
    [
        "My charger is smoking and smells like burning plastic",
        "sparks came out of the socket when I plugged it in",
        "the battery is swollen and the case cracked",
        "there's a fire in my garage, it started at the charger",
        "充电器冒烟了",
        "电池鼓包了，还有股烧焦味",
    ],
)
def test_a_safety_report_always_hands_off_whatever_else_holds(text: str) -> None:
    # Even with good evidence, right after the user declined a person, and for a user who would
    # otherwise be answered: a hazard goes to a human.
    assert _reason(text, best_score=0.95) == "safety"
    assert _reason(text, offered_human_before=True, best_score=0.95) == "safety"


@pytest.mark.parametrize(
    "text",
    [
        "what should I do if my battery ever starts smoking?",
        "Does the heater have overheat protection?",
        "why do e-bike batteries sometimes explode?",
        "整夜充电会不会爆炸",
        "怎么判断电池是不是鼓包了",
    ],
)
def test_a_question_about_safety_is_answered(text: str) -> None:
    assert _reason(text, best_score=0.8).startswith("answer:")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I'll be contacting my lawyer about this", "legal"),
        ("I want to file a formal complaint", "legal"),
        ("I will report you to trading standards", "legal"),
        ("我要起诉你们", "legal"),
        ("我要向消协投诉", "legal"),
        ("I'm a lawyer and want to lease 5 bikes for my firm, who do I write to?", "answer:none"),
        ("法院门口有你们的停车点吗", "answer:none"),
    ],
)
def test_legal_threats_hand_off_and_a_lawyer_as_customer_does_not(text: str, reason: str) -> None:
    assert _reason(text, best_score=0.8) == reason


def test_a_tenant_adds_phrases_to_a_built_in_rule_and_rules_of_its_own() -> None:
    settings = HandoffSettings.from_dict({"rule_phrases": {"safety": ["gas smell"], "recall": ["recall notice",
                                                                                               "召回"]}})
    assert settings.to_dict()["rule_phrases"] == {"safety": ["gas smell"], "recall": ["recall notice", "召回"]}
    assert _reason("There is a gas smell near the boiler", settings) == "safety"
    assert _reason("I got a recall notice for my model", settings) == "rule:recall"
    assert _reason("你们的召回计划是什么", settings) == "rule:recall"
    # Whole words only in Latin script: "recall notices" still counts, "recalling" does not.
    assert _reason("I don't recall noticing that", settings) == "answer:none"


@pytest.mark.parametrize(
    "text",
    ["hooman pls", "human human human", "agent agent", "rep pls", "talk 2 someone", "can i get a real ppl",
     "i wanna speak w someone", "transfer me", "Is there an actual person I can chat with?", "人工人工人工",
     "转人工！", "找你们经理来", "不想跟机器人说话"],
)
def test_explicit_requests_in_many_phrasings(text: str) -> None:
    assert _reason(text) == "user_request"


@pytest.mark.parametrize(
    "text",
    ["Does priority support mean I reach a person quicker?", "What are your customer service hours?",
     "How long does it take to reach a human?", "How many agents can I add to my plan?",
     "人工客服几点上班？", "优先支持是不是能更快联系到人工？", "客服会说英语吗？", "Are you a human or a bot?"],
)
def test_questions_about_people_are_no_request(text: str) -> None:
    assert _reason(text, best_score=0.8) == "answer:none"


@pytest.mark.parametrize("text", ["Can someone call me back on 0123 456?", "please call me", "给我回个电话",
                                  "打字不方便，请来电"])
def test_callback_requests_hand_off(text: str) -> None:
    assert _reason(text) == "callback_request"


def test_a_webhook_callback_is_no_callback_request() -> None:
    assert _reason("How do I set up a webhook callback URL?", best_score=0.8) == "answer:none"


@pytest.mark.parametrize(
    ("text", "history"),
    [
        ("you're not understanding me", FAILED),
        ("nope", FAILED),
        ("the rear light is broken!", FAILED),  # asked again after the bot failed
        ("still not it", TWO_ANSWERS),
        ("不是这个", [Turn("user", "押金怎么退"), Turn("bot", "骑行卡不支持退款 [1]。"),
                     Turn("user", "我问的是押金"), Turn("bot", "新用户首单立减 3 元 [1]。")]),
    ],
)
def test_repeated_failure_over_the_conversation_hands_off(text: str, history: Sequence[Turn]) -> None:
    assert _reason(text, history=tuple(history), best_score=0.6) == "repeated_failure"


def test_an_ordinary_follow_up_after_good_answers_is_answered() -> None:
    assert _reason("great, and how do I export it as CSV?", history=tuple(TWO_ANSWERS), best_score=0.7) == (
        "answer:none")
    assert _reason("no", history=tuple(TWO_ANSWERS), best_score=0.7) == "answer:none"


def test_the_learned_layer_hands_off_above_its_threshold_but_never_for_a_question_about_people() -> None:
    settings = HandoffSettings(learned_threshold=0.9)
    assert _reason("three weeks, two emails, nothing", settings, learned_score=0.95) == "learned"
    assert _reason("three weeks, two emails, nothing", settings, learned_score=0.5) == "answer:none"
    assert _reason("Do your agents speak Spanish?", settings, learned_score=0.99) == "answer:none"
    off = HandoffSettings(learned_threshold=1.01)
    assert _reason("three weeks, two emails, nothing", off, learned_score=0.99) == "answer:none"


def test_the_shipped_model_tells_frustration_from_ordinary_questions() -> None:
    model = shipped_scorer()
    # None of these sentences is in the training sets.
    angry, calm, about = model.score([
        "I've been chasing this for a month and I'm at the end of my patience",
        "Which colours does the city bike come in?",
        "Are your support staff based in the UK?",
    ])
    assert angry >= NONE.learned_threshold > calm
    assert about < NONE.learned_threshold


def test_a_model_file_of_another_embedder_is_refused(tmp_path: Path) -> None:
    model = LogisticTurnModel.load()
    other = LogisticTurnModel(model.weights, model.bias, model.mean, model.spread, model.threshold, "minilm-l6")
    other.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="trained with minilm-l6"):
        LogisticTurnModel.load(tmp_path / "m.npz")


class _Scorer:
    def __init__(self, value: float | Exception) -> None:
        self.value = value
        self.seen: list[str] = []

    def score(self, texts: Sequence[str]) -> list[float]:
        self.seen.extend(texts)
        if isinstance(self.value, Exception):
            raise self.value
        return [self.value for _ in texts]


async def test_the_pipeline_scores_what_the_rules_let_through_and_keeps_the_score_for_replay() -> None:
    scorer = _Scorer(0.97)
    pipeline = AnswerPipeline(retriever(), None, CircuitBreaker(), scorer=scorer)
    last = terminal(await collect(pipeline, ctx("How much is shipping to Canada?")))
    assert isinstance(last, Handoff) and last.decision.reason_code == "learned"
    record = last.decision.to_record()
    assert record["inputs"]["learned_score"] == pytest.approx(0.97)
    # Replayed offline with the same settings, the logged score gives the same decision, no model.
    assert replay([record], HandoffSettings()).changed == 0
    assert replay([record], HandoffSettings(learned_threshold=0.99)).changed == 1
    # A rule decides before the model is asked.
    scorer.seen.clear()
    last = terminal(await collect(pipeline, ctx("There is smoke coming out of the charger")))
    assert isinstance(last, Handoff) and last.decision.reason_code == "safety"
    assert scorer.seen == []


async def test_a_broken_scorer_leaves_the_rules_in_charge() -> None:
    pipeline = AnswerPipeline(retriever(), None, CircuitBreaker(), scorer=_Scorer(RuntimeError("boom")))
    last = terminal(await collect(pipeline, ctx("How much is shipping to Canada?")))
    assert isinstance(last, Final)
    assert last.decision is not None and last.decision.inputs.learned_score is None


def test_eval_handoff_reports_per_language_and_category(tmp_path: Path) -> None:
    rows = [
        {"_settings": {}},
        {"id": "a", "lang": "en", "category": "safety_hazard", "text": "sparks are flying out of the charger",
         "handoff": True},
        {"id": "b", "lang": "zh", "category": "about_humans", "text": "人工客服几点上班？", "handoff": False},
    ]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    cases, settings = load_cases(path)
    report = report_handoff(cases, settings)
    assert (report.by_lang["en"].tp, report.by_lang["zh"].tn) == (1, 1)
    assert report.by_category["safety_hazard"].recall == 1.0
    res = CliRunner().invoke(bots, ["eval-handoff", str(path), "--no-learned"])
    assert res.exit_code == 0, res.output
    assert "safety_hazard" in res.output and "about_humans" in res.output
    assert "handoffs by reason: safety=1" in res.output


def test_train_handoff_refuses_the_test_half(tmp_path: Path) -> None:
    test_half = tmp_path / "handoff_test.jsonl"
    test_half.write_text('{"_settings": {}}\n', encoding="utf-8")
    res = CliRunner().invoke(bots, ["train-handoff", str(test_half), "--out", str(tmp_path / "m.npz")])
    assert res.exit_code != 0 and "reporting only" in res.output


@pytest.mark.skipif("tune" not in heldout_paths(), reason="the held-out tuning half is not in this checkout")
def test_train_handoff_reproduces_the_shipped_weights(tmp_path: Path) -> None:
    res = CliRunner().invoke(bots, ["train-handoff", "--out", str(tmp_path / "m.npz")])
    assert res.exit_code == 0, res.output
    shipped, again = LogisticTurnModel.load(default_model_path()), LogisticTurnModel.load(tmp_path / "m.npz")
    assert np.allclose(shipped.weights, again.weights, atol=1e-4)
    assert again.threshold == pytest.approx(shipped.threshold)


# --- structural cues (issue 11 item 4, ai-handoff3): phrasings in none of the labelled sets ------
@pytest.mark.parametrize(
    "text",
    ["I want to go through my bill with one of your advisors", "huuuuman please", "billing team please",
     "is there an actual person I can write to about my claim", "请安排一位专员跟进", "叫你们主管来一下",
     "人工，麻烦了", "有没有真人啊"],
)
def test_a_request_for_a_person_is_read_from_its_form(text: str) -> None:
    # A desire or imperative with a person or team in it, squeezed letters, a bare person word.
    assert _reason(text, best_score=0.9) == "user_request"


@pytest.mark.parametrize(
    "text",
    ["找人工客服通常要等多久", "客服是机器人还是真人", "周末有人工客服吗", "Can a technician come on a Sunday?",
     "How long is the queue for an advisor usually?"],
)
def test_a_question_about_people_with_a_request_word_in_it_is_answered(text: str) -> None:
    assert _reason(text, best_score=0.8) == "answer:none"


@pytest.mark.parametrize(
    "text",
    ["this phone deal is on fire, is it still on?", "I had bill shock after roaming, what are the rates?",
     "my wife is a solicitor, can she sign for me?", "my mum can't call me on my new number, why?",
     "朋友打我电话总是打不通怎么回事", "我老公是律师，合同可以他签吗", "Sue at the shop said I get a discount"],
)
def test_words_in_another_sense_do_not_hand_off(text: str) -> None:
    assert _reason(text, best_score=0.8) == "answer:none"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("can the charger catch fire in a hot car?", "answer:none"),
        ("插座进水会漏电吗", "answer:none"),
        ("can you help, my charger is sparking", "safety"),  # a question, but about the user's own charger
        ("is it normal that smoke is coming out of the charger?", "safety"),  # happening now
        ("充电器冒烟了，会爆炸吗", "safety"),  # it has happened (了)
        ("路由器在冒烟，会爆炸吗", "safety"),  # a report, then a question about it
        ("插头烧焦了，怎么判断还能不能用", "safety"),
        ("the socket is wet and the power strip sits in the water", "safety"),
        ("外面电线掉下来了", "safety"),
    ],
)
def test_a_hazard_report_is_told_from_a_question_about_hazards(text: str, reason: str) -> None:
    assert _reason(text, best_score=0.8) == reason


def test_a_safety_report_hands_off_mid_conversation_and_mid_message() -> None:
    # After the user declined a person and got two good answers, with a harmless learned score, a
    # hazard mentioned in the middle of a long message still hands off, on the safety rule.
    history = (*TWO_ANSWERS, Turn("bot", "Shall I get a person?"), Turn("user", "no thanks"))
    text = ("Thanks, that worked. " * 20) + "Oh and the charger started sparking last night. " + (
        "Anyway, how do I export my trips? " * 5)
    d = decide(HandoffInputs(text=text, history=history, best_score=0.9, learned_score=0.01), NONE)
    assert (d.action, d.reason_code, d.layer) == ("handoff", "safety", "rule")
    assert "spark" in d.detail
    # and the record replays to the same decision with no model
    assert replay([d.to_record()], NONE).changed == 0


async def test_a_safety_report_never_reaches_the_model_or_streams() -> None:
    from bots.testing import ScriptedChatModel

    model = ScriptedChatModel(replies=["Have you tried turning it off and on again? [1]"])
    scorer = _Scorer(0.0)
    pipeline = AnswerPipeline(retriever(), model, CircuitBreaker(), scorer=scorer)
    events = await collect(pipeline, ctx("Quick one: my router is giving off a burning smell, what do I do?",
                                         history=TWO_ANSWERS))
    last = terminal(events)
    assert isinstance(last, Handoff) and last.decision.reason_code == "safety"
    assert len(events) == 1 and model.calls == [] and scorer.seen == []


@pytest.mark.parametrize(
    "text",
    ["this is the sixth time I'm calling about this", "I'm running out of patience with you",
     "这已经是第四次反映了", "每次都敷衍我", "absolutely unacceptable, the line is down again"],
)
def test_frustration_without_a_swear_word_hands_off(text: str) -> None:
    assert _reason(text, best_score=0.9) == "frustration"


def test_a_mild_swear_at_the_situation_is_answered() -> None:
    assert _reason("damn, I locked myself out of the app, how do I reset the PIN?", best_score=0.8) == "answer:none"


def test_none_of_the_answers_helping_hands_off() -> None:
    assert _reason("none of those help", history=tuple(TWO_ANSWERS), best_score=0.7) == "repeated_failure"


def test_a_thank_you_never_hands_off_on_the_learned_score() -> None:
    for text in ("辛苦了", "thanks, got it!", "收到"):
        assert _reason(text, learned_score=0.99, best_score=0.8) == "answer:none"
    assert _reason("thanks for nothing, three weeks and no refund", learned_score=0.99, best_score=0.8) == "learned"


def test_only_retired_test_halves_are_trained_on(tmp_path: Path) -> None:
    from bots.errors import ConfigError
    from bots.handoff_training import check_trainable_path, default_training_paths

    fresh = tmp_path / "kestrel_handoff_test.jsonl"
    fresh.write_text('{"_settings": {}}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="reporting only"):
        check_trainable_path(fresh)
    for path in default_training_paths():
        check_trainable_path(path)  # the shipped training sets pass, the retired Voltway test half too
    res = CliRunner().invoke(bots, ["train-handoff", str(fresh), "--out", str(tmp_path / "m.npz")])
    assert res.exit_code != 0 and "reporting only" in res.output


@pytest.mark.parametrize(
    "text",
    ["the app crashed when I opened it, how do I fix it?", "my screen shattered, how much is a repair?",
     "someone called me pretending to be from your company, is that you?", "有人冒充客服打给我，是真的吗",
     "how do I transfer my number over to you?", "号码被停了怎么申诉", "怎么识别欺诈短信", "is the new plan live yet?",
     "I'll report it to the landlord, but can you tell me when the fibre works start?"],
)
def test_telecom_and_app_words_that_sound_like_a_rule_are_answered(text: str) -> None:
    # A crash of an app, a shattered screen, a scam call, porting a number, an appeal against a
    # suspension: none is a hazard, a legal threat, a callback or a request for a person.
    assert _reason(text, best_score=0.8) == "answer:none"


@pytest.mark.parametrize(
    ("text", "history"),
    [
        ("done that already, still buffering", TWO_ANSWERS),
        ("试过了，还是连不上", [Turn("user", "电视盒子连不上网"), Turn("bot", "请重启电视盒子 [1]。"),
                         Turn("user", "重启了"), Turn("bot", "请检查网线是否插好 [1]。")]),
    ],
)
def test_a_problem_that_persists_after_the_bots_answers_hands_off(text: str, history: Sequence[Turn]) -> None:
    assert _reason(text, history=tuple(history), best_score=0.8) == "repeated_failure"


def test_still_in_a_first_question_is_no_failure() -> None:
    assert _reason("is the offer still on?", best_score=0.8) == "answer:none"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("人工客服周六上班吗", "answer:none"), ("转人工要排队吗？", "answer:none"), ("转人工", "user_request"),
     ("可以转人公吗", "user_request"), ("I've told you this five times", "frustration"),
     ("我丢了一个订单，就因为你们没来", "frustration"), ("这样也叫服务？说了等于没说", "frustration"),
     ("the pole outside is leaning over the road", "safety"), ("我要打12300投诉", "legal"),
     ("你们去年的投诉处理快吗", "answer:none")],
)
def test_kestrel_tuning_kinds_in_fresh_words(text: str, reason: str) -> None:
    assert _reason(text, best_score=0.8) == reason


def test_a_decline_with_a_laugh_is_a_decline() -> None:
    assert _reason("haha no, I'll read the FAQ", offered_human_before=True, best_score=0.1) == "answer:offer_declined"


def test_a_duration_said_twice_is_anger_but_a_doubled_thanks_is_not() -> None:
    assert _reason("three days. THREE DAYS. and no signal", best_score=0.8) == "frustration"
    assert _reason("停网三天了，三天！", best_score=0.8) == "frustration"
    for text in ("谢谢，谢谢！", "好的，好的！", "thank you, thank you!"):
        assert _reason(text, best_score=0.8) == "answer:none"
