"""Choosing the sentences of retrieved chunks that answer a question.

Chunks come from exported help pages: they carry breadcrumbs ("Home / Help / Shipping"),
footers ("Was this article helpful?"), Markdown emphasis and tables. A quote is read by a
customer, so those are dropped or rendered as text first, then every sentence is scored against
the question by meaning (the embedder) and by the question's words it contains (the keyword
tokens), and the best ones are returned in document order, with a neighbour when a sentence
cannot stand alone ("It takes 5 days." after "Refunds go back to your card.").
"""

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from knowledge.embeddings import Embedder
from knowledge.keyword import tokenize

__all__ = [
    "Highlight",
    "Unit",
    "drop_navigation",
    "highlight",
    "is_navigation",
    "plain_text",
    "split_sentences",
    "units",
]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9£$€¥])|(?<=[。！？；])|\n+")
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|_|~~)(?=\S)(.+?)(?<=\S)\1")
_MD_CODE = re.compile(r"`([^`]+)`")
_MD_LIST = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+")
_MD_HEADING = re.compile(r"^\s*#{1,6}\s+")
_MD_QUOTE = re.compile(r"^\s*>\s?")
_HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_CRUMB_SEPARATORS = re.compile(r"\s+(?:/|>|»|›|\||·|•|→)\s+")
_FOOTER = re.compile(
    r"(©|\(c\)\s*\d{4}|all rights reserved|was this (article|page) helpful|back to top|skip to (main )?content|"
    r"cookie (settings|preferences|policy)|privacy policy\s*[|·•]|terms (of (use|service)|and conditions)\s*[|·•]|"
    r"share this (article|page)|related articles|last updated\s*:|版权所有|返回顶部|这篇文章有帮助吗|本文是否有帮助|"
    r"相关文章|最后更新|accept (all )?cookies|we use cookies|this (site|website) uses cookies|使用\s?cookie|接受所有)",
    re.IGNORECASE,
)
_CRUMB_START = re.compile(r"^(home|help( cent(er|re))?|support|首页|帮助中心|帮助)\b", re.IGNORECASE)
# Sentences that lean on the one before them ("It", "This", "这") or announce the next (":").
_LEANS_BACK = re.compile(
    r"^(it|this|that|these|those|they|then|also|otherwise|if so|in that case|这|此|它|该|如果是这样)\b", re.IGNORECASE
)


