"""Choosing the sentences of retrieved chunks that answer a question.

Chunks come from exported help pages: they carry breadcrumbs ("Home / Help / Shipping"),
footers ("Was this article helpful?"), Markdown emphasis and tables. A quote is read by a
customer, so those are dropped or rendered as text first, then every sentence is scored against
the question by meaning (the embedder) and by the question's words it contains (the keyword
tokens), and the best ones are returned in document order, with a neighbour when a sentence
cannot stand alone ("It takes 5 days." after "Refunds go back to your card.").
"""

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from knowledge.embeddings import Embedder
from knowledge.keyword import tokenize

__all__ = ["Highlight", "drop_navigation", "highlight", "is_navigation", "plain_text", "split_sentences"]

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
    r"相关文章|最后更新)",
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


def drop_navigation(text: str) -> str:
    """``text`` without its navigation lines (kept as written otherwise)."""
    # A lone word stays: it may be all a short document says.
    return "\n".join(
        line for line in text.splitlines() if not line.strip() or not is_navigation(line, lone_words=False)
    )


_FAQ = re.compile(r"^\s*Q:\s*(?P<q>.*?)\n\s*A:\s*(?P<a>.*)$", re.DOTALL)


def split_sentences(text: str, *, exclude: Sequence[str] = ()) -> list[str]:
    """Readable sentences of a chunk: Markdown rendered, navigation lines dropped, and lines
    that only repeat the page title or a heading (``exclude``) left out. Of a FAQ pair only the
    answer is kept: the question is the customer's words, not the answer."""
    faq = _FAQ.match(text)
    if faq:
        text = faq.group("a")
    skip = {_fold(x) for x in exclude if x}
    out: list[str] = []
    for raw_line in text.splitlines():
        if _TABLE_RULE.match(raw_line) or is_navigation(raw_line) or _fold(plain_text(raw_line)) in skip:
            continue
        line = plain_text(raw_line)
        if not line or is_navigation(line):
            continue
        for piece in _SENTENCE_END.split(line):
            piece = piece.strip()
            if piece and not is_navigation(piece) and re.search(r"\w", piece):
                out.append(piece)
    return out


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
        "tell",
        "know",
        "want",
        "like",
    ]
)
# What a question asks for, and how its answer shows it: "how much" wants a price, "how long" a
# duration. A general lexicon of English and Chinese question forms, the same for any business.
_ASKS: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (re.compile(q, re.IGNORECASE), re.compile(a, re.IGNORECASE))
    for q, a in (
        (r"\bhow much\b|\bcost|\bprice|\bfee|\bcharge|多少钱|价格|价钱|费用|收费|多少元|贵",
         r"[€$£¥]\s?\d|\d\s?(€|eur|euros?|usd|gbp|元|块)|免费|\bfree\b"),
        (r"\bhow (long|soon)\b|\bwhen\b|\buntil\b|\bhow many (days|weeks|months|years|hours|minutes)|多久|"
         r"多长时间|几天|什么时候|几个月|几年|多少天",
         r"\d\s?(-|to)?\s?\d*\s?(working |business )?(days?|weeks?|months?|years?|hours?|minutes?|mins?)\b|"
         r"[\d一二三四五六七八九十两]+\s?(个)?(工作日|天|周|个月|月|年|小时|分钟)"),
        (r"\bhow fast\b|\bspeed\b|多快|速度|时速", r"km/h|mph|公里/小时|千米/小时"),
        (r"\bhow (heavy|much does .* weigh)\b|\bweigh|\bload\b|多重|重量|载重", r"\d\s?(kg|kilos?|公斤|千克)"),
        (r"\bhow (tall|big|far)\b|\bheight\b|\bsize\b|\brange\b|多高|尺寸|多大|多远|续航",
         r"\d\s?(cm|mm|m|km|inch|\"|厘米|毫米|公里)\b"),
        (r"\bhow many\b|\bhow often\b|几次|多少次|几个|多少个", r"\d|[一二三四五六七八九十两]"),
    )
)
_NUMBER = re.compile(r"\d")


def _asks_for(question: str) -> list[re.Pattern[str]]:
    return [answer for asked, answer in _ASKS if asked.search(question)]


def _content(text: str) -> set[str]:
    return {t for t in tokenize(text) if t not in _QUESTION_WORDS}


def _coverage(question: set[str], sentence: set[str]) -> float:
    return len(question & sentence) / len(question) if question else 0.0


def _stands_alone(sentence: str) -> bool:
    if re.match(r"^[^:：]{2,40}[:：]\s*\S", sentence):
        return True  # "Top speed: 25 km/h" says what it is about
    cjk = bool(_CJK.search(sentence))
    short = len(sentence) < (12 if cjk else 35)
    return not (short or _LEANS_BACK.match(unicodedata.normalize("NFKC", sentence)))


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
) -> list[Highlight]:
    """For each chunk text, the sentences that answer ``question`` best.

    At most ``max_total`` sentences are embedded per call, so a long chunk cannot make an
    answer slow; the rest are scored by their words only.
    """
    per_text = [split_sentences(t, exclude=headings[i] if i < len(headings) else ()) for i, t in enumerate(texts)]
    flat = [s for sentences in per_text for s in sentences]
    q_all = _content(question)
    wants = _asks_for(question)
    semantic = np.zeros(len(flat), dtype=np.float32)
    if flat:
        budget = flat[:max_total]
        vectors = np.asarray(embedder.embed(budget), dtype=np.float32)
        semantic[: len(budget)] = vectors @ np.asarray(question_vector, dtype=np.float32)
    results: list[Highlight] = []
    offset = 0
    for index, sentences in enumerate(per_text):
        n = len(sentences)
        if n == 0:
            results.append(Highlight((), 0.0))
            continue
        # The words the page's title and headings already answer ("City E1" on the City E1
        # page) do not tell its sentences apart; the rest of the question does ("top speed").
        context = _content(" ".join(headings[index])) if index < len(headings) else set()
        q_tokens = q_all - context  # empty when the question only names the page's subject
        scores = [
            semantic_weight * float(semantic[offset + i])
            + (1 - semantic_weight) * _coverage(q_tokens, _content(s))
            + (number_bonus if any(w.search(s) for w in wants) else 0.0)
            for i, s in enumerate(sentences)
        ]
        offset += n
        ranked = sorted(range(n), key=lambda i: -scores[i])
        chosen = {ranked[0]}
        best = ranked[0]
        if not _stands_alone(sentences[best]) and best > 0:
            chosen.add(best - 1)
        if sentences[best].rstrip().endswith((":", "：")) and best + 1 < n:
            chosen.add(best + 1)
        for i in ranked[1:]:
            if len(chosen) >= max_sentences:
                break
            # A second sentence only when it also answers, not merely sits in the same chunk.
            if scores[i] >= 0.8 * scores[best]:
                chosen.add(i)
        results.append(Highlight(tuple(sentences[i] for i in sorted(chosen)), scores[best]))
    return results
