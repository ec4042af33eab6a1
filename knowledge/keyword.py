"""A small BM25 index for exact terms: product codes, error numbers, names.

Vectors blur ``AC-2041`` into "some product code"; this index does not. Latin text is split
into words (codes like ``ac-2041`` are kept whole and also split); Chinese, Japanese and Korean
runs become character bigrams, so the index needs no word segmenter.

Postings are compact arrays; a removed chunk is a tombstone until the next compaction.
"""

import math
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["KeywordHit", "KeywordIndex", "is_cjk_query", "is_exact_term", "tokenize"]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+(?:[-_./][^\W_{_CJK}]+)*")
_IS_CJK = re.compile(rf"[{_CJK}]")
_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "do",
        "does",
        "did",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "also",
        "any",
        "all",
        "just",
        "more",
        "most",
        "other",
        "some",
        "such",
        "only",
        "own",
        "same",
        "very",
        "s",
        "t",
        "don",
        "should",
        "now",
        "get",
        "got",
    ]
)
# Function characters: they carry no topic, so they do not count towards coverage.
_CJK_STOP = frozenset("的了吗呢吧啊是么什怎哪谁我你您们这那在和与或也都就还请问呀嘛个多少久可以能要会该如何为样")
# The frame of a question ("how long does it take", "can I still"): searched for, but not a
# topic the knowledge base has to cover, so they do not count towards coverage or unknown words.
_QUESTION_WORDS = frozenset(
    [
        "long", "take", "takes", "much", "many", "need", "needs", "want", "like", "please", "pls",
        "plz", "tell", "know", "way", "happen", "happens", "still", "really", "kind", "thing",
        "something", "anything", "actually", "possible", "able", "okay", "ok", "hi", "hello", "hey",
        "thanks", "thank", "use", "using", "used", "make", "work", "works", "go", "going", "put",
        "let", "one", "whats", "hows", "wheres", "whos", "im", "ive", "id", "dont", "cant", "wont",
        "isnt", "doesnt", "u", "ur", "r",
    ]
)
# The same frame in Chinese ("大概要多久", "能不能", "有没有"): words of the question's form, matched as
# whole phrases inside a run of characters (a word segmenter is not needed for these).
_CJK_FRAMES = tuple(
    sorted(
        [
            "大概", "大约", "一般", "通常", "到底", "究竟", "是不是", "能不能", "可不可以", "有没有", "要不要",
            "会不会", "需不需要", "用不用", "贵不贵", "好不好", "行不行", "怎么样", "怎么办", "怎样", "为什么",
            "一下", "现在", "还能", "还可以", "自己", "需要", "一个", "什么", "如果", "的话", "时候", "请问",
            "知道", "告诉", "想要", "能好", "办法",
        ],
        key=len,
        reverse=True,
    )
)
_MAX_UNITS = 62
_K1 = 1.2
_B = 0.75


def _stem(word: str) -> str:
    # Plural folding only: enough for "returns"/"return", harmless for codes.
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    # "bonus", "status", "analysis" are not plurals.
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) and word.isalpha():
        return word[:-1]
    return word


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _measure(text: str, number: re.Match[str] | None, run: re.Match[str]) -> str | None:
    """A number with the CJK unit written right after it ("30 米", "5元", "24小时"): its own term,
    so "30 米" finds the cable length and not "30 元/天" of a price list."""
    if number is None or run.start() - number.end() > 1 or text[number.end() : run.start()].strip():
        return None
    return number.group() + run.group()[0]