def plain_text(line: str) -> str:
    """One line of Markdown or stray HTML as the text a reader sees."""
    line = _MD_IMAGE.sub("", line)
    line = _MD_LINK.sub(r"\1", line)
    line = _HTML_TAG.sub("", line)
    line = _MD_HEADING.sub("", line)
    line = _MD_QUOTE.sub("", line)
    line = _MD_LIST.sub("", line)
    line = _MD_CODE.sub(r"\1", line)
    for _ in range(2):  # nested emphasis: ***bold italic***
        line = _MD_EMPHASIS.sub(r"\2", line)
    if line.count("|") >= 2 or line.lstrip().startswith("|"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        line = (
            ": ".join(c for c in cells[:1] if c)
            + (" — " if len(cells) > 1 and cells[0] else "")
            + ", ".join(c for c in cells[1:] if c)
        )
    return re.sub(r"\s+", " ", line).strip()


_MENU_WORD = re.compile(r"^(?:[A-Z][\w'&-]*|\(\d+\)|[\u3400-\u9fff]{1,6})$")


def is_navigation(line: str, *, lone_words: bool = True) -> bool:
    """A breadcrumb, menu, language switcher or footer line: words a page carries around its
    content, which say nothing and make a quote unreadable."""
    text = line.strip()
    if not text:
        return True
    if "|" in text:
        cells = [c.strip() for c in text.strip("|").split("|") if c.strip()]
        if len(cells) >= 3 and all(len(c) <= 15 and not re.search(r"\d", c) for c in cells):
            return True
        return bool(cells and _CRUMB_START.match(cells[0]) and len(cells) >= 2)  # table rows are content
    words = text.split()
    if lone_words and len(words) == 1 and not re.search(r"[\d.!?。！？:：]", text) and not _CJK.search(text):
        return True  # a lone word on its line: a site name or a menu entry
    if (
        len(words) >= 4
        and len(text) <= 60
        and sum(bool(_MENU_WORD.match(w)) for w in words) >= 0.75 * len(words)
        and not re.search(r"[.!?:,;\d]", text)
    ):
        return True  # a menu: "E-bikes Scooters Rent Help Log in"
    if _FOOTER.search(text) and len(text) < 160:
        return True
    parts = _CRUMB_SEPARATORS.split(text)
    if len(parts) >= 3 and all(len(p) <= 40 for p in parts) and not re.search(r"[.!?。！？]$", text):
        return True
    return bool(len(parts) == 2 and _CRUMB_START.match(text) and len(text) < 60)


def _is_row(line: str) -> bool:
    return line.count("|") >= 2 or line.lstrip().startswith("|")


def _in_table(lines: Sequence[str], number: int) -> bool:
    """Whether line ``number`` is a row of a table: a pipe line next to another (a menu written
    "Home | Shop | Help" stands alone; a table's header of short words is followed by its rows)."""
    if not _is_row(lines[number]):
        return False
    return (number > 0 and _is_row(lines[number - 1])) or (number + 1 < len(lines) and _is_row(lines[number + 1]))


def drop_navigation(text: str) -> str:
    """``text`` without its navigation lines (kept as written otherwise; tables kept whole)."""
    lines = text.splitlines()
    # A lone word stays: it may be all a short document says.
    return "\n".join(
        line
        for number, line in enumerate(lines)
        if not line.strip() or _in_table(lines, number) or not is_navigation(line, lone_words=False)
    )


_FAQ_Q = re.compile(r"^\s*(?:Q|Question|问)\s*[:：]\s*(?P<q>.+)$", re.IGNORECASE)
_FAQ_A = re.compile(r"^\s*(?:A|Answer|答)\s*[:：]\s*(?P<a>.*)$", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+")
_ITEM_END = re.compile(r"[;；,，]\s*$")


@dataclass(frozen=True, slots=True)
class Unit:
    """A readable sentence of a chunk, with what a quote of it may need around it."""

    text: str
    lead: int | None = None
    """Index of the line that introduces the list this sentence is an item of ("... the following:")."""
    question: str = ""
    """For the answer of a FAQ pair: its question (what it is matched against)."""
    pair: int | None = None
    """For the answer of a FAQ pair: which pair of the chunk it belongs to."""
    line: int = 0
    """The chunk line it comes from: the sentences of one line are one paragraph."""
    row: bool = False
    """A table row, read on its own (its header is in it)."""


def _row_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table_row(cells: list[str], header: list[str] | None) -> str:
    """A table row as "header: value" text; a two-column row without a header as "key: value"."""
    cells = [plain_text(c) for c in cells]
    if header and len(header) == len(cells):
        return ", ".join(f"{h}: {c}" if h else c for h, c in zip(header, cells, strict=True) if c)
    filled = [c for c in cells if c]
    if len(filled) >= 2:
        return f"{filled[0]}: " + ", ".join(filled[1:])
    return filled[0] if filled else ""


def _is_header(lines: Sequence[str], number: int, header: list[str] | None) -> bool:
    """A table's header row: followed by a rule ("|---|"), or, when the rule was lost, the first
    row of a table with fewer cells holding a figure than the next row."""
    following = lines[number + 1] if number + 1 < len(lines) else ""
    if _TABLE_RULE.match(following):
        return True
    if header is not None or not _is_row(following) or (number > 0 and _is_row(lines[number - 1])):
        return False

    def figures(line: str) -> int:
        return sum(bool(re.search(r"\d", c)) for c in _row_cells(line))

    return figures(lines[number]) < figures(following)


def units(text: str, *, exclude: Sequence[str] = ()) -> list[Unit]:
    """The readable sentences of a chunk: Markdown rendered (tables as "header: value"), HTML
    tags, navigation lines and lines that only repeat the page title or a heading (``exclude``)
    dropped. Of a FAQ pair only the answer is kept, each sentence carrying its question."""
    skip = {_fold(x) for x in exclude if x}
    lines = text.splitlines()
    out: list[Unit] = []
    header: list[str] | None = None
    lead: int | None = None
    question = ""
    pair: int | None = None
    pairs = 0
    for number, raw_line in enumerate(lines):
        if not raw_line.strip():
            continue
        q = _FAQ_Q.match(raw_line)
        if q:
            question, pair, lead = plain_text(q.group("q")), pairs, None
            pairs += 1
            continue
        a = _FAQ_A.match(raw_line)
        if a:
            raw_line = a.group("a")
        if _TABLE_RULE.match(raw_line):
            continue
        is_row = _is_row(raw_line)
        if is_row:
            cells = _row_cells(raw_line)
            if _is_header(lines, number, header):
                header = [plain_text(c) for c in cells]  # the header row says nothing on its own
                continue
            if not _in_table(lines, number) and is_navigation(raw_line):
                continue
            line = _table_row(cells, header)
        else:
            header = None
            if is_navigation(raw_line) or _fold(plain_text(raw_line)) in skip:
                continue
            line = plain_text(raw_line)
        if not line or is_navigation(line):
            continue
        item = bool(_LIST_ITEM.match(raw_line)) or (
            lead is not None and bool(out) and (len(out) - 1 == lead or bool(_ITEM_END.search(out[-1].text)))
        )
        if not item and not is_row:
            lead = None
        pieces = [p.strip() for p in _SENTENCE_END.split(line)] if not is_row else [line]
        for piece in pieces:
            if piece and not is_navigation(piece) and re.search(r"\w", piece):
                out.append(Unit(piece, lead if (item or is_row) else None, question, pair, number, is_row))
        if out and out[-1].text.rstrip().endswith((":", "：")):
            lead = len(out) - 1
    return out


def split_sentences(text: str, *, exclude: Sequence[str] = ()) -> list[str]:
    """Readable sentences of a chunk (see ``units``)."""
    return [u.text for u in units(text, exclude=exclude)]


def _fold(text: str) -> str:
    return re.sub(r"\W+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


@dataclass(frozen=True, slots=True)
class Highlight:
    sentences: tuple[str, ...]
    """The chosen sentences in document order, as plain text."""
    score: float
    """How well the best of them answers the question (cosine blended with word coverage)."""


# Question words that carry no topic: a sentence does not answer better for containing them.
_QUESTION_WORDS = frozenset(
    [
        "whats",
        "what's",
        "how",
        "much",
        "many",
        "long",
        "often",
        "far",
        "fast",
        "big",
        "large",
        "does",
        "do",
        "need",
        "can",
        "could",
        "there",
        "much",
        "please",
        "take",
        "happen",
        "tell",
        "know",
        "want",
        "like",
    ]
)
# What a question asks for, and how its answer shows it: "how much" wants a price, "how long" a
# duration. A general lexicon of English and Chinese question forms, the same for any business.
_DURATION = (
    r"\d\s?(-|to|–)?\s?\d*\s?(working |business )?(days?|weeks?|months?|years?|hours?|minutes?|mins?|h)\b|"
    r"[\d一二三四五六七八九十两半]+\s?(个)?(工作日|天|周|个月|月|年|小时|分钟)|\bwithin\b|\bsame day\b|\bnext day\b"
)
_ADDRESS = r"\S@\S|https?://|\b[\w-]+\.(?:com|org|net|example|co\.uk|cn|gov)\b|\b\d{1,3}(?:\.\d{1,3}){3}\b"
_NUMBER = r"\+?\d[\d \-]{5,}\d|(?<![\d.,£$€¥])\b\d{4,6}\b(?![.,]\d|\s?(?:元|%|€|km|kg|mb|gb))|[*#]\d{2,}#?"
_ASKS: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (re.compile(q, re.IGNORECASE), re.compile(a, re.IGNORECASE))
    for q, a in (
        (r"\bhow much\b|\bcost|\bprice|\bfee|\bcharge[ds]?\b|\bpay\b|\bexpensive|\bcheap|\bfree\b|"
         r"免费|多少钱|价格|价钱|费用|收费|多少元|贵|便宜|付多少|赔多少",
         # "How much cheaper": a discount answers it as well as a price.
         r"[€$£¥]\s?\d|\d\s?(€|eur|euros?|usd|gbp|元|块)|免费|\bfree( of charge)?\b|\bno charge\b|"
         r"[\d一二三四五六七八九]\s?折|\d\s?%\s?(off|discount)|\d\s?%\s?(的)?(折扣|优惠)"),
        (r"\bhow (long|soon|quickly)\b|\bwhen\b|\buntil\b|\bby when\b|\bhow many (days|weeks|months|years|hours|"
         r"minutes)|\bdeadline\b|多久|多长时间|几天|什么时候|几个月|几年|多少天|何时|期限",
         _DURATION),
        (r"\bwhat time\b|\bopening hours\b|\bopen\b|几点|营业时间|工作时间",
         r"\d{1,2}[:.]\d{2}|\d\s?(am|pm)\b|\b24/7\b|\d{1,2}\s?点|周[一二三四五六日]|monday|friday|weekend"),
        (r"\bhow fast\b|\bspeed\b|多快|速度|时速", r"km/h|mph|公里/小时|千米/小时"),
        (r"\bhow (heavy|much does .* weigh)\b|\bweigh|\bload\b|多重|重量|载重|多沉", r"\d\s?(kg|kilos?|公斤|千克)"),
        (r"\bhow (tall|big|far|large|wide)\b|\bheight\b|\bsize\b|\brange\b|\btravel\b|多高|尺寸|多大|多远|续航|多宽",
         r"\d\s?(cm|mm|m|km|inch|\"|厘米|毫米|公里|litres?|liters?|l|升)\b"),
        (r"\bhow many\b|\bhow often\b|\bmaximum\b|\bmax\b|\blimit\b|几次|多少次|几个|多少个|几辆|最多|上限",
         r"\d|[一二三四五六七八九十两]"),
        (r"\be-?mail\b|\baddress\b|\bwebsite\b|\blink\b|邮箱|邮件|网址|网站", _ADDRESS),
        # "What number do I text", "phone number", "how do I phone you": a number, short codes too.
        (r"\bphone (number|you|us)\b|\b(what|which) number\b|\bnumber (to|for)\b|\bhotline\b|\bcall (you|us)\b|"
         r"\btext\b|\bdial\b|电话|热线|号码是|打什么|拨打|拨什么",
         _NUMBER),
    )
)


def _asks_for(question: str) -> tuple[list[re.Pattern[str]], set[str]]:
    """What the answer should hold, and the question's words that only say so ("cost" in "what
    does it cost": the price answers them, not a sentence repeating "cost")."""
    wants: list[re.Pattern[str]] = []
    words: set[str] = set()
    for asked, answer in _ASKS:
        found = [m.group() for m in asked.finditer(question)]
        if found:
            wants.append(answer)
            words |= _content(" ".join(found))
    return wants, words


# Chinese question frames and particles: "大概要多久能好" asks, the topic is what is left.
_ZH_NOISE = re.compile(
    "|".join(
        sorted(
            [
                "大概", "大约", "一般", "通常", "到底", "究竟", "是不是", "能不能", "可不可以", "有没有", "要不要",
                "会不会", "需不需要", "用不用", "怎么样", "怎么办", "怎样", "怎么", "如何", "为什么", "什么", "请问",
                "一下", "知道", "告诉", "想要", "能好", "的话", "时候", "可以", "能否", "是否", "哪里", "哪儿", "哪些",
                "哪个", "我们", "你们", "有多少", "多少", "多长", "多大", "多久", "的", "了", "吗", "呢", "吧", "啊",
                "呀", "么", "嘛", "哦", "我", "你", "您",
            ],
            key=len,
            reverse=True,
        )
    )
)


def _root(token: str) -> str:
    """A light English stem, the same for the question and the sentence: "reviewed" and "review",
    "charged", "charging" and "charge" meet."""
    if not (token.isascii() and token.isalpha()) or len(token) < 4:
        return token
    for suffix in ("ing", "ed"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3 and not token.endswith("eed"):
            token = token[: -len(suffix)]
            break
    return token[:-1] if token.endswith("e") and len(token) >= 4 else token


def _matches(question: set[str], words: set[str]) -> set[str]:
    """The question's words that ``words`` hold: the same, or one of five letters or more
    starting the other ("cancell" finds "cancellation", "insur" "insurance")."""
    found = question & words
    for t in question - found:
        if t.isascii() and any(
            w.isascii() and min(len(t), len(w)) >= 5 and (w.startswith(t) or t.startswith(w)) for w in words
        ):
            found.add(t)
    return found


def _content(text: str) -> set[str]:
    """The topic words of ``text``: keyword tokens (Chinese bigrams) without question words,
    Chinese frames and particles, lightly stemmed."""
    text = _ZH_NOISE.sub(" ", unicodedata.normalize("NFKC", text))
    return {_root(t) for t in tokenize(text) if t not in _QUESTION_WORDS}


def _stands_alone(sentence: str) -> bool:
    if re.match(r"^[^:：]{2,40}[:：]\s*\S", sentence):
        return True  # "Top speed: 25 km/h" says what it is about
    cjk = bool(_CJK.search(sentence))
    short = len(sentence) < (12 if cjk else 25)
    return not (short or _LEANS_BACK.match(unicodedata.normalize("NFKC", sentence)))


def _idf(per_text: Sequence[Sequence[set[str]]], codes: bool = False) -> Callable[[str], float]:
    """Rarity of a word among the candidate sentences: a word every sentence has tells none apart."""
    df: dict[str, int] = {}
    n = 0
    for sentences in per_text:
        for tokens in sentences:
            n += 1
            for t in tokens:
                df[t] = df.get(t, 0) + 1

    def weight(t: str) -> float:
        # A code the question names ("E07", or "22" after "error code") picks out the line about it.
        code = bool(_CODE.fullmatch(t)) or (codes and t.isdigit())
        return (math.log((n + 1) / (df.get(t, 0) + 0.5)) + 0.1) * (3.0 if code else 1.0)

    return weight


_CODE = re.compile(r"[a-z]{1,3}\d[a-z0-9]{0,5}")
_ASKS_CODE = re.compile(r"\b(codes?|errors?|shows?|says|displays?)\b|代码|故障|报|显示", re.IGNORECASE)
# "E07 - No battery signal", "代码 22：电池温度异常": a term and what it means, explained by the next line.
_LABEL = re.compile(r"^\s*[\w\u3400-\u9fff][\w\u3400-\u9fff .+/#-]{0,14}?\s*(?:\s[-–—]\s|[:：])\s*\S")


@dataclass(frozen=True, slots=True)
class _Question:
    """What scoring needs to know of the question."""

    wants: list[re.Pattern[str]]
    tokens: set[str]
    idf: Callable[[str], float]


def _coverage(q: _Question, heads: Sequence[str], words: set[str], heading_weight: float) -> float:
    """The rarity-weighted share of the question's words that ``words`` (or, a little, the
    section heading) hold. The page's title does not tell its sentences apart ("City E1" on the
    City E1 page), so its words are left out."""
    q_tokens = q.tokens - _content(heads[0]) if heads else q.tokens
    total = sum(q.idf(t) for t in q_tokens)
    if not total:
        return 0.0
    section = _matches(q_tokens, _content(" ".join(heads[1:]))) if len(heads) > 1 else set()
    found = sum(q.idf(t) for t in q_tokens & words)
    found += heading_weight * sum(q.idf(t) for t in (q_tokens & section) - words)
    return min(found / total, 1.0)


def _spans(us: Sequence[Unit], holds: Sequence[bool] | None) -> list[tuple[int, ...]]:
    """The quotes a chunk offers: each sentence alone, and with the next one of its paragraph
    (the fact is often in the sentence after the one naming the topic). When the question asks
    for a value (``holds``: which sentences have one), a pair is a sentence without the value
    followed by one with it ("Ask for a review. A manager replies within 10 working days."): a
    sentence holding the value needs no neighbour for its words."""
    out: list[tuple[int, ...]] = [(i,) for i in range(len(us))]
    for i in range(len(us) - 1):
        a, b = us[i], us[i + 1]
        if a.pair != b.pair or a.row or b.row or b.line - a.line > 1:
            continue
        if holds is None or (holds[i + 1] and not holds[i]):
            out.append((i, i + 1))
    return out


def _width(text: str) -> int:
    """Length as read: a Chinese character says about as much as two Latin letters."""
    return len(text) + len(_CJK.findall(text))


def _same_paragraph(a: Unit, b: Unit) -> bool:
    """Sentences read together: of one paragraph as written (one line of the chunk), not table rows."""
    return a.pair == b.pair and not (a.row or b.row) and b.line == a.line


def highlight(
    question: str,
    question_vector: Sequence[float],
    texts: Sequence[str],
    embedder: Embedder,
    *,
    headings: Sequence[Sequence[str]] = (),
    max_sentences: int = 2,
    max_total: int = 40,
    semantic_weight: float = 0.6,
    number_bonus: float = 0.2,
    heading_weight: float = 0.5,
    position_weight: float = 0.03,
    neighbour_cost: float = 0.05,
    max_chars: int = 420,
    min_chars: int = 220,
    short_chunk: int = 240,
) -> list[Highlight]:
    """For each chunk text, the sentences that answer ``question`` best.

    A sentence scores by its meaning (cosine to the question; for the answer of a FAQ pair, the
    better of its own and its question's), by the rarity-weighted share of the question's words it
    or its section heading contains, by holding what the question asks for (a price for "how
    much", a duration for "how long") and a little by coming early. A quote is a sentence or a
    sentence with the next one of its paragraph: the pair scores by the words and the asked-for
    value they hold together, less ``neighbour_cost``, so "Ask for a review. A manager replies
    within 10 working days." answers "how long does a review take" although neither sentence
    does alone. The best quote comes with what it needs: its list's lead-in, the items of the
    list it introduces, the rest of its FAQ answer, the sentence before a "This"/"It". At most
    ``max_total`` texts are embedded per call, so a long chunk cannot make an answer slow; the
    rest are scored by their words only. A quote stops near ``max_chars``; a chunk of at most
    ``short_chunk`` characters and one sentence more than ``max_sentences`` is quoted whole.
    """
    per_text = [units(t, exclude=headings[i] if i < len(headings) else ()) for i, t in enumerate(texts)]
    heads = [tuple(headings[i]) if i < len(headings) else () for i in range(len(texts))]
    wants, asking = _asks_for(question)
    q_all = (_content(question) - asking) if wants else _content(question)
    # Each sentence as the question's words it holds.
    tokens = [[_matches(q_all, _content(u.text) | _content(u.question)) for u in us] for us in per_text]
    q = _Question(wants, q_all, _idf(tokens, codes=bool(_ASKS_CODE.search(question))))

    def has_want(u: Unit) -> bool:
        return any(w.search(u.text) for w in wants)

    # First by words alone: cheap, and it decides which sentences are worth embedding.
    lexical = [
        [
            (1 - semantic_weight) * _coverage(q, heads[index], tokens[index][i], heading_weight)
            + (number_bonus if has_want(u) else 0.0)
            + position_weight * (1 - i / len(us))
            for i, u in enumerate(us)
        ]
        for index, us in enumerate(per_text)
    ]
    meaning = _meaning(question_vector, per_text, lexical, embedder, max_total)
    results: list[Highlight] = []
    for index, us in enumerate(per_text):
        if not us:
            results.append(Highlight((), 0.0))
            continue
        sem = [max(meaning.get(u.text, 0.0), meaning.get(u.question, 0.0) if u.question else 0.0) for u in us]
        scores = [lexical[index][i] + semantic_weight * sem[i] for i in range(len(us))]

        def span_score(span: tuple[int, ...], index: int = index, us: list[Unit] = us, sem: list[float] = sem) -> float:
            # A list item is read under its lead-in ("Voltway Protect:" then "Costs €9.99 a month").
            words = set().union(*(tokens[index][j] for i in span for j in (i, us[i].lead) if j is not None))
            return (
                (1 - semantic_weight) * _coverage(q, heads[index], words, heading_weight)
                + (number_bonus if any(has_want(us[i]) for i in span) else 0.0)
                + position_weight * (1 - span[0] / len(us))
                + semantic_weight * max(sem[i] for i in span)
                - neighbour_cost * (len(span) - 1)
            )

        holds = [has_want(u) for u in us] if wants else None
        spans = [(span_score(span), span) for span in _spans(us, holds)]
        top, span = max(spans, key=lambda x: (x[0], -len(x[1]), -x[1][0]))
        quote = _quote(us, scores, span, max_sentences, max_chars, short_chunk, min_chars, holds)
        results.append(Highlight(quote, top))
    return results


def _meaning(
    question_vector: Sequence[float],
    per_text: Sequence[Sequence[Unit]],
    lexical: Sequence[Sequence[float]],
    embedder: Embedder,
    max_total: int,
) -> dict[str, float]:
    """Cosine to the question of the most promising ``max_total`` texts by words (a FAQ answer's
    question counts as one of them)."""
    candidates = sorted(
        ((score, index, i) for index, row in enumerate(lexical) for i, score in enumerate(row)),
        key=lambda x: (-x[0], x[1], x[2]),
    )
    to_embed: dict[str, None] = {}
    for _, index, i in candidates:
        if len(to_embed) >= max_total:
            break
        u = per_text[index][i]
        to_embed.setdefault(u.text)
        if u.question and len(to_embed) < max_total:
            to_embed.setdefault(u.question)
    if not to_embed:
        return {}
    texts_ = list(to_embed)
    vectors = np.asarray(embedder.embed(texts_), dtype=np.float32)
    sims = vectors @ np.asarray(question_vector, dtype=np.float32)
    return {t: float(sims[k]) for k, t in enumerate(texts_)}


def _add_context(
    us: Sequence[Unit],
    best: int,
    span: tuple[int, ...],
    chosen: list[int],
    room: Callable[[int], bool],
    max_sentences: int,
) -> None:
    """What the best sentence needs to be understood: the rest of its FAQ answer, its list's
    lead-in or the items it introduces, the sentence a "This"/"It" leans on, the explanation
    after a label."""
    unit = us[best]
    if unit.pair is not None:
        # The answer of the matching question: all of it when it is short.
        for i, other in enumerate(us):
            if other.pair == unit.pair and room(i):
                chosen.append(i)
    if unit.lead is not None and room(unit.lead):
        chosen.append(unit.lead)  # an item is read under its lead-in ("Stop at once if:")
    items = [i for i, other in enumerate(us) if other.lead == best]
    for i in items[: max(3, max_sentences)]:
        if room(i):
            chosen.append(i)  # a lead-in is read with its items
    first = min(span)
    if not _stands_alone(us[first].text) and first > 0 and us[first - 1].pair == us[first].pair and room(first - 1):
        chosen.append(first - 1)
    if unit.text.rstrip().endswith((":", "：")) and best + 1 < len(us) and room(best + 1):
        chosen.append(best + 1)
    if (
        _LABEL.match(unit.text)
        and len(unit.text) <= 60
        and best + 1 < len(us)
        and not _LABEL.match(us[best + 1].text)
        and us[best + 1].lead is None
        and room(best + 1)
    ):
        chosen.append(best + 1)  # "E07 - No battery signal" then what to do about it


def _continue_paragraph(us: Sequence[Unit], chosen: list[int], min_chars: int, room: Callable[[int], bool]) -> None:
    """A short quote that does not hold what the question asks for goes on with its paragraph:
    "You can use your own router." is followed by the settings it needs, "E21 - Speed sensor."
    by what to check. (A price question answered by its price stops there.)"""
    last = max(chosen)
    while (
        sum(_width(us[j].text) for j in chosen) < min_chars
        and last + 1 < len(us)
        and _same_paragraph(us[last], us[last + 1])
        and room(last + 1)
    ):
        last += 1
        chosen.append(last)


def _quote(
    us: Sequence[Unit],
    scores: Sequence[float],
    span: tuple[int, ...],
    max_sentences: int,
    max_chars: int,
    short_chunk: int,
    min_chars: int,
    holds: Sequence[bool] | None = None,
) -> tuple[str, ...]:
    """The best quote with what it needs to be understood, then others that answer nearly as well."""
    if len(us) <= max_sentences + 1 and sum(len(u.text) for u in us) <= short_chunk:
        return tuple(u.text for u in us)  # a short section is one answer: "Colours" then the list
    best = max(span, key=lambda i: scores[i])
    chosen = list(span)

    def room(i: int) -> bool:
        return i not in chosen and sum(len(us[j].text) for j in chosen) + len(us[i].text) <= max_chars

    _add_context(us, best, span, chosen, room, max_sentences)
    if holds is None or not any(holds[j] for j in chosen):
        _continue_paragraph(us, chosen, min_chars, room)
    extra = len(span) - 1
    for i in sorted(range(len(us)), key=lambda i: -scores[i]):
        if extra >= max_sentences - 1:
            break
        # A further sentence only when it also answers, not merely sits in the same chunk.
        if i not in chosen and scores[i] >= 0.8 * scores[best] and room(i):
            chosen.append(i)
            extra += 1
    return tuple(us[i].text for i in sorted(set(chosen)))
