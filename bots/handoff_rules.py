"""The rule lexicons of the handoff policy, English and Chinese.

Rules that always hand off (``safety``, ``legal``) come first: a user who reports smoke or
threatens to sue must reach a person whatever else the message says. A tenant adds its own
phrases per rule through ``HandoffSettings.rule_phrases`` (plain phrases, never regexes: a tenant
pattern must not be able to stall the event loop).

Requests for a person are read from their form: a desire or imperative with a person, team or
transfer verb in it ("I'd like to discuss my contract with a member of staff", "叫你们主管来"). They
are told apart from questions *about* people ("does priority support mean I reach a person
quicker?", "人工客服周日休息吗"): a first-person or imperative form wins; a question about how
support works (its hours, cost, language, wait) without one does not hand off.

A hazard *report* is told from a question *about* hazards: a conditional or generic question, or a
yes/no question with nothing of the user's in it and nothing happening now, is a question (ZH: 会…吗
with no 了, and no hazard in an earlier clause). Words in another sense ("smoking hot", "bill
shock", "my sister is a lawyer", "the app crashed", a scam call) are exempt.

Every pattern runs on :func:`bots.text.normalize`'d text (NFKC, casefolded).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from bots.text import normalize

__all__ = [
    "ALWAYS_RULES",
    "asks_for_callback",
    "asks_for_person",
    "first_phrase",
    "in_another_sense",
    "is_hypothetical_safety_question",
    "is_question_about_people",
    "matched_rule",
    "phrase_in",
]

# --- rules that always hand off ----------------------------------------------------------------
_SAFETY_EN = re.compile(
    r"\b(?:smoke (?:is )?(?:coming|came|pouring|rising)|(?:there'?s|there is|saw|see|seeing|some|lots of|"
    r"with|and|black|white) smoke\b|smoking|smoky|smoke (?:from|out of)|smell(?:s|ed|ing)? (?:of |like )?"
    r"(?:something(?:'s| is)? )?(?:smoke|burning|burnt|gas|plastic burning|melting)|"
    r"burning (?:smell|odou?r|plastic)|smells? (?:weird|funny|strange|odd|of burning)|"
    r"(?:weird|funny|strange|odd|chemical|acrid|toxic|pungent) (?:smell|odou?r)|"
    r"burnt (?:smell|odou?r|plastic)|smells? burnt|"
    r"smells? (?:of |like )?(?:chemicals?|acrid|toxic|hot\b)|"
    r"(?:roof|tile|slate|panel|gutter|chimney|bracket|mount)s?\b[^.?!]{0,25}\b(?:loose|flapping|hanging off|"
    r"falling off|fell off|blown off|came off|come off)|"
    r"(?:nearly|almost) (?:hit|fell on|landed on) (?:me|my|him|her|someone|us)|"
    r"sparks?|sparking|sparked|arcing|"
    r"caught fire|catch(?:es|ing)? fire|on fire|fire hazard|started a fire|flames?|(?:there'?s|there is|there was|"
    r"a|small|big) fire\b|fire (?:broke out|started)|"
    r"(?:liquid|fluid|acid|something) (?:is )?(?:leaking|leaked|dripping|oozing|coming) (?:out|from)|"
    r"(?:bang|pop|popping|hiss\w*|crackl\w*|sizzl\w*|buzzing) (?:noise|sound)?\s*(?:from|in|inside|out of|when|"
    r"while)|(?:heard|was) (?:a )?(?:loud )?(?:bang|pop|explosion)|"
    r"(?:battery|charger|cell|pack)\b[^.?!]{0,30}\b(?:puffed|swollen|swelled|bulg\w*|bloated|cracked|"
    r"deformed|leak\w*|hiss\w*)|"
    r"overheat\w*|over-heat\w*|too hot to (?:touch|hold)|(?:gets?|got|getting|is|was|became|running) "
    r"(?:really |very |extremely |super |dangerously |so )?(?:hot|scalding)\b|melt(?:ed|ing)|"
    r"electric(?:al)? shock|(?:shocked|electrocuted|zapped) me|got (?:a |an )?shock (?:from|off|when|touching)|"
    r"(?:got|get|gets|getting) zapped|live (?:wire|cable)s?|exposed wir\w*|"
    r"(?:wires?|cables?) (?:looks?|is|are|still) live\b|looks live\b|bare wires?|wires? (?:exposed|bare|sticking out)|"
    r"(?:pole|mast|tree)s? (?:\w+ )?(?:is |are )?(?:leaning|fallen|down|came down)|"
    r"(?:line|cable|wire)s? (?:is |are )?(?:hanging|dangling) (?:low|down|loose)|"
    r"(?:cable|wire|wiring|pole)s?\b[^.?!]{0,30}\b(?:hanging|dangling|fallen|fell|snapped|lying|sticking) "
    r"?(?:out|down|loose|off)?|"
    r"(?:fallen|downed) (?:power |telephone |phone )?(?:cable|wire|line|pole)s?|"
    r"(?:cable|wire|line|pole|mast|post)s?\b[^.?!]{0,40}\b(?:come|fallen|gone|blown|came|fell|blew) "
    r"(?:down|over|loose)|"
    r"(?:got|get|gets|getting|gave (?:me|him|her|us)|felt) (?:a )?(?:jolt|zap|tingle)\b|"
    r"water\b[^.?!]{0,40}\b(?:extension|socket|plug|power strip|outlet|light|lamp|fuse ?box|wiring|electrics|"
    r"meter|switch)|"
    r"(?:swallow\w*|ate|eaten|chewed|licked)\b[^.?!]{0,20}\b(?:batter\w*|magnets?|pills?|tablets?|chemicals?|bleach|"
    r"detergent|capsules?|medicines?|medication)|allergic reaction|"
    r"(?:can'?t|cannot|struggling to) breathe|chest pains?|(?:feels?|feeling|felt) (?:very |really )?(?:dizzy|faint)|"
    r"passed out|fainted|unconscious|"
    r"(?:extension|socket|plug|power strip|outlet|electrics|wiring|fuse ?box|consumer unit|switch|meter)\b[^.?!]{0,30}"
    r"\b(?:wet|water)\b|blackened|scorch\w*|charred|"
    r"brakes? (?:failed|fail|failing|gave out|stopped working|not working|don'?t work|doesn'?t work)|"
    r"(?:throttle|accelerator) (?:is |got )?stuck|accelerat\w* (?:on|by) (?:its|it) own|"
    r"snapped (?:off )?(?:mid-ride|while)|(?:i|we|he|she|they) (?:crashed|fell off|was thrown off)|"
    r"crashed (?:into|my (?:bike|car|scooter))|(?:glass|door|oven|window)\w*\b[^.?!]{0,15}\b(?:shattered|"
    r"exploded|burst)\b|bleeding|"
    r"(?:stuck|trapped) (?:inside|in (?:the |a |an )?(?:lift|elevator|car|room|building|garage|cabin|shower))|"
    r"(?:someone|somebody|people|person|neighbour|neighbor|child|kid|son|daughter|baby|mum|mom|dad|man|woman) "
    r"(?:is |are |got |was )?(?:stuck|trapped) (?:inside|in (?:the|a|an|there)|between)|"
    r"leak\w* (?:\w+ )?(?:chemicals?|acid|liquid|fluid)|"
    r"(?:hands?|skin|eyes?|fingers?) (?:are |is )?(?:stinging|burning|blistering)|"
    r"gas leak|leaking gas|carbon monoxide|"
    r"explod\w*|explosion|blew up|"
    r"(?:swollen|swelling|bulging|puffed up|leaking) battery|battery (?:is )?(?:swollen|swelling|bulging|"
    r"leaking)|"
    r"(?:burned|burnt|injured|hurt|cut|scalded) (?:my|his|her|our|their) (?:\w+ )?(?:hand|finger|palm|arm|leg|skin|"
    r"face|child|son|daughter|kid|baby)|"
    r"injur(?:ed|y)|safety (?:hazard|issue|problem|concern|risk)|dangerous)"
)
_SAFETY_ZH = re.compile(
    r"冒烟|起火|着火|失火|火花|打火|冒火|火苗|烧焦|焦味|糊味|烧糊|烧起来|烧坏|过热|发烫|烫手|很烫|太烫|特别烫|"
    r"漏电|触电|电到|电了我|爆炸|炸了|鼓包|电池膨胀|电池鼓|漏气|煤气味|燃气泄漏|煤气泄漏|融化|熔化|烫伤|受伤|"
    r"漏液|液体(?:漏|流|渗)|漏出(?:液体|来)|渗出|嘶嘶|滋滋|噼啪|啪的一声|砰的一声|巨响|爆响|异响|冒泡|变形|"
    r"电池\S{0,6}(?:裂|鼓|胀|漏|烫)|"
    r"被电|电了一下|吞了|吞下|误食|误服|过敏反应|过敏了|呼吸困难|晕倒|头晕|摔下来|摔倒|摔了一跤|突然加速|烧黑|熏黑|烧穿|跳闸\S{0,8}烧|烫得|刹车失灵|刹不住|车\S{0,2}失控|流血|摔伤|撞伤|"
    r"(?:水|漏水|渗水)\S{0,8}(?:灯|插座|插头|插线板|排插|插排|电源|电线|电箱|电表|开关|配电|电器|电闸|电箱|总闸)|冒\S{0,2}烟|刺鼻|化学味|插座\S{0,3}(?:黑|焦)|差点砸|砸到|"
    r"(?:屋顶|瓦|支架|板子|面板)\S{0,6}(?:松了|松动|掉了|掉下|要掉|晃)|困人|被困|困在|炸裂|爆裂|"
    r"(?:皮肤|手|眼睛)\S{0,3}(?:刺痛|灼伤|灼痛|起泡)|化学品?\S{0,4}(?:漏|洒)|"
    r"误吃|吃了\S{0,8}(?:药|电池|磁铁|干燥剂)|电(?:线|缆)\S{0,4}(?:掉|断|裸露|垂|露在外|露出|外露)|裸露\S{0,2}电(?:线|缆)|线\S{0,3}垂得?\S{0,2}低|"
    r"(?:电线杆|线杆|电杆|杆子)\S{0,3}(?:歪|倒|断|折)|冒了?\S{0,3}火|"
    r"安全隐患|危险"
)
# Questions about a safety feature, not a report of a hazard.
_SAFETY_NOT = re.compile(
    r"\b(?:overheat(?:ing)? protection|protect(?:ion|s)? against|prevent\w*|avoid\w*|fire-?proof|"
    r"fire-?resistant|flame-?retardant|smoke (?:detector|alarm)s?|no smoking|"
    r"quit smoking|smoking area|safety (?:certificat\w*|standard|rating|feature|data sheet)|smoke test\w*|"
    r"smoking hot|(?:deals?|offers?|prices?|sales?) (?:is |are )?on fire|fire (?:tv|stick|tablet|sale)|firewall|"
    r"sparks? (?:loyalty|tier|plan|points|rewards?|members?\w*|card)|(?:bill|sticker|price) shock|"
    r"(?:price|cost|rate|fee|bill|charge|speed|ping|latency|rental)s?\b[^.?!]{0,30}\b(?:come|gone|came|went) down)\b"
    r"|防过热|过热保护|防火|阻燃|防爆|防\S{0,3}(?:漏电|触电|爆|火|水)\S{0,2}保护|如何避免|怎么避免|怎样避免|防止|"
    r"烟雾报警|禁止吸烟|爆款|火锅|火爆|热点"
)
# A question about hazards in general ("what should I do if my battery ever starts smoking?"), not
# a report of one happening now.
_SAFETY_HYPOTHETICAL_EN = re.compile(
    r"^(?:so |and |but |also |hi,? |hey,? )?(?:what|why|how|is it|is that|are|can|could|do|does|should|will|would|"
    r"when|which|any)\b[^.!]*\b(?:if|ever|whenever|in case|sometimes|usually|normally|warning signs?|signs?|"
    r"dangerous|safe|risk\w*|likely|prone|possible|cause|happen\w*)\b"
)
_YES_NO_EN = re.compile(r"^(?:so |and |but |also |hi,? |hey,? )?(?:can|could|will|would|might|may|is|are|"
                        r"does|do|should)\b")
# Something of the user's, or happening now ("smoke is coming out"): a report, even as a question.
_REPORT_EN = re.compile(r"\b(?:my|our|mine|just|now|again|keeps?|already|currently)\b|\b(?:is|are) \w+ing\b")
_SAFETY_HYPOTHETICAL_ZH = re.compile(
    r"会不会|怎么判断|如何判断|怎样判断|是否会|可能会|为什么会|什么情况下|安全吗|危险吗|有没有危险|有危险吗|如果|万一|"
    r"要是|一般|通常|怎么预防|如何预防|注意什么|注意事项|征兆|迹象|症状"
)

_LEGAL_EN = re.compile(
    r"\b(?:lawyers?|attorneys?|solicitors?|legal (?:action|proceedings|steps|counsel|route|measures)|"
    r"sue (?:you|them|your|the|this|for|over)|(?:going to|gonna|will|i'?ll|shall|intend to) sue|suing|sued|lawsuit|"
    r"(?:take|taking) (?:you|this|it|them) to (?:the )?(?:court|ombudsman|regulator|press|media)|see you in court|"
    r"(?:go|going|went) to (?:court|the police|the press|the media)|small claims|court case|formal notice|"
    r"letter before action|class action|(?:report(?:ing)?|escalat(?:e|ing)|refer(?:ring)?) "
    r"(?:you|this|your company|it|the matter|my complaint) to (?:the )?(?:police|authorities|"
    r"regulator|ombudsman|press|media|ofcom|fcc|ftc|bbb|"
    r"(?:\w+ ){0,2}\w*(?:zentrale|commission|authority|agency|bureau|council|standards))|"
    r"(?:call|calling|contact|contacting) the police|this is (?:fraud|theft|illegal)|fraudulent (?:charge|payment|"
    r"transaction)s?|(?:your|the company'?s) legal (?:department|team)|"
    r"(?:file|filed|filing|open|opened|opening|raise|raised|start|started) (?:a )?(?:dispute|chargeback)|"
    r"dispute (?:this|the|that) (?:charge|payment|transaction)|reverse the (?:payment|charge|transaction)|"
    r"ofcom|fcc|acma|consumer (?:protection|rights|council|association|agency)|"
    r"(?:trading standards|consumer protection|ombudsman|better business bureau|bbb|ftc|regulator|"
    r"data protection authority|ico)\b|"
    r"(?:formal|official|written) complaint|(?:file|lodge|make|submit|raise|escalate) (?:a |an )?"
    r"(?:formal |official )?complaint|complain(?:t)? to (?:the|your) (?:authorities|regulator|management)|"
    r"chargeback|dispute (?:the|this) (?:charge|payment) with my bank|breach of contract|"
    r"gdpr (?:complaint|request|violation)|violat(?:e|ed|ion of) (?:my|the) (?:rights|law|gdpr))\b"
)
_LEGAL_ZH = re.compile(
    r"律师|起诉|告你们|告到|法院|法庭|诉讼|打官司|法律(?:途径|手段|责任|行动|程序)|走法律|"
    r"(?:向|去(?!年)|到)\S{0,8}投诉(?!率|电话|渠道|流程|方式|入口)|投诉(?:你们|到)|正式投诉|书面投诉|我要投诉|我要举报|举报你们|"
    r"消协|消费者协会|12315|工商局|市场监管|维权|报警(?!器)|12300|12345|曝光你们|违法|侵权|拒付|工信部|通信管理局|通管局|"
    r"(?:向|去|到)\S{0,8}申诉|申诉到|这是欺诈|欺诈(?:行为|消费者)|你们(?:这是)?欺诈|涉嫌(?:欺诈|诈骗)"
)
# "What's your complaints policy?" asks about a process; it is no threat.
_LEGAL_NOT = re.compile(
    r"\b(?:lawyer|attorney)s? (?:plan|tier|edition|template)|legal (?:page|notice)\b|"
    r"\b(?:i'?m|i am|we are|we'?re|as) (?:a |an )?(?:lawyer|attorney|solicitor|barrister|paralegal|judge|notary|"
    r"law firm)s?\b|"
    r"\b(?:my|our|his|her) (?:\w+ )?(?:is|was|'s) (?:a |an )?(?:lawyer|attorney|solicitor)\b|"
    r"\b(?:my|our|a) (?:lawyer|solicitor|attorney|barrister) (?:friend|mate|colleague|neighbou?r|cousin|brother|sister|"
    r"dad|mum|mom|father|mother|wife|husband|partner)s?\b|"
    r"\blaw (?:firm|office|school)\b|\b(?:solicitor|lawyer|attorney)(?:'s|s'|s)? (?:office|firm|practice)\b|"
    r"法院(?:门口|附近|旁边|对面|路)|隐私政策|我是律师|律师事务所|律所|法律条款|"
    r"我(?:爸|妈|哥|姐|弟|妹|朋友|老公|老婆|爱人|家人|同事|先生|太太)\S{0,2}是律师"
)

#: Rule name -> (built-in pattern, exemptions).
ALWAYS_RULES: Mapping[str, tuple[Sequence[re.Pattern[str]], re.Pattern[str]]] = {
    "safety": ((_SAFETY_EN, _SAFETY_ZH), _SAFETY_NOT),
    "legal": ((_LEGAL_EN, _LEGAL_ZH), _LEGAL_NOT),
}


def in_another_sense(norm: str) -> bool:
    """Safety or legal words used in another sense ("smoke detector", "I'm a barrister"): what the
    rules exempt, the learned layer must not hand off for either."""
    return bool(_SAFETY_NOT.search(norm) or _LEGAL_NOT.search(norm))


def phrase_in(norm: str, phrase: str) -> bool:
    """A tenant phrase (or topic) in normalised text: whole words in Latin script, a substring in
    Chinese. The phrase is normalised like the text (NFKC, casefolded)."""
    p = normalize(phrase)
    if not p:
        return False
    if p.isascii():
        return re.search(rf"(?<!\w){re.escape(p)}(?!\w)", norm) is not None
    return p in norm


def first_phrase(norm: str, phrases: Iterable[str]) -> str | None:
    """The first of ``phrases`` found in ``norm`` (see :func:`phrase_in`), or None. The one
    phrase matcher of the policy: tenant rule phrases and human-only topics both use it."""
    return next((p for p in phrases if phrase_in(norm, p)), None)


def is_hypothetical_safety_question(norm: str) -> bool:
    """A question about hazards in general, not a report of one: a conditional or generic question,
    or a yes/no question with nothing of the user's own in it (no "my", "just", "again"); in
    Chinese a "will it...?" (会…吗) question with no completed event (了) in it."""
    if re.search(r"[\u3400-\u9fff]", norm):
        clauses = re.split(r"[，,。.!！；;]", norm)
        if any(_SAFETY_ZH.search(c) for c in clauses[:-1]):
            return False  # "充电器在冒烟，会爆炸吗": a report, then a question about it
        if _SAFETY_HYPOTHETICAL_ZH.search(norm):
            return True
        will_it = re.search(r"(?:会|能)\S{0,8}[吗么][?？]?$", norm)
        return bool(will_it) and not re.search(r"了|已经|刚才|刚刚|正在|现在", norm)
    if _SAFETY_HYPOTHETICAL_EN.search(norm):
        return True
    return bool(_YES_NO_EN.search(norm)) and not _REPORT_EN.search(norm)


def matched_rule(norm: str, extra: Mapping[str, Sequence[str]]) -> tuple[str, str] | None:
    """(rule, what matched) of the first always-handoff rule that fires, built-in or tenant.
    Built-in rules first (a tenant phrase for ``safety`` counts as safety), then tenant rules."""
    names = [*ALWAYS_RULES, *(n for n in extra if n not in ALWAYS_RULES)]
    for name in names:
        phrase = first_phrase(norm, extra.get(name, ()))
        if phrase is not None:
            return name, phrase
        built_in = _built_in_match(name, norm)
        if built_in is not None:
            return name, built_in
    return None


def _built_in_match(name: str, norm: str) -> str | None:
    if name not in ALWAYS_RULES:
        return None
    patterns, exempt = ALWAYS_RULES[name]
    if exempt.search(norm) or (name == "safety" and is_hypothetical_safety_question(norm)):
        return None
    for pattern in patterns:
        m = pattern.search(norm)
        if m:
            return m.group(0)
    return None


# --- callbacks -------------------------------------------------------------------------------
_CALLBACK = re.compile(
    r"\b(?:call me(?: back)?|called me back|call back|callback|ring me|phone me|give me a (?:call|ring)|"
    r"(?:someone|somebody|anyone|a person|an agent|you) (?:to |can |could |please )?(?:call|phone|ring|contact) me|"
    r"contact me (?:by|on|via|at) (?:phone|telephone|mobile)|reach me (?:at|on)|"
    r"my (?:phone |mobile |contact )?number is:? ?\+?\d+|(?:prefer|rather have) (?:a )?(?:phone )?call|"
    r"(?:book|arrange|schedule|request|set up) (?:a |an )?(?:phone call|call-?back|call)"
    r"(?! forward| divert| barring| waiting| log| history| record)|"
    r"(?:have|get) (?:an? \w+|someone|somebody|an agent|a person) (?:to )?(?:call|phone|ring) me|"
    r"(?:one of (?:you|your \w+)|someone|somebody|anyone)\b[^.?!]{0,25}\b(?:call|phone|ring)(?: or \w+)? me)\b"
    r"|回电|回个电话|给我打(?:个)?电话|打(?:个)?电话给我|打给我|致电我|回拨|电话联系我|联系我(?!们|的)|请来电|来个电话|"
    r"打我电话|打我手机|给我来电|电话沟通|电话里说|回访|预约\S{0,4}电话|电话回复"
)
# Calls that do not reach the user are a fault to fix, not a request for a call.
_CALLBACK_NOT = re.compile(
    r"\b(?:api|webhook|function|hook|sdk)s? call|callback url|callback function|回调|"
    r"\b(?:can'?t|cannot|unable to|not able to|couldn'?t|won'?t|never) (?:\w+ )?(?:call|phone|ring|reach) me\b|"
    r"打不通|打不进|接不到|无法接通|打不了|冒充|骚扰|诈骗|推销|陌生(?:号码|电话|人)|"
    r"\b(?:spam|scam|cold|nuisance|robo) ?calls?\b|pretending to be|(?:keeps?|kept) calling me"
)


def asks_for_callback(norm: str) -> bool:
    """A request to be called; a question about the phone line ("预约电话节假日有人接吗", nobody to
    call the user in it) is none."""
    if not _CALLBACK.search(norm) or _CALLBACK_NOT.search(norm):
        return False
    return bool(re.search(r"\bme\b|我", norm)) or not is_question_about_people(norm)


# --- requests for a person -----------------------------------------------------------------------
_WHO = (
    r"(?:human|hooman|humn|person|people|ppl|(?:whoever|someone|somebody|the person) (?:is )?in charge|whoever|"
    r"(?:claims? |case |account |service |customer )?(?:handler|caseworker|case worker|case manager|account manager|"
    r"advisor|adviser|consultant|coordinator|officer|clerk)|"
    r"person in charge|"
    r"someone|some one|somebody|anyone|anybody|representative|rep|"
    r"operator|staff|staff member|manager|supervisor|agent|team member|real one|support team|"
    r"customer (?:service|care|support)|colleague|employee|specialist|advisor|adviser|expert|boss|"
    r"member of (?:staff|your team|the team|the support team)|(?:technical|tech|billing|sales|support|service) team|"
    r"(?:your|the) \w+ (?:team|department|desk)|"
    r"rengong|ren gong|kefu|mitarbeiter|humano|agente|conseiller)"
)
_TO = r"(?:to|2|with|w/|w)"
_EN_ASK = [
    re.compile(rf"\b(?:talk|speak|chat|spk|tlk|communicate|deal|work|a word)\s+{_TO}\b[^.?!]{{0,30}}\b{_WHO}s?\b"),
    re.compile(rf"\bput (?:a|an|the|some)\s+(?:real |live |actual )?{_WHO} on\b"),
    re.compile(r"\b(?:transfer|connect|escalate|put) me(?: through| over| on)?\s*(?:please|pls|now|asap)?\W*$"),
    re.compile(r"\b(?:be|get) (?:put|transferred|connected|passed|handed) (?:through |over )?to\b"),
    re.compile(
        rf"\b(?:connect|transfer|put|pass|hand|route|forward|escalate|switch|redirect|send)\s+"
        rf"(?:me|us)\b[^.?!]{{0,30}}\b(?:{_WHO[3:-1]}|through|over)\b"
    ),
    re.compile(
        rf"\b(?:transfer|pass|hand|escalate|route|forward|send)\s+(?:this|it|my (?:case|ticket|complaint|issue|query|"
        rf"request|problem))\b[^.?!]{{0,30}}\b(?:{_WHO[3:-1]})\b"
    ),
    re.compile(r"\b(?:real|live|actual|human|flesh and blood)\s+(?:person|human|agent|people|ppl|being|support|rep|"
               r"help|chat|operator|someone)"),
    re.compile(
        r"\b(?:need|want|get|give|have|reach|see|like|prefer|bring|find)\s+(?:me\s+)?(?:a|an|to a|some|the|"
        r"your)?\s*(?:real |live |actual |proper )?(?:human|hooman|person|representative|rep|operator|"
        r"supervisor|manager|somebody|someone|staff|member of staff|someone real)\b"
    ),
    re.compile(r"\b(?:need|want|get|reach|see)\s+(?:a|an|the)\s+(?:support |service |human |live )?agent\b"),
    re.compile(r"\b(?:a|an|your|customer service|support|sales) representative\b"),
    re.compile(r"\bescalat(?:e|ion)\b"),
    re.compile(r"\bnot (?:a|another|the|this|some|your|with a|with the|talking to a) (?:bot|robot|machine|ai|"
               r"chatbot|computer|program|script)\b|\bno (?:more )?(?:bots?|robots?|ai|chatbot)\b|"
               r"\b(?:stop|enough|done with)\b[^.?!]{0,15}\b(?:bot|robot|ai|chatbot|automated)\b"),
    re.compile(rf"^\W*(?:(?:a |an |the |real |live )?{_WHO}(?: please| pls| plz| now| asap| thanks| bitte)?"
               r"[\s,./!?]*)+$"),
    re.compile(r"\bany ?(?:one|body|humans?|people|persons?|staff|agents?) (?:from (?:your |the )?\w+ )?"
               r"(?:there|real|human|home|alive|here|around|"
               r"about|online|available|on)\b|"
               r"\bis (?:there )?any ?(?:one|body) (?:i can|to) (?:talk|speak|chat)|"
               r"\b(?:are you|is this) (?:even )?(?:a )?(?:real|human)\??\s*(?:i want|i need|get me|let me)"),
    re.compile(r"\b(?:let me|can i|could i|may i|i'?d like to|i would like to|i wanna|i want to|i need to|"
               r"i have to|i must)\s+(?:talk|speak|chat)\s*(?:[.?!]|$|please|pls|now)"),
    re.compile(rf"\b(?:is it possible|possible|any way|how (?:do|can) i|where (?:do|can) i|can you)\s+"
               rf"(?:to\s+)?(?:talk|speak|chat|get|reach|contact)\s+(?:{_TO}\s+)?(?:a |an |the |some )?"
               rf"(?:real |live |actual )?{_WHO}\b"),
    re.compile(r"\blive (?:chat|support)\b"),
    re.compile(r"\b(?:can|could|would|will) (?:someone|somebody|anyone|anybody|a (?:real )?(?:person|human)|one of "
               r"(?:you|your \w+))\b[^.?!]{0,40}\b(?:help me|assist me|look into (?:this|it)|get back to me|contact me|"
               r"(?:message|email|text|chat (?:to|with))(?: or \w+)? me|"
               r"deal with (?:this|it|me)|sort (?:this|it) out for me|take (?:this|it) over)\b"),
    re.compile(r"\blet me (?:talk|speak|chat) (?:to|with) (?:them|him|her|someone|somebody)\b"),
    re.compile(rf"\b(?:discuss|go over|go through|sort out|review|raise|take (?:this |it |that )?up|talk about|"
               rf"deal with)\b[^.?!]{{0,40}}\bwith "
               rf"(?:a |an |one of |some |your )*"
               rf"(?:real |live |actual )?{_WHO}s?\b"),
    re.compile(rf"\bis there (?:a|an|any|some)\s+(?:real |actual |live )?{_WHO}\b[^.?!]{{0,20}}\b(?:i can|i could|to) "
               rf"(?:talk|speak|chat|message|contact|write|reach|call)"),
    re.compile(rf"^\W*(?:(?:a|an|the|real|live|support|service|human|customer)\s+)*(?:{_WHO}\s+)?{_WHO}\W*"
               rf"(?:please|pls|plz|now|asap|bitte)\b"),
    re.compile(rf"^\W*(?:[\w'-]+\s+){{0,2}}{_WHO}s?\W*(?:please|pls|plz|now|asap|bitte)\W*$"),
]
_ZH_ASK = [
    re.compile(
        r"(?:转|找|接|要|叫|呼叫|请|给我|换|联系|来|派|安排|让|接通)(?:[个位下接到给我你们的一]{0,4})(?:人工|客服|真人|活人|"
        r"工作人员|专员|真的人|人来|负责人|经理|主管|领导|懂的|懂行的|专业的人|售后)"
    ),
    re.compile(r"人工(?:客服|服务|坐席|座席|介入|处理|回复)|真人(?:客服)?|活人"),
    re.compile(r"(?:找|跟|和|同|与)(?:你们的?)?(?:工作人员|客服专员|专员|客服人员|客服|人工|真人|经理|主管|负责人)"),
    re.compile(r"(?:找|跟|和|同|与|叫)(?:你们)?\S{0,4}(?:负责的人|管事的|能做主的|说了算的)"),
    re.compile(r"^(?:人工|真人|客服|转人工|人工客服|找人工|我要人工)(?:[\s,，!！。.?？~～]*(?:人工|真人|客服|转人工))*"
               r"[\s,，!！。.?？~～啊呀吧]*(?:谢谢|谢啦|麻烦了?|拜托了?|快点|马上)?[\s,，!！。.?？~～啊呀吧]*$"),
    re.compile(r"有没有(?:人工|真人|客服|活人)(?:服务)?(?:[啊呀啦呢吗?？!！,，]|$)"),
    re.compile(r"有(?:没有)?(?:活)?人(?:在)?吗|有人在吗|有人吗|不要(?:和|跟)?机器人|不想(?:跟|和)机器人|别(?:用)?机器人|"
               r"不(?:要|想)(?:跟|和)?(?:ai|机器)|我要(?:跟|和|找)人|找个人"),
    re.compile(r"(?:和|跟)(?:人|真人)(?:说话|沟通|聊|谈|对话)"),
    re.compile(r"(?:帮我|给我|请|麻烦)转[^，,。？?！!]{0,8}(?:人工|客服)"),
    re.compile(r"(?:安排|派|请|叫|找)[一个位名]{0,3}\S{0,4}(?:专员|客服|工作人员|人工|经理|负责人)\S{0,4}"
               r"(?:跟我|和我|与我|联系我|对接|沟通)"),
]
# Questions about the bot itself ("are you a human?") and words that only contain a people word.
_EN_NOT_ASK = re.compile(
    r"\bare you (?:a |an )?(?:real|human|bot|person|robot|ai)\b(?:\s+or\s+(?:a |an )?(?:real|human|bot|person|"
    r"robot|ai)\b)?|\bhuman resources\b|\bhuman[- ]readable\b"
)
_ZH_NOT_ASK = re.compile(r"你是(?:不是)?(?:真人|机器人)|人工智能")

# A first-person request form: wins over "this looks like a question about people".
_EN_FIRST_PERSON = re.compile(
    r"\b(?:i|we)(?:'d| would)? (?:want|need|like|prefer|wanna|demand|insist)\b|\b(?:can|could|may) (?:i|we) "
    r"(?:talk|speak|chat|get|have|reach)\b|\b(?:connect|transfer|put|get|give|pass|send|switch) me\b|"
    r"\blet me\b|\bplease\b|\bpls\b|\bplz\b|\bnow\b|\bis any(?:one|body) (?:there|here)\b|"
    r"\bhow (?:do|can) i (?:reach|contact|get|talk|speak)\b|"
    r"\bis there (?:a|an|any|some)\s*(?:one|body)?\b[^?]{0,30}\b(?:i can|i could|to (?:talk|speak|chat)|"
    r"available|there|who can|online)\b|"
    r"\bcan you (?:connect|transfer|get|put)\b|\bi'?m (?:asking|requesting)\b|"
    r"\b(?:around|available|online|free) to (?:help|talk|chat|speak)\b|"
    r"\bis it possible (?:for me )?to (?:talk|speak|chat|get|reach)\b|\binstead\b|"
    r"\b(?:can|could|would) (?:someone|somebody|anyone|anybody)\b[^.?!]{0,40}\b(?:help|assist|contact|call) me\b"
)
_EN_QUESTION_START = re.compile(
    r"^(?:so |and |but |also |ok,? |hi,? |hey,? )?(?:does|do|did|will|would|is|are|was|were|how|what|when|"
    r"which|who|why|where|can (?:a|an|the|your|my|agents?|humans?|people|staff)|if)\b"
)
_ZH_REQUEST_VERB = re.compile(
    r"帮我|给我|我要|我想|我需要|联系我|(?<!才能)(?<!才可以)接通|麻烦|请(?:帮|给|转|安排)|请\S{0,2}(?:人工|客服)|现在|马上|立刻|赶紧"
)
_ZH_ABOUT = re.compile(
    r"(?:几点|时间|多久|多长时间|更快|优先|收费|费用|会说|语言|是不是|是否|培训|多少|哪些|工作日|周末|上班|下班|"
    r"在线时间|\d+小时|全天|几小时|怎么收|包含|区别|能不能更快|晚上|白天|节假日|一般|通常|平时|排队|要等|外包|自动回复|真人回复|资料|材料|"
    r"电话是多少|号码|几个|是真人|还是|专属|休息|放假|假期|周[一二三四五六日天末]|星期[一二三四五六日天]|礼拜)"
)
_ZH_QUESTION = re.compile(r"[吗么呢?？]|几|多久|什么|是否|是不是|怎么样|哪|还是|有没有")


_EN_PEOPLE = re.compile(rf"\b{_WHO}s?\b|\b(?:support|service|team|phone|call|chat)\b")
_ZH_PEOPLE = re.compile(r"人工|客服|真人|工作人员|专员|经理|主管|人员|电话|团队|有人")


# "... if I call?": how support works when the user contacts it, not a request now.
_EN_ABOUT_IF = re.compile(r"\bif (?:i|we) (?:call|phone|ring|ask|write|email|contact|request|choose)\b")
_EN_URGENT = re.compile(r"\b(?:please|pls|plz|now|asap|right away|immediately)\b")


def is_question_about_people(norm: str) -> bool:
    """A question about how people/support work, with no request for one in it."""
    if re.search(r"[\u3400-\u9fff]", norm):
        return bool(
            _ZH_QUESTION.search(norm)
            and _ZH_ABOUT.search(norm)
            and _ZH_PEOPLE.search(norm)
            and not _ZH_REQUEST_VERB.search(norm)
        )
    if _EN_ABOUT_IF.search(norm) and _EN_PEOPLE.search(norm) and not _EN_URGENT.search(norm):
        return True
    return bool(
        _EN_QUESTION_START.search(norm) and _EN_PEOPLE.search(norm) and not _EN_FIRST_PERSON.search(norm)
    )


def asks_for_person(norm: str) -> str | None:
    """What in the message asks for a person, or None. A question *about* people is no request."""
    zh = norm.replace("人公", "人工")  # a common slip of the pinyin keyboard
    if not _ZH_NOT_ASK.search(zh) or re.search(r"转人工|我要人工|找人工|要真人", zh):
        for p in _ZH_ASK:
            m = p.search(zh)
            if m and not is_question_about_people(norm):
                return m.group(0)
    en = _EN_NOT_ASK.sub(" ", norm) if _EN_NOT_ASK.search(norm) else norm
    en = re.sub(r"([a-z])\1{2,}", r"\1", en)  # "humaaaan", "pleeease"
    for p in _EN_ASK:
        m = p.search(en)
        if m:
            if is_question_about_people(norm):
                return None
            return m.group(0)
    return None
