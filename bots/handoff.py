"""The handoff policy: a pure, layered decision with a reason code.

Layers, first match wins::

    (d) faults    circuit_open, provider_error                       → handoff
    (a) rules     safety, legal, rule:<tenant rule> (always), human_only_topic, user_request
                  (text or the ``handoff.request`` frame), callback_request, offer_accepted,
                  vip (only while humans are on duty)                  → handoff;
                  offer_declined                                      → answer
    (c) signals   frustration, repeated_question, didnt_help          → handoff
    (l) learned   the turn classifier's probability (``inputs.learned_score``, computed by the
                  caller with ``bots.handoff_model``) at or above ``learned_threshold``, unless the
                  turn is a question *about* people                   → handoff
    (b) evidence  best score below threshold → offer_human (once), then handoff
                  (no_evidence_after_offer); or handoff at once when the tenant disables offers
    default       answer (reason ``none``, or ``outside_business_hours`` when a VIP rule was
                  suspended because no human is on duty)

Signals and rules need only the text, so the pipeline can decide before retrieving
(:func:`decide_pre_retrieval`) and add the evidence afterwards (:func:`decide_post_retrieval`);
:func:`decide` does both. Every :class:`HandoffDecision` carries its inputs and serialises with
``to_record()`` so the server can store it and ``bots.replay`` can re-run it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from difflib import SequenceMatcher
from typing import Any, Literal

from bots.config import HandoffSettings
from bots.handoff_rules import (
    ALWAYS_RULES,
    asks_for_callback,
    asks_for_person,
    first_phrase,
    in_another_sense,
    is_hypothetical_safety_question,
    is_question_about_people,
    matched_rule,
)
from bots.text import normalize
from bots.values import Turn

__all__ = [
    "CONTEXT_THRESHOLD_FACTOR",
    "POLICY_VERSION",
    "Action",
    "HandoffDecision",
    "HandoffInputs",
    "conversation_trouble",
    "decide",
    "decide_fault",
    "decide_post_retrieval",
    "decide_pre_retrieval",
    "frustration_points",
    "is_affirmative",
    "is_human_request",
]

POLICY_VERSION = "2026.12.2"

Action = Literal["answer", "offer_human", "handoff"]
Layer = Literal["fault", "rule", "signal", "learned", "evidence", "default"]

# --- lexicons -------------------------------------------------------------------------------
# The request, safety, legal and callback lexicons live in bots.handoff_rules.
_AFFIRM_EN = re.compile(
    r"^(?:yes|yeah|yep|yup|sure|ok|okay|please|please do|yes please|go ahead|do it|y|sounds good|"
    r"that would be (?:great|good)|i would|i'd like that|ok please|absolutely|definitely)\b"
)
_AFFIRM_ZH = re.compile(r"^(?:好|好的|是|是的|可以|行|要|需要|嗯|对|麻烦|好啊|好吧|当然|转吧|帮我转)")
_DECLINE = re.compile(
    r"^(?:(?:haha|lol|oh|ah|hmm|um|well|ha|哈哈|呃|嗯)[\s,.!，。]*)?"
    r"(?:(?:暂时|暂且|先|现在|目前|还)(?=不))?"
    r"(?:no|nope|nah|no thanks|not now|not yet|not (?:right )?now|not at the moment|(?:maybe |perhaps )?later|"
    r"that's ok|i'm fine|no need|"
    r"不用|不要|不了|不需要|算了|没事|先不)"
)

# (pattern, points). Strong words say the user is angry at the service; mild ones are noise
# alone and only count together with another signal.
_FRUSTRATION: list[tuple[re.Pattern[str], int]] = [
    (re.compile(r"\b(?:fuck\w*|shit\w*|wtf|bullshit|pissed)\b"), 2),
    # A mild swear at the situation ("damn, flat tyre, how do I fix it?") is no anger at the service.
    (re.compile(r"\b(?:damn(?:it)?|crap|bloody hell)\b"), 1),
    (re.compile(r"\b(?:useless|pointless|hopeless|pathetic|worthless)\b"), 2),
    (re.compile(r"\bwast(?:e|ed|ing) (?:of )?(?:my |our |a |an |the )?(?:whole |entire )?(?:time|day|afternoon|"
                r"morning|evening|hours?|week|weekend)\b"), 2),
    (
        re.compile(
            r"\b(?:losing|lost|running out of|at the end of) (?:my |all )?(?:patience|tether|rope)|wits'? end|"
            r"beyond a joke|(?:is|are|'s|'re) (?:a |an |such a |an absolute |a complete |a total |a bloody )?"
            r"(?:joke|farce|nightmare|shambles|circus)\b|"
            r"(?:nobody|no one|no-one)(?: \w+){0,4} (?:cares?|helps?|bothers?)|"
            r"(?:explained|told you|said|asked|called|rung|written|chased)(?: this| that| it| you)? (?:\w+ )?"
            r"(?:three|four|five|six|several|multiple|many|\d+) times|"
            r"(?:losing|lose|lost) (?:\w+ )?(?:money|business|customers|clients|income|sales|orders|bookings)|"
            r"(?:hours|days|weeks|months) of my life|(?:getting|gotten|got|going|gone) nowhere|"
            r"(?:missed|miss|missing) (?:my |our |the |a )?(?:\w+'?s )?(?:wedding|funeral|birthday|exam|operation|"
            r"surgery|interview|graduation)|"
            r"(?:nobody|no one|no-one) (?:has |have |ever )?(?:called|rung|phoned|emailed|written|come|got) back|"
            r"(?:nobody|no one|no-one) (?:will |can |would |has |ever )?"
            r"(?:tell|explain|answer|respond|reply|get back)\w*|"
            r"(?:taken|took|take|taking|booked|used) (?:\w+ ){0,2}(?:leave|days? off|time off|holiday)\b|"
            r"(?:two|three|four|five|six|\d+) (?:\w+ )?(?:cancelled|missed|no-?shows?|visits|appointments)\b"
            r"[^?]{0,20}[.!]\s*"
            r"(?:two|three|four|five|six|\d+)\s*[.!]|patience (?:has |is )?(?:\w+ )?(?:run out|gone|worn thin|ran out)|"
            r"(?:missed|lost|cost me) (?:a |my |the |\w+ ){0,2}(?:interviews?|job|clients?|customers?|flights?|"
            r"appointments?|day'?s? (?:pay|work)|business|"
            r"(?:\w+ )?(?:days?|weeks?|hours?) (?:of )?(?:pay|work|wages|income))|"
            r"took (?:the|a) day off|"
            r"(?:third|fourth|fifth|sixth|seventh|tenth|umpteenth|\d+(?:st|nd|rd|th)) time (?:i'?(?:ve|m)|i have|that|"
            r"asking|explaining|calling|contacting|writing)|can'?t believe how (?:bad|badly|poor|poorly|terrible|awful|"
            r"useless|slow)|how hard can it be|(?:being|been|getting) ignored|"
            r"(?:absolutely|utterly|completely|totally|truly|beyond|extremely|incredibly) (?:ridiculous|unacceptable|"
            r"terrible|awful|absurd|horrible|fed up|disappointed|angry|furious|annoyed|useless|appalling)"
        ),
        2,
    ),
    (re.compile(r"\b(?:stupid|dumb|idiotic) (?:bot|robot|machine|ai|thing|assistant|system)\b"), 2),
    (re.compile(r"\b(?:frustrat\w*|fed up|sick (?:and tired )?of|furious|livid|infuriat\w*)\b"), 2),
    (re.compile(r"\bworst\b|\bi give up\b|\bfor (?:god'?s|heaven'?s|christ'?s) sake\b"), 2),
    (
        re.compile(
            r"\b(?:disgrace\w*|appalling|outrageous|disgusting|shocking (?:service|support)|incompetent|"
            r"scam\w*|rip-?off|ripped (?:me )?off|lied to|lying to me|i'?ve had enough|had it with|enough is enough|"
            r"never again|fed-up|beyond (?:a )?joke|shambles|horrendous|atrocious|unbelievable|"
            r"what a joke|are you kidding|you(?:'re| are) kidding|"
            r"i'?m (?:so |totally |completely |absolutely )?done with|done with (?:this|you)|"
            r"nobody (?:cares|helps|replies|answers|responds)|no one (?:cares|helps|replies|answers|responds)|"
            r"(?:still )?(?:no|zero) (?:reply|response|answer|help) (?:after|for|in)|you people|"
            r"(?:straight|simple) answer|"
            r"are you (?:even )?(?:reading|listening)|(?:zero|no) (?:answers|replies|responses)|"
            r"nobody (?:got|gets|has got) back)\b"
        ),
        2,
    ),
    (
        re.compile(
            r"\b(?:annoy\w*|ridiculous|terrible|awful|angry|upset|unacceptable|disappointed|"
            r"joke|absurd|nonsense|ugh+|argh+|seriously|come on|not happy|fix this|the hell|hell|horrible|"
            r"still waiting|been waiting|waited|weeks? (?:now|already|and nothing)|again\?+|unreal|"
            r"impossible|nothing works|never works|always broken)\b"
        ),
        1,
    ),
    (
        re.compile(
            r"垃圾|废物|妈的|他妈|卧槽|我靠|操你|气死|烦死|受不了|浪费(?:我的)?时间|什么破|破机器人|太差劲|滚|坑人|骗子|"
            r"太过分|忍无可忍|什么玩意|坑爹|骗人|欺骗|恶心|够了|无法接受|不能接受|失望透顶|糟透|烂透|没完没了|"
            r"搞什么鬼|说了等于没说|像话吗|不像话|你们自己说说|耐心\S{0,4}(?:没了|用完|耗尽)|没耐心|"
            r"丢了\S{0,3}(?:客户|工作|订单|生意)|损失了?\S{0,4}(?:生意|钱|订单|客户|收入)|耽误了|会不会办事|会不会做事|怎么办事的|气人|一直没人|没人管|没人理|再也不(?:买|用|来)|忍不了|太离谱|火大|抓狂|太差|真差|很差|套话|说辞|敷衍|"
            r"有没有人(?:管|负责)|到底管不管|管不管啊|这样对待|寒心|彻底失望|多少遍|好几遍|几遍了|认真点|认真看|无语了|真的无语|"
            r"浪费了?我?(?:一|半|整|好几|大半)?\S{0,3}(?:时间|天|下午|上午|晚上|小时)|"
            r"第[三四五六七八九十几]次(?:打电话|联系|来问|问|说|找|反映|投诉|解释)|"
            r"(?:说|问|讲|解释|打|联系|反映|催)了?(?:[三四五六七八九十几]|好几|好多|无数)(?:遍|次)|"
            r"亏钱|赔钱|亏损|请了\S{0,3}假|白等|白跑|错过了?\S{0,6}(?:婚礼|葬礼|面试|考试|手术|生日|毕业)|"
            r"(?:一点|毫无|没有任何|没有一点)进展|进展都没有|"
            r"没人(?:给我|跟我|和我)?(?:解释|回复|回答|处理|联系|说明|告诉)"
        ),
        2,
    ),
    (re.compile(r"无语|生气|不满意?|失望|着急|急死|离谱|搞什么|怎么回事|投诉|太慢|差劲|烦|郁闷|崩溃"), 1),
    (re.compile(r"又(?:多)?(?:扣|收|断|掉|坏)"), 1),  # "again" about a fault: counts beside another word
    # Harm done or a need unmet ("broke my ...", "can't pay rent"), and being left with it: beside another sign.
    (re.compile(r"\b(?:broke|broken|damaged|smashed|ruined|scratched|dented|lost) (?:my|our)\b|"
                r"\bcan'?t (?:pay (?:my |the )?(?:rent|bills?|mortgage)|afford|feed|get to work|go to work|work)\b|"
                r"(?:摔坏|弄坏|损坏|刮花|弄丢)了?(?:我|我们)|(?:房租|房贷|账单)\S{0,3}(?:交不了|付不了|交不上)|"
                r"付不起"), 1),
    (re.compile(r"\b(?:just|then) (?:left|walked off|drove off|hung up)\b|人就走了|就走了|挂了?我?电话"), 1),
    (re.compile(r"\bfor (?:\w+ )?(?:days|weeks|months)\b|^[一二三四五六七八九十两几\d]+(?:天|周|个?月|个?星期)了|"
                r"(?:坏|断|停|没)了?[一二三四五六七八九十两几\d]+(?:天|周|个?月|个?星期)"), 1),
    (re.compile(r"\b(?:small|young|little) (?:kids|children|ones)\b|\bkids at home\b|"
                r"出不了门|下不了楼|没法出门|孩子还小|"
                r"\b(?:second|third|fourth|fifth|sixth|\d+(?:nd|rd|th)) time\b|第[二三四五六七八九十几\d]+次|"
                r"\b(?:wedding|funeral|reception|ceremony|party|event)\b[^.?!]{0,40}\b(?:in an hour|today|tonight|"
                r"tomorrow|in \w+ (?:hours?|minutes))|"
                r"(?:婚礼|葬礼|婚宴|典礼|宴会)\S{0,12}(?:小时后|今天|明天|马上|就要)"), 1),
    (re.compile(r"\bnever (?:delivered|arrived|came|turned up|showed up)\b|没送到|没送来|没人来"), 1),
    (re.compile(r"\b(?:hasn'?t|haven'?t|has not|have not|not) (?:replied|responded|answered|called back|got back|"
                r"been in touch)\b[^.?!]{0,20}\b(?:in|for) (?:a|an|over a|\w+) (?:days?|weeks?|months?)\b|"
                r"[一二三四五六七八九十两几\d]+(?:天|周|个?星期|个?月)(?:都|了)?没(?:人)?(?:回复|回音|联系|答复)"), 1),
    # Someone who depends on the service, and going without it for days: each counts beside the other.
    (re.compile(r"\b(?:my (?:mother|father|mum|mom|dad|gran\w*|grandmother|grandfather|baby|newborn|elderly \w+|"
                r"disabled \w+|\w+ who is (?:disabled|ill|pregnant))|(?:is|am|'m|are) (?:\d{2}|pregnant|disabled|"
                r"housebound|on oxygen)\b)|我(?:妈|爸|母亲|父亲|奶奶|爷爷|外婆|姥姥)\S{0,4}[七八九]十|[七八九]十多岁|"
                r"宝宝|婴儿|孕妇|残疾|卧床"), 1),
    (re.compile(r"\bwithout (?:any )?(?:\w+ ){0,2}for (?:a |an |over a |more than a |\w+ )?(?:days?|weeks?|months?)\b"
                r"|[一二三四五六七八九十两几\d]+个?(?:天|周|星期|礼拜|月)(?:都|了)?没(?:有)?\S{1,4}了"), 1),
    # How long it has lasted, or a phrase said twice for emphasis ("十一天了，十一天！"): beside another sign.
    (re.compile(r"\bit'?s been (?:\w+ ){1,2}(?:days|weeks|months)\b"
                r"|[一二三四五六七八九十两几\d]+(?:天|周|个月|星期)\S{0,4}还没"), 1),
    # How long, said again with an exclamation ("two weeks. TWO WEEKS.", "五天了，五天！"): anger, not a typo.
    (re.compile(r"\b(\w+ (?:days?|weeks?|months?|hours?|times)|(?:day|week|month) \w+)\b[^.?!]{0,40}[.,!]+\s*\1\s*[.!]"
                r"|\b(\w+ (?:days|weeks|months|hours|times))[.!]+\s*\2\b"
                r"|\b(\w+) (?:days?|weeks?|months?|hours?|times)\b[^.?!]{0,40}[.,!]+\s*\3\s*[.!]"
                r"|([一二三四五六七八九十两几\d]+\S{0,2}(?:天|周|个月|星期|小时|次|遍))[了，,！!。]+\4[！!]"
                r"|\b((?:second|third|fourth|fifth|sixth|\w+teen|two|three|four|five|six|seven|eight|nine|ten|eleven|"
                r"twelve|twenty|\d+)\w* \w+)\b[^?]{0,60}[.!]\s*\5\s*[.!]"
                r"|(第[二三四五六七八九十几\d]+次)\S{0,20}[，,。.!！]\6[！!。]"), 2),
]
_SHOUT = re.compile(r"[!！]{3,}|[?？][!！]|[!！][?？]|[?？]{3,}")

_DIDNT_HELP = re.compile(
    r"\b(?:didn'?t|did not|doesn'?t|does not|won'?t|wasn'?t|isn'?t|is not) (?:help|helpful|useful|work|answer)\w*"
    r"|\bnot (?:helpful|useful|relevant|what i (?:asked|meant|need|wanted))\b|\bunhelpful\b"
    r"|\bstill (?:not working|broken|doesn'?t|does not|the same|can'?t|cannot|stuck)\b"
    r"|\b(?:that'?s|that is|this is) (?:wrong|not right|incorrect|not it)\b"
    r"|\byou(?:'re| are) not (?:listening|answering|understanding|getting it)\b"
    r"|\b(?:same|that) (?:answer|thing) again\b|\byou already (?:said|told me) that\b|\birrelevant\b"
    r"|\balready tried\b|\btried (?:that|this|it|everything|all (?:of )?that)\b|\bi (?:already )?did that\b"
    r"|\bdid(?:n'?t| not) (?:fix|solve|change)\b|\bnot (?:fixed|solved)\b|\bsame (?:problem|issue|error)\b"
    r"|\bkeeps? (?:happening|failing|crashing)\b|\bstill happening\b"
    r"|试过了|已经试|还是一样|还是这样|依旧|依然不|仍然不|没修好|又出现"
    r"|没用|没有用|不管用|没帮助|没有帮助|没帮上|不对|不是这个|答非所问|不是我(?:要|想|问)|还是不行|还是没|没解决|"
    r"解决不了|没听懂|你没懂|不相关|又是这个|说过了"
)


# --- inputs and decisions -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HandoffInputs:
    """Everything the policy looks at. ``best_score`` is None before retrieval (0.0 when
    retrieval found nothing); ``fault`` is a ``BotError.code`` of a failed answer attempt."""

    text: str
    history: Sequence[Turn] = ()
    offered_human_before: bool = False
    user_attributes: Mapping[str, Any] = field(default_factory=dict)
    best_score: float | None = None
    fault: str | None = None
    now: datetime | None = None
    handoff_requested: bool = False
    #: Probability that the turn needs a person, from the learned classifier (None: not scored).
    #: Kept with the inputs so that a replay decides exactly as the live policy did.
    learned_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "history": [t.to_dict() for t in self.history],
            "offered_human_before": self.offered_human_before,
            "user_attributes": {k: _jsonable(v) for k, v in self.user_attributes.items()},
            "best_score": self.best_score,
            "fault": self.fault,
            "now": self.now.isoformat() if self.now is not None else None,
            "handoff_requested": self.handoff_requested,
            "learned_score": self.learned_score,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HandoffInputs:
        now = data.get("now")
        score = data.get("best_score")
        learned = data.get("learned_score")
        return cls(
            text=str(data.get("text", "")),
            history=tuple(Turn.from_dict(t) for t in data.get("history", ())),
            offered_human_before=bool(data.get("offered_human_before", False)),
            user_attributes=dict(data.get("user_attributes") or {}),
            best_score=None if score is None else float(score),
            fault=data.get("fault"),
            now=datetime.fromisoformat(now) if now else None,
            handoff_requested=bool(data.get("handoff_requested", False)),
            learned_score=None if learned is None else float(learned),
        )


def _jsonable(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool | type(None) | list | dict) else str(v)


@dataclass(frozen=True, slots=True)
class HandoffDecision:
    action: Action
    reason_code: str
    detail: str
    inputs: HandoffInputs
    layer: Layer = "default"
    #: False outside business hours: a handoff still queues, but the notice says so.
    humans_available: bool = True

    def to_record(self) -> dict[str, Any]:
        return {
            "policy_version": POLICY_VERSION,
            "action": self.action,
            "reason_code": self.reason_code,
            "detail": self.detail,
            "layer": self.layer,
            "humans_available": self.humans_available,
            "inputs": self.inputs.to_dict(),
        }


# --- detectors --------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return normalize(text).replace("’", "'")


def is_human_request(text: str) -> bool:
    """Does the user ask for a person (English or Chinese)? Questions about people do not."""
    return asks_for_person(_norm(text)) is not None


def is_affirmative(text: str) -> bool:
    norm = normalize(text).replace("’", "'")
    if len(norm.split()) > 8 or len(norm) > 40:
        return False
    return bool(_AFFIRM_EN.match(norm) or _AFFIRM_ZH.match(norm))


def _is_decline(text: str) -> bool:
    norm = normalize(text).replace("’", "'")
    return len(norm) <= 40 and bool(_DECLINE.match(norm))


def frustration_points(text: str) -> int:
    """Points of frustration in one message: lexicon (EN/ZH, profanity), shouting, ALL CAPS."""
    norm = normalize(text).replace("’", "'")
    points = 0
    for pattern, weight in _FRUSTRATION:
        if pattern.search(norm):
            points = max(points, weight) if weight == 2 else points + weight
    if _SHOUT.search(text):
        points += 1
    letters = [c for c in text if c.isascii() and c.isalpha()]
    if len(letters) >= 8 and sum(c.isupper() for c in letters) / len(letters) >= 0.7:
        # A whole shouted sentence counts double; a shouted word or two is often an acronym.
        points += 2 if len(letters) >= 15 else 1
    return points


def _key(text: str) -> str:
    return re.sub(r"[^\w]+", "", normalize(text))


# Words that do not change what a question is about ("I need the invoice" = "get the invoice").
_LIGHT = frozenset(
    [
        "get",
        "need",
        "want",
        "know",
        "tell",
        "help",
        "please",
        "possible",
        "way",
        "hi",
        "hello",
        "still",
        "again",
        "ok",
        "okay",
        "thanks",
        "why",
        "did",
        "does",
        "have",
        "been",
        "am",
        "im",
        "i'm",
        "just",
        "really",
        "also",
        "then",
    ]
)
_STOP_FOR_SIM = frozenset(
    [
        "a",
        "an",
        "the",
        "to",
        "of",
        "and",
        "or",
        "in",
        "on",
        "at",
        "for",
        "is",
        "are",
        "was",
        "were",
        "be",
        "do",
        "my",
        "your",
        "me",
        "can",
        "could",
        "would",
        "should",
        "how",
        "what",
        "when",
        "where",
        "which",
        "who",
        "this",
        "that",
        "with",
        "from",
        "by",
        "as",
        "if",
        "there",
        "their",
        "our",
        "us",
        "not",
        "no",
        "so",
        "about",
    ]
)
_SIM_ZH_STOP = frozenset("的了吗呢吧啊呀么是在我你他她它们这那有和与及或怎如何什么请问一个到底可以能那不没还")


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "e"):
        if len(word) > 4 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def _sim_tokens(text: str) -> set[str]:
    norm = normalize(text)
    words = {_stem(w) for w in re.findall(r"[a-z0-9]+", norm) if len(w) > 1}
    words -= {_stem(w) for w in _LIGHT}
    words -= _STOP_FOR_SIM
    chars = {c for c in re.findall(r"[\u3400-\u9fff]", norm) if c not in _SIM_ZH_STOP}
    return words | chars


#: Character-level comparison (quadratic in the length) only for messages up to this long; longer
#: ones are compared by their words alone, so a long message cannot cost seconds of CPU per turn.
_SIM_MAX_CHARS = 300


def _similar(a: str, b: str) -> bool:
    ka, kb = _key(a), _key(b)
    short = min(len(ka), len(kb)) >= 6 and max(len(ka), len(kb)) <= _SIM_MAX_CHARS
    if short and SequenceMatcher(None, ka, kb, autojunk=False).ratio() >= 0.85:
        return True
    ta, tb = _sim_tokens(a), _sim_tokens(b)
    if min(len(ta), len(tb)) < 2:
        return False
    # Overlap, or the shorter one asked again inside a longer message ("it's been 20 days, where
    # is my refund").
    return len(ta & tb) / len(ta | tb) >= 0.6 or len(ta & tb) / min(len(ta), len(tb)) >= 0.8


# The bot's own turns that show it failed: it found nothing, or said the same thing again.
_BOT_FAILED = re.compile(
    r"couldn'?t find|could not find|can'?t find|don'?t have (?:that|any) information|not sure|no information|"
    r"没有找到|没找到|找不到|不确定|没有相关"
)
# The user pushing back on the last answer. Strong ones say the answer missed; weak ones ("no")
# only count after the bot failed.
_PUSHBACK_STRONG = re.compile(
    r"\b(?:(?:still|that'?s|this is|that is) not (?:it|what i)|not what i (?:asked|meant|need|want)\w*|"
    r"you(?:'re| are) not (?:understanding|getting|reading|listening)|you don'?t (?:understand|get it|get me)|"
    r"(?:same|identical) (?:answer|reply|response|thing)|(?:already|just) (?:said|told you|asked)|"
    r"i (?:didn'?t|did not) (?:ask|order|say|want)|i asked (?:about|for)|wrong answer|read (?:my|what i)|"
    r"answer (?:my|the) question|or not\W*$|none of (?:this|that|these|those|it|them|your \w+) (?:answers?|helps?|"
    r"helped|is (?:what|it|relevant)|works?|makes sense))"
    r"|没听懂|你没懂|听不懂|不是这个|不是我(?:要|想|问)|我问的是|我是要|我说的是|答非所问|又是这个|一样的(?:回答|答案)|说过了|"
    r"没回答|都不是我"
)
# The problem persists after the user did what the bot said ("did that too. still off.", "不行，一样").
_STILL_FAILING = re.compile(
    r"\bstill (?:no |not |off\b|down\b|dropping|broken|failing|failed|the same|nothing|doesn'?t|isn'?t|won'?t|can'?t|"
    r"cannot|disconnect\w*|buffering|slow|crashing|freezing|rebooting|restarting|dead|getting|showing|happening)"
    r"|还是(?:不|没|断|失败|一样|老样子|重启|掉|卡|慢|连不上|打不通|上不了)|一样[。.!！]*$|依旧|依然"
)
_PUSHBACK_WEAK = re.compile(r"^\W*(?:no|nope|nah|wrong|not really|still no|no no|不是|不对|错了|没有)\b")


def _bot_failures(history: Sequence[Turn]) -> int:
    seen: set[str] = set()
    failed = 0
    for t in history:
        if t.role != "bot":
            continue
        key = _key(t.text)
        if _BOT_FAILED.search(normalize(t.text)) or key in seen:
            failed += 1
        seen.add(key)
    return failed


# A question (EN/ZH) or an acknowledgement: what a user says who is not reporting the same trouble.
_QUESTION = re.compile(
    r"[?？]|^\W*(?:so |and |but |ok,? |okay,? |also |then |wait,? |great,? |cool,? )?(?:how|what|when|where|which|who|"
    r"why|is|are|can|could|do|does|did|will|would|should|shall|may|any)\b(?! (?:that|it|this|all|both|everything)\b)|"
    r"吗|怎么|如何|多少|几[点天个时号]|哪|什么|是否|能否|可不可以|能不能|要不要|有没有|呢$"
)
_ACK = re.compile(
    r"\b(?:ok|okay|great|perfect|thanks?|thank you|thx|cheers|got it|makes sense|found it|appreciate\w*|"
    r"done(?! (?:that|it|this|all|both|everything))|worked|works now|"
    r"fixed|sorted|that'?s it|brilliant|lovely|cool|nice)\b|谢|好的|明白|了解|可以了|行了|搞定|好了|成功了|找到了"
)
# Something in the turn says the trouble is the same as before ("still", "again", "already", "no", 还是, 又).
_PERSISTS = re.compile(
    r"\b(?:still|again|already|same|nothing|never|not|no|nope|keeps?|anymore|either|yet|circles|loop)\b|n'?t\b|"
    r"还是|又|已经|也(?:是|试|没|不)|没|不|仍|依然|依旧|一样|照样"
)
# The bot's own offer of a person, in its earlier turns.
_BOT_OFFERED = re.compile(
    r"\b(?:would you like|shall i|should i|do you want|want me to|can i|may i)\b[^.?!]{0,40}\b(?:person|someone|"
    r"somebody|human|agent|colleague|team|staff|connect you|transfer you|put you through)\b|"
    r"转接?人工|联系\S{0,8}(?:工作人员|客服|同事)|要不要我\S{0,10}(?:人工|工作人员|客服|同事)|需要\S{0,6}(?:转|联系)\S{0,6}人工"
)


def _reports_trouble(text: str) -> bool:
    """A statement (no question, no thank-you): the user reporting, not asking something new."""
    norm = _norm(text)
    return not _QUESTION.search(norm) and not _ACK.search(norm)


def conversation_trouble(text: str, history: Sequence[Turn]) -> str | None:
    """What in the conversation (not in this turn's words) shows the bot failing this user, or None.

    Features that carry over to any business: the bot gave up twice; the user keeps reporting the
    same trouble after two answers (two statements in a row, no question, no thanks, the bot asked
    nothing); a person was offered and the user went on reporting trouble; frustration in an earlier
    turn. The learned layer hands off at a lower probability when one is present."""
    bot_turns = [t for t in history if t.role == "bot"]
    if not bot_turns:
        return None
    if _bot_failures(bot_turns[-4:]) >= 2:
        return "the bot could not answer twice"
    users = _user_turns(history, 2)
    reporting = _reports_trouble(text)
    if len(bot_turns) >= 2 and reporting and users and _reports_trouble(users[-1]) and not re.search(
            r"[?？]", bot_turns[-1].text):
        return "the trouble persists after two answers"
    if reporting and any(_BOT_OFFERED.search(normalize(t.text)) for t in bot_turns[-3:]):
        return "went on after an offer of a person"
    if reporting and any(frustration_points(u) for u in users):
        return "frustrated earlier"
    return None


def persisting_trouble(text: str, history: Sequence[Turn]) -> bool:
    """After two answers the user reports the same trouble again in other words ("already did all of
    that", "连着WiFi呢，还是同样的错误"): a statement after a statement, with a word saying it persists."""
    if conversation_trouble(text, history) != "the trouble persists after two answers":
        return False
    norm = _norm(text)
    # A bare "no" says too little alone (it may answer a question of the bot's own).
    substantial = len(re.findall(r"[a-z0-9']+", norm)) >= 3 or len(re.findall(r"[\u3400-\u9fff]", norm)) >= 4
    return substantial and bool(_PERSISTS.search(norm))


def repeated_failure(text: str, history: Sequence[Turn]) -> str | None:
    """Why the conversation shows the bot failing this user again, or None.

    After two answers (or one that failed) a user who pushes back, or who asks the same thing
    again after a failed answer, is not helped by a third try."""
    bot_turns = [t for t in history if t.role == "bot"][-6:]
    if not bot_turns:
        return None
    norm = _norm(text)
    failures = _bot_failures(bot_turns)
    strong = bool(_PUSHBACK_STRONG.search(norm) or _DIDNT_HELP.search(norm) or _STILL_FAILING.search(norm))
    if strong and (failures or len(bot_turns) >= 2):
        return "pushed back after the bot failed" if failures else "pushed back after two answers"
    if failures and _PUSHBACK_WEAK.search(norm) and len(norm) <= 40:
        return "said no after the bot failed"
    if failures and any(_similar(text, p) for p in _user_turns(history, 6)):
        return "asked again after the bot failed"
    if persisting_trouble(text, history):
        return "the trouble persists after two answers"
    return None


def _user_turns(history: Sequence[Turn], last: int) -> list[str]:
    return [t.text for t in history if t.role == "user"][-last:]


def _is_vip(attributes: Mapping[str, Any], rules: Mapping[str, Sequence[str]]) -> str | None:
    for key, allowed in rules.items():
        value = attributes.get(key)
        if value is None:
            continue
        values = value if isinstance(value, list | tuple | set) else [value]
        wanted = {str(a).casefold() for a in allowed}
        for v in values:
            if str(v).casefold() in wanted:
                return f"{key}={v}"
    return None


# --- the layers -------------------------------------------------------------------------------
def _humans_available(inputs: HandoffInputs, settings: HandoffSettings) -> bool:
    bh = settings.business_hours
    if bh is None or inputs.now is None:
        return True
    return bh.is_open(inputs.now)


def decide_fault(inputs: HandoffInputs, settings: HandoffSettings) -> HandoffDecision | None:
    if inputs.fault is None:
        return None
    avail = _humans_available(inputs, settings)
    if inputs.fault == "circuit_open":
        return HandoffDecision("handoff", "circuit_open", "provider circuit open", inputs, "fault", avail)
    return HandoffDecision("handoff", "provider_error", inputs.fault, inputs, "fault", avail)


def decide_pre_retrieval(inputs: HandoffInputs, settings: HandoffSettings) -> HandoffDecision:
    """Faults, rules and signals: everything that needs no retrieval."""
    fault = decide_fault(inputs, settings)
    if fault is not None:
        return fault
    avail = _humans_available(inputs, settings)
    norm = _norm(inputs.text)
    vip = _is_vip(inputs.user_attributes, settings.vip_attributes)
    found = _rule(inputs, settings, norm, vip if avail else None) or _signal(inputs, settings, norm)
    if found is None:
        found = _learned(inputs, settings, norm)
    if found is not None:
        action, reason, detail, layer = found
        return HandoffDecision(action, reason, detail, inputs, layer, avail)
    if vip is not None:
        return HandoffDecision("answer", "outside_business_hours", f"{vip}: nobody on duty", inputs, "rule", avail)
    return HandoffDecision("answer", "none", "", inputs, "default", avail)


#: (action, reason code, detail, layer) of a layer that decided.
_Found = tuple[Action, str, str, Layer]


def _handoff(reason: str, detail: str, layer: Layer) -> _Found:
    return "handoff", reason, detail, layer


def _rule(inputs: HandoffInputs, settings: HandoffSettings, norm: str, vip_on_duty: str | None) -> _Found | None:
    """(a) rules: the ``handoff.request`` frame, always-rules, topics, requests, callbacks, offers, VIP."""
    if inputs.handoff_requested:
        return _handoff("user_request", "handoff.request frame", "rule")
    rule = matched_rule(norm, settings.rule_phrases)
    if rule is not None:
        name, what = rule
        return _handoff(name if name in ALWAYS_RULES else f"rule:{name}", what, "rule")
    topic = first_phrase(norm, settings.human_only_topics)
    if topic is not None:
        return _handoff("human_only_topic", topic, "rule")
    asked = asks_for_person(norm)
    if asked is not None:
        return _handoff("user_request", asked, "rule")
    if asks_for_callback(norm):
        return _handoff("callback_request", "asked to be called back", "rule")
    if inputs.offered_human_before:
        if is_affirmative(inputs.text):
            return _handoff("offer_accepted", "accepted the offer of a person", "rule")
        if _is_decline(inputs.text):
            return "answer", "offer_declined", "declined the offer", "rule"
    if vip_on_duty is not None:
        return _handoff("vip", vip_on_duty, "rule")
    return None


def _signal(inputs: HandoffInputs, settings: HandoffSettings, norm: str) -> _Found | None:
    """(c) signals over the conversation: frustration, repeats, "didn't help", repeated failure."""
    points = frustration_points(inputs.text)
    if points and any(frustration_points(t) for t in _user_turns(inputs.history, 3)):
        points += 1  # frustration that persists across turns escalates
    if points >= settings.frustration_threshold:
        return _handoff("frustration", f"{points} points", "signal")
    prior = _user_turns(inputs.history, 10)
    repeats = 1 + sum(_similar(inputs.text, p) for p in prior)
    if repeats >= settings.repeat_threshold:
        return _handoff("repeated_question", f"asked {repeats} times", "signal")
    if _DIDNT_HELP.search(norm):
        count = 1 + sum(bool(_DIDNT_HELP.search(normalize(p))) for p in prior[-6:])
        if count >= settings.didnt_help_threshold:
            return _handoff("didnt_help", f"{count} times", "signal")
    failing = repeated_failure(inputs.text, inputs.history)
    if failing is not None:
        return _handoff("repeated_failure", failing, "signal")
    return None


# A short thank-you or acknowledgement ("辛苦了", "got it, cheers") needs nobody, whatever its score.
_THANKS = re.compile(
    r"^\W*(?:thanks?|thank you|thx|ty|cheers|great|perfect|nice|cool|ok|okay|got it|noted|brilliant|"
    r"谢谢|多谢|感谢|辛苦了?|收到|好的|明白|了解|知道了)(?:[\s,.!，。！~～]*\w{0,12}){0,3}[\W_]*$(?<!for nothing)"
)


#: In a conversation that already shows trouble (:func:`conversation_trouble`) the learned layer
#: hands off at this fraction of ``learned_threshold``: the words and the conversation together.
CONTEXT_THRESHOLD_FACTOR = 0.5


# Praise, or a complaint denied: what the learned layer must not read as one.
_PRAISE = re.compile(
    r"\bno complaints?\b|\bnot (?:a )?complain\w*|\bnothing to complain|\bnot a complaint\b|"
    r"\b(?:brilliant|lovely|great job|excellent|fantastic|very helpful|so helpful|really helpful|professional)\b|"
    r"没(?:什么|有)\S{0,2}投诉|不是(?:要)?投诉|很专业|很好|很棒|非常好|非常专业|点赞|表扬"
)


def _learned(inputs: HandoffInputs, settings: HandoffSettings, norm: str) -> _Found | None:
    """(l) learned: what the lexicons miss; never a question about how support works, never a thank-you.
    The threshold is lower when the conversation shows trouble (the detail names it)."""
    learned = inputs.learned_score
    if learned is None or settings.learned_threshold > 1.0:
        return None
    if is_question_about_people(norm) or (len(norm) <= 40 and _THANKS.match(norm)):
        return None
    if is_hypothetical_safety_question(norm) or in_another_sense(norm):
        return None  # "what if ...", "会不会...": a general question; a hazard happening now is a rule's
    if _PRAISE.search(norm) and frustration_points(inputs.text) < 2:
        return None  # "no complaints, the crew were brilliant": the words of a complaint, none made
    if learned >= settings.learned_threshold:
        return _handoff("learned", f"p={learned:.3f}", "learned")
    trouble = conversation_trouble(inputs.text, inputs.history)
    if trouble is not None and learned >= settings.learned_threshold * CONTEXT_THRESHOLD_FACTOR:
        return _handoff("learned", f"p={learned:.3f} in context: {trouble}", "learned")
    return None


def decide_post_retrieval(pre: HandoffDecision, best_score: float, settings: HandoffSettings) -> HandoffDecision:
    """Add the evidence layer to a pre-retrieval ``answer``."""
    inputs = replace(pre.inputs, best_score=best_score)
    if pre.action != "answer" or pre.reason_code == "offer_declined":
        return replace(pre, inputs=inputs)
    if best_score >= settings.score_threshold:
        return replace(pre, inputs=inputs)
    detail = f"best score {best_score:.3f} < {settings.score_threshold}"
    avail = pre.humans_available
    if inputs.offered_human_before:
        return HandoffDecision("handoff", "no_evidence_after_offer", detail, inputs, "evidence", avail)
    if settings.offer_before_handoff:
        return HandoffDecision("offer_human", "no_evidence", detail, inputs, "evidence", avail)
    return HandoffDecision("handoff", "no_evidence", detail, inputs, "evidence", avail)


def decide(inputs: HandoffInputs, settings: HandoffSettings) -> HandoffDecision:
    """The whole policy; the evidence layer applies only when ``inputs.best_score`` is known."""
    pre = decide_pre_retrieval(inputs, settings)
    if inputs.best_score is None:
        return pre
    return decide_post_retrieval(pre, inputs.best_score, settings)
