"""Text helpers shared by the policy, extractive mode and the guard: normalisation (so lookalike
and zero-width tricks do not dodge a check), language detection, tokens, sentence splitting."""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "ZERO_WIDTH",
    "content_tokens",
    "is_chinese",
    "is_navigation_line",
    "normalize",
    "plain_markdown",
    "split_sentences",
    "strip_invisible",
]

# Zero-width and other invisible format characters used to hide text or split keywords.
ZERO_WIDTH = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s+|(?<=[。！？；])|\n+")

_STOPWORDS_TEXT = (
    "a an the to of and or in on at for is are was were be been do does did i you we it my your "
    "me can could would should how what when where why which who this that with from by as if "
    "there their our us have has had not no so just about into any some will shall may"
)
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
_ZH_STOP = frozenset("的了吗呢吧啊呀么是在我你他她它们这那有和与及或怎么如何什么请问一个")


def strip_invisible(text: str) -> str:
    return ZERO_WIDTH.sub("", text)


def normalize(text: str) -> str:
    """NFKC (full-width → ASCII), drop invisible characters, casefold, collapse whitespace."""
    text = strip_invisible(unicodedata.normalize("NFKC", text)).casefold()
    return re.sub(r"\s+", " ", text).strip()


def is_chinese(text: str) -> bool:
    """True when Chinese characters dominate the letters of ``text``."""
    cjk = len(_CJK.findall(text))
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    return cjk >= 2 and cjk * 3 >= latin


def content_tokens(text: str) -> list[str]:
    """Latin words (minus stopwords, light plural stemming) plus Chinese character bigrams."""
    norm = normalize(text)
    out: list[str] = []
    for w in _LATIN_WORD.findall(norm):
        if w in _STOPWORDS or len(w) < 2:
            continue
        if len(w) > 4 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    for run in re.findall(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+", norm):
        chars = [c for c in run if c not in _ZH_STOP]
        if len(chars) == 1:
            out.append(chars[0])
        out.extend(chars[i] + chars[i + 1] for i in range(len(chars) - 1))
    return out


def split_sentences(text: str) -> list[str]:
    """Split on English and Chinese sentence punctuation and on line breaks."""
    parts = (p.strip() for p in _SENTENCE_END.split(text))
    return [p for p in parts if p]


_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|`)(?=\S)(.+?)(?<=\S)\1")
_MD_LINE_START = re.compile(r"^\s*(?:#{1,6}\s+|>\s?|[-*+]\s+|\d{1,2}[.)]\s+)")


def plain_markdown(text: str) -> str:
    """A Markdown line as a reader sees it: no heading marks, emphasis, link syntax or bullets;
    a table row as "first cell: the others", a table rule as nothing."""
    text = _MD_LINE_START.sub("", _MD_LINK.sub(r"\1", text))
    text = _MD_EMPHASIS.sub(r"\2", text)
    if text.count("|") >= 2:
        cells = [c.strip() for c in text.strip().strip("|").split("|")]
        cells = [c for c in cells if c and not set(c) <= set("-: ")]
        text = f"{cells[0]}: {', '.join(cells[1:])}" if len(cells) > 1 else "".join(cells)
    return re.sub(r"\s+", " ", text.replace("|", " ")).strip()


_CRUMB = re.compile(r"\s+(?:/|>|»|›|→|\|)\s+")
_PAGE_FURNITURE = re.compile(
    r"was this (article|page) helpful|back to top|skip to (main )?content|all rights reserved|©|"
    r"(accept|we use|this (site|website) uses) (all )?cookies|这篇文章有帮助吗|本文是否有帮助|返回顶部|版权所有",
    re.IGNORECASE,
)


def is_navigation_line(text: str) -> bool:
    """A breadcrumb ("Home / Help / Delivery", "首页 > 帮助") or page furniture ("Was this article
    helpful?", a cookie banner): page text that is no answer to quote."""
    text = text.strip()
    parts = _CRUMB.split(text)
    if len(parts) >= 3 and all(len(x) <= 40 for x in parts) and not re.search(r"[.!?。！？]$", text):
        return True
    return bool(_PAGE_FURNITURE.search(text)) and len(text) < 160
