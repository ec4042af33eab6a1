"""Checkable claims in a piece of text: prices, percentages, durations, dates, times, plain
numbers, model/product codes and proper names, each reduced to a comparison key.

The keys make equal facts compare equal across spellings: "$11.95" and "11.95 USD", "30 days",
"thirty days" and "30天", "３０" (full-width) and "30", "2 pm" and "14:00", "DS-200" and "ds200".
Answers are read strictly (only digits, and number words before a unit, make a claim); passages
leniently (a bare "two" or "a month" counts too), so a paraphrase of the passage still matches.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bots.attribution import MARKER
from bots.text import strip_invisible

__all__ = ["Claim", "extract_claims", "prepare"]


@dataclass(frozen=True, slots=True)
class Claim:
    #: price, percent, duration, date, time, number, code, name
    kind: str
    #: What equal claims share: an amount, seconds, ``MM-DD``, ``HH:MM``, a squashed code...
    key: str
    #: As written.
    text: str
    start: int
    end: int
    #: Currency family of a price (``$``, ``£``, ``€``, ``¥``) or "" when unknown.
    unit: str = ""
    #: The plain numbers shown in the claim, so a bare number can match any of them.
    numbers: frozenset[str] = field(default_factory=frozenset)


# ---- numbers -------------------------------------------------------------------------------

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUE = {w: i for i, w in enumerate(_ONES)} | {w: 10 + i for i, w in enumerate(_TEENS)}
_WORD_VALUE |= {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_WORD_NUM = rf"(?:(?:{'|'.join(_TENS)})(?:[-\s](?:{'|'.join(_ONES[1:])}))?|{'|'.join(_TEENS)}|{'|'.join(_ONES)})"
_ZH_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_NUM = "[零〇一二两三四五六七八九十百千万]+"
_DIGITS = r"\d+(?:,\d{3})*(?:\.\d+)?"
_NUM = rf"(?:{_DIGITS}|{_ZH_NUM}|\b{_WORD_NUM}\b)"
# A cheap first test at each position (the engine does not optimise alternations that start
# with words): only a digit, a Chinese numeral or the first letter of a number word goes on.
_NUM_START = "(?=[\\d零〇一二两三四五六七八九十百千万otfsenzap])"


def _zh_value(text: str) -> float | None:
    total = section = num = 0
    for ch in text:
        if ch in _ZH_DIGIT:
            num = _ZH_DIGIT[ch]
        elif ch in "十百千":
            section += (num or 1) * {"十": 10, "百": 100, "千": 1000}[ch]
            num = 0
        elif ch == "万":
            total += (section + num) * 10000
            section = num = 0
    value = total + section + num
    return float(value) if value or "零" in text or "〇" in text else None


def number_value(text: str) -> float | None:
    """``"1,250.50"`` → 1250.5, ``"thirty-one"`` → 31, ``"二十四"`` → 24, ``"a"`` → 1."""
    t = text.strip().casefold()
    if re.fullmatch(_DIGITS, t):
        return float(t.replace(",", ""))
    if t in ("a", "an", "one"):
        return 1.0
    if re.fullmatch(_ZH_NUM, t):
        return _zh_value(t)
    parts = re.split(r"[-\s]+", t)
    if all(p in _WORD_VALUE for p in parts) and parts:
        return float(sum(_WORD_VALUE[p] for p in parts))
    return None


def canon(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


# ---- patterns (tried in order; a span taken by one is not read again) ----------------------

_CURRENCY_PREFIX = {
    "us$": "$", "usd": "$", "ca$": "$", "c$": "$", "a$": "$", "au$": "$", "hk$": "$", "nz$": "$", "$": "$",
    "£": "£", "gbp": "£", "€": "€", "eur": "€", "¥": "¥", "rmb": "¥", "cny": "¥",
}  # fmt: skip
_CURRENCY_SUFFIX = {
    "usd": "$", "cad": "$", "aud": "$", "dollar": "$", "dollars": "$", "美元": "$", "加元": "$", "澳元": "$",
    "gbp": "£", "pound": "£", "pounds": "£", "英镑": "£", "eur": "€", "euro": "€", "euros": "€", "欧元": "€",
    "cny": "¥", "rmb": "¥", "元": "¥", "块": "¥", "人民币": "¥", "yuan": "¥",
}  # fmt: skip
_PRICE = re.compile(
    r"(?=[\d$£€¥uacnhgerdpy])(?:(?P<cur>us\$|ca\$|au\$|hk\$|nz\$|c\$|a\$|usd|gbp|eur|rmb|cny|[$£€¥])\s?(?P<num>"
    + _DIGITS
    + ")"
    r"|(?P<num2>" + _DIGITS + r")\s?(?P<cur2>usd|cad|aud|gbp|eur|cny|rmb|dollars?|pounds?|euros?|yuan"
    r"|美元|加元|澳元|英镑|欧元|人民币|元|块)(?![a-z]))",
)
_PERCENT = re.compile(
    rf"{_NUM_START}(?:(?P<num>{_NUM})\s?(?:%|percent\b|per cent\b|pct\b)|百分之(?P<zh>{_ZH_NUM}|\d+(?:\.\d+)?))"
)
_MONTHS = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]  # fmt: skip
_MONTH_RE = (
    r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_DATE = re.compile(
    r"(?=[\djfmasond一二三四五六七八九十])(?:(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?!\d)"
    r"|(?:(?P<zy>\d{4})\s?年\s?)?(?P<zm>\d{1,2}|[一二三四五六七八九十]{1,2})\s?月\s?(?P<zd>\d{1,2}|[一二三四五六七八九十]{1,3})\s?[日号]"
    rf"|\b{_MONTH_RE}\.?\s+(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y1>\d{{4}})\b)?"
    rf"|\b(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH_RE.replace('mon', 'mon2')}\b\.?"
    r"(?:,?\s+(?P<y2>\d{4})\b)?)",
)
_DAY_NAME = re.compile(
    r"(?=[mtwfsjaond星周礼])(?:\b(?P<w>(?:mon|tues|wednes|thurs|fri|satur|sun)day)s?\b"
    r"|\b(?P<m>january|february|march|april|june|july|august|september|october|november|december)\b"
    r"|(?:星期|周|礼拜)(?P<zw>[一二三四五六日天]))",
)
_TIME = re.compile(
    r"(?=[\d上早中下晚零〇一二两三四五六七八九十])(?:\b(?P<h>\d{1,2})(?::(?P<mi>\d{2}))?\s?(?P<ap>a\.?m\.?|p\.?m\.?)(?![a-z])"
    r"|\b(?P<h2>[01]?\d|2[0-3]):(?P<mi2>[0-5]\d)\b"
    rf"|(?P<zp>上午|早上|中午|下午|晚上)?\s?(?P<zh>\d{{1,2}}|{_ZH_NUM})\s?[点點](?:\s?(?P<zmi>\d{{1,2}})\s?分|(?P<half>半))?)",
)
_UNIT_SECONDS = {
    "second": 1, "sec": 1, "minute": 60, "min": 60, "hour": 3600, "hr": 3600, "day": 86400, "night": 86400,
    "week": 604800, "month": 2592000, "year": 31536000, "yr": 31536000,
    "秒": 1, "秒钟": 1, "分钟": 60, "小时": 3600, "个小时": 3600, "钟头": 3600, "天": 86400, "日": 86400,
    "工作日": 86400, "个工作日": 86400, "周": 604800, "个星期": 604800, "星期": 604800, "个月": 2592000,
    "年": 31536000,
}  # fmt: skip
_EN_UNIT = r"(?P<unit>seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|nights?|weeks?|months?|years?|yrs?)\b"
_ZH_UNIT = r"(?P<zunit>个工作日|工作日|个小时|小时|钟头|秒钟|秒|分钟|天|日|个星期|星期|周|个月|年)"
_RANGE_SEP = r"\s*(?:-|–|—|~|～|to|or|and|至|到)\s*"
_DURATION = re.compile(
    rf"{_NUM_START}(?P<a>{_NUM}|\ban?\b)(?:{_RANGE_SEP}(?P<b>{_NUM}))?"
    rf"(?:[\s-]*(?:business|working|calendar|full|more|extra)?[\s-]*{_EN_UNIT}|\s?{_ZH_UNIT})",
)
_CODE = re.compile(r"(?<![\w-])[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*(?![\w-])")
_NUMBER = re.compile(rf"{_NUM_START}(?:{_DIGITS}|{_ZH_NUM}|\b{_WORD_NUM}\b)")
# Masked before reading: links and addresses (the guard owns them) and list numbering.
_NOISE = re.compile(r"(?=[hw\s\d])(?:https?://\S+|www\.\S+|^\s*\d{1,2}[.)]\s)", re.MULTILINE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
_MARKDOWN = re.compile(r"\*\*|__|`|~~|^#{1,6}\s", re.MULTILINE)

_NAME_WORD = re.compile(r"(?<![\w'’-])(?:[A-Z][\w'’&-]*|[a-z]+[A-Z][\w'’-]*)")
_NOT_NAMES = frozenset(
    [
        "i",
        "i'm",
        "i'll",
        "i've",
        "i'd",
        "ok",
        "okay",
        "ai",
        "yes",
        "no",
        "hi",
        "hello",
        "hey",
        "please",
        "thanks",
        "thank",
        "sorry",
        "dear",
        "note",
        "tip",
        "step",
        "faq",
        "q",
        "a",
    ]
)
_SENTENCE_START = re.compile(r"(?:^|[.!?。！？:：;；\n•*\-–—\"“(\[])\s*$")
_CJK = re.compile(r"[\u3400-\u9fff]")


def prepare(text: str) -> str:
    """NFKC (full-width digits and signs → ASCII), no invisible characters or markdown
    emphasis: the form every claim span refers to."""
    return _MARKDOWN.sub("", strip_invisible(unicodedata.normalize("NFKC", text)))


def _nums(*values: float | None) -> frozenset[str]:
    return frozenset(canon(v) for v in values if v is not None)


class _Reader:
    """One pass of :func:`extract_claims`: the text, its lower-cased twin (same offsets), the
    spans already taken and the claims found so far."""

    __slots__ = ("lenient", "low", "out", "taken", "text")

    def __init__(self, text: str, lenient: bool) -> None:
        self.text = text
        self.lenient = lenient
        self.taken = bytearray(len(text))
        self.out: list[Claim] = []
        low = text.lower()
        if len(low) != len(text):  # a few characters lower-case to two; keep offsets exact
            low = "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in text)
        self.low = low

    def free(self, m: re.Match[str]) -> bool:
        return not any(self.taken[m.start() : m.end()])

    def take(self, m: re.Match[str]) -> None:
        self.taken[m.start() : m.end()] = b"\x01" * (m.end() - m.start())

    def add(self, c: Claim) -> None:
        self.out.append(c)
        self.taken[c.start : c.end] = b"\x01" * (c.end - c.start)

    def claim(self, kind: str, key: str, m: re.Match[str], **extra: Any) -> Claim:
        return Claim(kind, key, self.text[m.start() : m.end()], m.start(), m.end(), **extra)

    def unread(self, pattern: re.Pattern[str], *, lower: bool = True) -> Iterator[re.Match[str]]:
        """Matches of ``pattern`` that no earlier claim (or masked noise) overlaps."""
        for m in pattern.finditer(self.low if lower else self.text):
            if self.free(m):
                yield m


def _mask_noise(r: _Reader) -> None:
    for m in _NOISE.finditer(r.low):
        r.take(m)
    if "@" in r.text:
        for m in _EMAIL.finditer(r.text):
            r.take(m)
    for m in MARKER.finditer(r.text):
        r.take(m)


def _month_day(g: dict[str, str | None]) -> tuple[int, int]:
    if g["m"]:
        return int(g["m"]), int(g["d"] or 0)
    if g["zm"]:
        return int(number_value(g["zm"]) or 0), int(number_value(g["zd"] or "") or 0)
    name = (g["mon"] or g["mon2"] or "").casefold()[:3]
    mon = next(i for i, n in enumerate(_MONTHS, start=1) if n.startswith(name))
    return mon, int(g["d1"] or g["d2"] or 0)


def _read_dates(r: _Reader) -> None:
    for m in r.unread(_DATE):
        g = m.groupdict()
        year: str | None = g["y"] or g["zy"] or g["y1"] or g["y2"]
        mon, day = _month_day(g)
        if not (1 <= mon <= 12 and 1 <= day <= 31):
            continue
        nums = _nums(float(day), float(mon), float(year) if year else None)
        r.add(r.claim("date", f"{mon:02d}-{day:02d}", m, numbers=nums))
        if year:
            r.out.append(Claim("number", year, year, m.start(), m.end(), numbers=frozenset([year])))


def _hour_minute(g: dict[str, str | None]) -> tuple[int, int, int] | None:
    """(hour as written, hour on a 24-hour clock, minute) of a time match, or None."""
    if g["h"] is not None:
        h, mi = int(g["h"]), int(g["mi"] or 0)
        if not 1 <= h <= 12:
            return None
        pm = (g["ap"] or "").casefold().startswith("p")
        return h, (h % 12) + (12 if pm else 0), mi
    if g["h2"] is not None:
        h = int(g["h2"])
        return h, h, int(g["mi2"] or 0)
    hv = number_value(g["zh"] or "")
    if hv is None or hv > 24:
        return None
    h = int(hv)
    mi = int(g["zmi"] or (30 if g["half"] else 0))
    return h, h + 12 if g["zp"] in ("下午", "晚上") and h < 12 else h, mi


def _read_times(r: _Reader) -> None:
    for m in r.unread(_TIME):
        hm = _hour_minute(m.groupdict())
        if hm is None:
            continue
        h, h24, mi = hm
        r.add(r.claim("time", f"{h24:02d}:{mi:02d}", m, numbers=_nums(h, h24, mi or None)))


def _read_prices(r: _Reader) -> None:
    for m in r.unread(_PRICE):
        num = m.group("num") or m.group("num2")
        cur = (m.group("cur") or "").casefold()
        family = _CURRENCY_PREFIX.get(cur) if cur else _CURRENCY_SUFFIX.get((m.group("cur2") or "").casefold(), "")
        value = number_value(num)
        if value is None:
            continue
        r.add(r.claim("price", canon(value), m, unit=family or "", numbers=_nums(value)))


def _read_percents(r: _Reader) -> None:
    for m in r.unread(_PERCENT):
        raw = m.group("num") or m.group("zh")
        value = number_value(raw) if raw else None
        if value is None:
            continue
        r.add(r.claim("percent", canon(value), m, numbers=_nums(value)))


def _unit_seconds(m: re.Match[str]) -> int | None:
    unit = (m.group("unit") or "").casefold()
    unit = unit[:-1] if unit.endswith("s") and unit not in ("s",) else unit
    return _UNIT_SECONDS.get(unit) or _UNIT_SECONDS.get(m.group("zunit") or "")


def _read_durations(r: _Reader) -> None:
    for m in r.unread(_DURATION):
        a = m.group("a")
        if a.casefold() in ("a", "an") and not r.lenient:
            continue
        secs = _unit_seconds(m)
        if secs is None:
            continue
        raw_values = [number_value(a)]
        if m.group("b"):
            raw_values.append(number_value(m.group("b")))
        values = [v for v in raw_values if v is not None]
        if len(values) != len(raw_values):
            continue
        for v in values:  # a range ("3-5 days") claims both ends
            r.out.append(r.claim("duration", canon(v * secs), m, numbers=_nums(v)))
        r.take(m)


def _day_key(m: re.Match[str]) -> str:
    if m.group("zw"):
        return "weekday-" + str("一二三四五六日天".index(m.group("zw")) % 7 if m.group("zw") != "天" else 6)
    if m.group("w"):
        wday = m.group("w").casefold()[:3]
        return "weekday-" + str(next(i for i, d in enumerate(_WEEKDAYS) if d.startswith(wday)))
    return "month-" + str(_MONTHS.index(m.group("m").casefold()) + 1)


def _read_day_names(r: _Reader) -> None:
    for m in r.unread(_DAY_NAME):
        r.add(r.claim("date", _day_key(m), m))


def _read_codes(r: _Reader) -> None:
    for m in r.unread(_CODE, lower=False):
        word = m.group(0)
        if not re.search(r"\d", word):
            continue
        squashed = re.sub(r"[\W_]+", "", word).casefold()
        r.add(r.claim("code", squashed, m, numbers=_nums(*(float(d) for d in re.findall(r"\d+", word)))))


def _read_numbers(r: _Reader) -> None:
    for m in r.unread(_NUMBER):
        raw = m.group(0)
        if not raw[0].isdigit() and not r.lenient:
            continue  # "one of our agents": number words alone are not claims in an answer
        value = number_value(raw)
        if value is None:
            continue
        r.add(Claim("number", canon(value), raw, m.start(), m.end(), numbers=_nums(value)))


#: The readers in the order they claim spans: a span taken by one is not read again.
_READERS = (_read_dates, _read_times, _read_prices, _read_percents, _read_durations, _read_day_names,
            _read_codes, _read_numbers)


def extract_claims(text: str, *, lenient: bool = False) -> list[Claim]:
    """Claims in ``text`` (already :func:`prepare`-d), in order. ``lenient`` (for passages)
    also reads standalone number words and "a day"."""
    r = _Reader(text, lenient)
    _mask_noise(r)
    for read in _READERS:
        read(r)
    r.out.extend(_names(text, r.taken))
    return sorted(r.out, key=lambda c: c.start)


def _names(text: str, taken: bytearray) -> list[Claim]:
    """Capitalised words not opening a sentence (or any Latin word inside Chinese text, where
    case carries no sentence start), grouped into phrases: "Brightbrew Aroma One"."""
    found: list[Claim] = []
    run: list[re.Match[str]] = []

    def flush() -> None:
        if run:
            s, e = run[0].start(), run[-1].end()
            phrase = re.sub(r"(?:'s|’s)$", "", text[s:e])
            found.append(Claim("name", phrase.casefold(), phrase, s, e))
            run.clear()

    for m in _NAME_WORD.finditer(text):
        word = m.group(0)
        if any(taken[m.start() : m.end()]) or word.casefold().rstrip("'’") in _NOT_NAMES:
            flush()
            continue
        in_chinese = bool(_CJK.search(text[max(0, m.start() - 2) : m.end() + 2]))
        opening = bool(_SENTENCE_START.search(text[: m.start()][-3:] if m.start() else ""))
        cased = (word.isupper() and len(word) > 1) or (any(c.isupper() for c in word[1:]) and not word.isupper())
        if run and text[run[-1].end() : m.start()].strip() == "":
            run.append(m)
            continue
        flush()
        if opening and not in_chinese and not cased:
            continue
        run.append(m)
    flush()
    return found