def tokenize(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    tokens: list[str] = []
    number: re.Match[str] | None = None
    for match in _TOKEN.finditer(text):
        run = match.group()
        if _IS_CJK.match(run):
            measure = _measure(text, number, match)
            if measure:
                tokens.append(measure)
            number = None
            if len(run) == 1:
                tokens.append(run)
            else:
                tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
            continue
        number = match if _NUMBER.fullmatch(run) else None
        parts = re.split(r"[-_./]", run)
        if len(parts) > 1:
            tokens.append(run)
            tokens.append("".join(parts))  # "AC2041" finds "AC-2041"
        for part in parts:
            if part and part not in _STOPWORDS:
                tokens.append(_stem(part))
    return tokens


def _cjk_frame(run: str) -> int:
    """Bitmask of the characters of a CJK run that belong to a question-frame phrase."""
    mask = 0
    for phrase in _CJK_FRAMES:
        start = run.find(phrase)
        while start >= 0:
            mask |= ((1 << len(phrase)) - 1) << start
            start = run.find(phrase, start + len(phrase))
    return mask


_WHOLE = "\x01"  # prefix of the index-only terms that mark a code written whole in a chunk


def _whole_codes(text: str) -> set[str]:
    """The code-like terms a text writes as a whole word: ``192`` in "192 号段" but not in
    "192.168.1.1", where it is a part of another thing."""
    text = unicodedata.normalize("NFKC", text).lower()
    out: set[str] = set()
    for match in _TOKEN.finditer(text):
        run = match.group()
        if _IS_CJK.match(run):
            continue
        parts = [p for p in re.split(r"[-_./]", run) if p]
        for term in [run, "".join(parts)] if len(parts) > 1 else parts:
            if is_exact_term(term):
                out.add(_WHOLE + term)
    return out


def _query_terms(query: str) -> tuple[dict[str, int], int, set[str], int]:
    """Each query term with the bitmask of query units it covers, the mask of content units,
    the terms that are whole query words (``1550`` inside ``BB-1550-BR`` is not one), and the
    mask of the units that are Latin words (not CJK characters).

    A unit is a CJK character or a Latin word. Coverage counts units, not terms: a Chinese
    question's bigrams that straddle two words ("国需" in "中国需要") match nothing, and
    counting them would punish every Chinese question.
    """
    text = unicodedata.normalize("NFKC", query).lower()
    terms: dict[str, int] = {}
    whole_words: set[str] = set()
    content = 0
    latin = 0
    unit = 0

    def add(term: str, mask: int) -> None:
        terms[term] = terms.get(term, 0) | mask

    number: tuple[re.Match[str], int] | None = None
    for match in _TOKEN.finditer(text):
        if unit >= _MAX_UNITS:
            break
        run = match.group()
        if _IS_CJK.match(run):
            measure = _measure(text, number[0], match) if number else None
            if measure and number:
                add(measure, 1 << number[1] | 1 << unit)
            number = None
            run = run[: _MAX_UNITS - unit]
            frame = _cjk_frame(run)
            for offset, char in enumerate(run):
                if char not in _CJK_STOP and not frame >> offset & 1:
                    content |= 1 << (unit + offset)
            if len(run) == 1:
                add(run, 1 << unit)
            for offset in range(len(run) - 1):
                add(run[offset : offset + 2], 0b11 << (unit + offset))
            unit += len(run)
            continue
        number = (match, unit) if _NUMBER.fullmatch(run) else None
        parts = [p for p in re.split(r"[-_./]", run) if p]
        whole_words.update([run, "".join(parts)] if len(parts) > 1 else parts)
        start = unit
        for part in parts:
            if part not in _STOPWORDS and unit < _MAX_UNITS:
                if part not in _QUESTION_WORDS:
                    content |= 1 << unit
                latin |= 1 << unit
                add(_stem(part), 1 << unit)
                unit += 1
        if len(parts) > 1 and unit > start:
            whole = ((1 << unit) - 1) ^ ((1 << start) - 1)
            add(run, whole)
            add("".join(parts), whole)
    return terms, content, whole_words, latin


class KeywordHit(NamedTuple):
    chunk_id: str
    score: float
    exact_term: bool
    """The chunk holds a code-like term of the query (``AC-2041``, ``E1234``)."""
    coverage: float
    """Share of the query's content units (CJK characters, words) the chunk's terms cover."""


def is_cjk_query(text: str) -> bool:
    """Mostly Chinese/Japanese/Korean: the offline English model cannot judge these."""
    letters = [c for c in text if c.isalnum()]
    return bool(letters) and sum(bool(_IS_CJK.match(c)) for c in letters) >= 0.3 * len(letters)


def is_exact_term(token: str) -> bool:
    """A token worth trusting on its own: letters with digits, or a number of 3+ digits."""
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    digits = sum(c.isdigit() for c in token)
    return (has_digit and has_alpha and len(token) >= 3) or digits >= 3


class KeywordIndex:
    def __init__(self) -> None:
        self._ids: list[str] = []
        self._slot: dict[str, int] = {}
        self._lengths = array("I")
        self._alive = bytearray()
        self._postings: dict[str, tuple[array[int], array[int]]] = {}
        self._live = 0
        self._dead = 0
        self._total_length = 0
        self._version = 0
        self._analysed: tuple[str, int, tuple[dict[str, int], int, set[str], int]] | None = None

    def __len__(self) -> int:
        return self._live

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._slot

    def add(self, chunk_id: str, text: str) -> None:
        if chunk_id in self._slot:
            self.remove(chunk_id)
        counts = Counter(tokenize(text))
        length = sum(counts.values())
        counts.update(_whole_codes(text))
        slot = len(self._ids)
        self._ids.append(chunk_id)
        self._slot[chunk_id] = slot
        self._lengths.append(length)
        self._alive.append(1)
        self._live += 1
        self._version += 1
        self._total_length += length
        for term, tf in counts.items():
            posting = self._postings.get(term)
            if posting is None:
                posting = self._postings[term] = (array("I"), array("H"))
            posting[0].append(slot)
            posting[1].append(min(tf, 65535))

    def remove(self, chunk_id: str) -> None:
        slot = self._slot.pop(chunk_id, None)
        if slot is None:
            return
        self._alive[slot] = 0
        self._live -= 1
        self._version += 1
        self._dead += 1
        self._total_length -= self._lengths[slot]
        if self._dead > 1000 and self._dead > self._live:
            self._compact()

    def _compact(self) -> None:
        alive = np.frombuffer(bytes(self._alive), dtype=np.uint8).astype(bool)
        new_slot = np.cumsum(alive) - 1
        postings: dict[str, tuple[array[int], array[int]]] = {}
        for term, (docs, tfs) in self._postings.items():
            d = np.frombuffer(docs, dtype=np.uint32)
            keep = alive[d]
            if keep.any():
                postings[term] = (
                    array("I", new_slot[d[keep]].astype(np.uint32).tobytes()),
                    array("H", np.frombuffer(tfs, dtype=np.uint16)[keep].tobytes()),
                )
        self._postings = postings
        self._ids = [cid for cid, a in zip(self._ids, self._alive, strict=True) if a]
        self._slot = {cid: i for i, cid in enumerate(self._ids)}
        self._lengths = array("I", (n for n, a in zip(self._lengths, self._alive, strict=True) if a))
        self._alive = bytearray(b"\x01" * len(self._ids))
        self._dead = 0

    def _analyse(self, query: str) -> tuple[dict[str, int], int, set[str], int]:
        """``_query_terms`` with each term in its indexed form (``_known_forms``). A search asks
        for the same question's analysis three times (the BM25 hits, the unknown words, the
        evidence of the top passages), and correcting a typo tries a hundred spellings: the
        last analysis is kept until the question or the index changes."""
        last = self._analysed
        if last is not None and last[0] == query and last[1] == self._version:
            return last[2]
        raw, content, whole_words, latin = _query_terms(query)
        analysed = (self._known_forms(raw), content, whole_words, latin)
        self._analysed = (query, self._version, analysed)
        return analysed

    def _known_forms(self, terms: dict[str, int]) -> dict[str, int]:
        """The query's terms, each word the index lacks replaced by the indexed word it most
        likely means: a typo one edit away ("braodband", "cancell") or another form of the same
        word ("fastest", "charging"). Users type like that on every help centre."""
        out: dict[str, int] = {}
        for term, mask in terms.items():
            known = term if term in self._postings else self._correct(term)
            key = known or term
            out[key] = out.get(key, 0) | mask
        return out

    def _correct(self, word: str) -> str | None:
        if len(word) < 4 or not word.isalpha() or _IS_CJK.match(word):
            return None
        for suffix in ("est", "er", "ing", "ed", "ly", "e"):
            base = word[: -len(suffix)]
            if word.endswith(suffix) and len(base) >= 3:
                doubled = base[:-1] if len(base) > 3 and base[-1] == base[-2] else base  # "cancelling"
                for form in (base, base + "e", doubled):
                    if form in self._postings:
                        return form
        if len(word) < 5:
            return None
        letters = "abcdefghijklmnopqrstuvwxyz"
        splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
        candidates = [a + b[1:] for a, b in splits if b]
        candidates += [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1]
        candidates += [a + c + b[1:] for a, b in splits if b for c in letters]
        candidates += [a + c + b for a, b in splits for c in letters]
        best: str | None = None
        best_df = 0
        for candidate in candidates:
            posting = self._postings.get(candidate)
            if posting is not None and len(posting[0]) > best_df:
                best, best_df = candidate, len(posting[0])
        return best

    def unknown_share(self, query: str) -> float:
        """Share of the query's content units that no chunk contains at all: a question about
        a product or a term this knowledge base never mentions ("E2", "Bosch") is likely
        outside it, however similar its wording is to a page."""
        latin, cjk = self.unknown_shares(query)
        return latin + cjk

    def unknown_shares(self, query: str) -> tuple[float, float]:
        """``unknown_share`` split into its Latin words and its CJK characters (each a share of
        all the content units): an unknown model name in a Chinese question ("S3 什么时候上市")
        means what it means in an English one, unlike an unknown pair of characters."""
        terms, content, _whole, latin = self._analyse(query)
        units = content.bit_count()
        if units == 0:
            return 0.0, 0.0
        known = 0
        for term, mask in terms.items():
            if term in self._postings:
                known |= mask
        unknown = content & ~known
        return (unknown & latin).bit_count() / units, (unknown & ~latin).bit_count() / units

    def evidence(self, query: str, groups: Sequence[Sequence[str]]) -> list[tuple[float, float]]:
        """How well each group of passages (the best one of a search, the best three) holds the
        question's words.

        For each group: the rarity-weighted share of the question's content units that its
        chunks contain (each unit weighs the idf of the rarest indexed term covering it; a Latin
        word no chunk has weighs the most), and the weight of the rarest content unit they lack,
        as a share of that maximum. A question about something the pages never mention (another
        model, a feature they lack) leaves its rarest word uncovered, whatever else it shares
        with them. A Chinese unit no indexed term covers (its bigrams straddle words) weighs
        nothing here: ``unknown_shares`` counts those.
        """
        terms, content, _whole, latin = self._analyse(query)
        if content == 0 or self._live == 0:
            # A question with no topic word ("how do I do that?") holds no evidence either way;
            # it counts as none, so on its own it does not look answerable.
            return [(0.0, 1.0) for _ in groups]
        slots = [np.asarray([self._slot[c] for c in group if c in self._slot], dtype=np.uint32) for group in groups]
        top_idf = math.log(1 + (self._live + 0.5) / 0.5)
        weight = [0.0] * _MAX_UNITS
        covered = [0] * len(groups)
        for term, mask in terms.items():
            posting = self._postings.get(term)
            if posting is None:
                idf = top_idf
                mask &= latin
            else:
                # A posting's slots are ascending (chunks are appended; compaction keeps order).
                docs = np.frombuffer(posting[0], dtype=np.uint32)
                idf = math.log(1 + max(self._live - len(docs) + 0.5, 0.5) / (len(docs) + 0.5))
                for g, group in enumerate(slots):
                    if group.size:
                        at = np.minimum(np.searchsorted(docs, group), len(docs) - 1)
                        if bool((docs[at] == group).any()):
                            covered[g] |= mask
            mask &= content
            while mask:
                bit = mask & -mask
                unit = bit.bit_length() - 1
                weight[unit] = max(weight[unit], idf)
                mask ^= bit
        total = sum(weight)
        if total <= 0:  # no content unit of the question is known here at all
            return [(0.0, 1.0) for _ in groups]
        out = []
        for held_mask in covered:
            held = sum(w for unit, w in enumerate(weight) if held_mask >> unit & 1)
            lacking = max((w for unit, w in enumerate(weight) if not held_mask >> unit & 1), default=0.0)
            out.append((held / total, lacking / top_idf))
        return out

    def search(self, query: str, k: int) -> list[KeywordHit]:
        """Up to ``k`` hits, best BM25 score first."""
        if self._live == 0:
            return []
        terms, content, whole_words, _latin = self._analyse(query)
        n = len(self._ids)
        scores = np.zeros(n, dtype=np.float32)
        covered = np.zeros(n, dtype=np.int64)
        exact = np.zeros(n, dtype=bool)
        lengths = np.frombuffer(self._lengths, dtype=np.uint32).astype(np.float32)
        avg = max(self._total_length / self._live, 1.0)
        norm = _K1 * (1 - _B + _B * lengths / avg)
        for term, mask in terms.items():
            posting = self._postings.get(term)
            if posting is None:
                continue
            docs = np.frombuffer(posting[0], dtype=np.uint32)
            tfs = np.frombuffer(posting[1], dtype=np.uint16).astype(np.float32)
            df = len(docs)
            # Tombstones still count in df until compaction; clamp so idf stays positive.
            idf = math.log(1 + max(self._live - df + 0.5, 0.5) / (df + 0.5))
            scores[docs] += idf * tfs * (_K1 + 1) / (tfs + norm[docs])
            covered[docs] |= mask
            whole = self._postings.get(_WHOLE + term) if term in whole_words and is_exact_term(term) else None
            if whole is not None:
                exact[np.frombuffer(whole[0], dtype=np.uint32)] = True
        scores *= np.frombuffer(bytes(self._alive), dtype=np.uint8)
        candidates = int(np.count_nonzero(scores))
        if candidates == 0:
            return []
        top = min(k, candidates)
        best = np.argpartition(-scores, top - 1)[:top]
        best = best[np.argsort(-scores[best])]
        units = max(content.bit_count(), 1)
        return [
            KeywordHit(self._ids[i], float(scores[i]), bool(exact[i]), (int(covered[i]) & content).bit_count() / units)
            for i in best
        ]
