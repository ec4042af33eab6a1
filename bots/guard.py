"""The output guard: nothing reaches a user (final message or streamed delta) before it is checked.

Refused outright: the system-prompt canary, any other canary or foreign (other-tenant) text,
compared after normalisation (NFKC, no invisible characters, case- and separator-insensitive) so
spacing or zero-width tricks do not sneak one through. Cleaned: markdown images (an image URL is
an exfiltration channel: the client would fetch it), raw HTML tags (stripped to their text,
script/style bodies dropped), and optionally links to domains that were not cited.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bots.text import normalize, strip_invisible

__all__ = ["REFUSAL_EN", "REFUSAL_ZH", "GuardResult", "StreamGuard", "check_output"]

REFUSAL_EN = "Sorry, I can't share that. Is there something else I can help you with?"
REFUSAL_ZH = "抱歉，这部分内容我无法提供。还有其他可以帮您的吗？"

_MD_IMAGE = re.compile(r"!\s*\[([^\]]*)\]\s*(?:\([^)]*\)?|\[[^\]]*\])")
_MD_REF_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*\S+.*$", re.MULTILINE)
_SCRIPT = re.compile(r"<\s*(script|style|iframe|object|embed)\b.*?(?:<\s*/\s*\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<\s*/?\s*[a-zA-Z!?][^<>]*>|<\s*/?\s*[a-zA-Z][\w:-]*(?=\s|$)[^<>]*$")
_MD_LINK = re.compile(r"\[([^\]]*)\]\(\s*(<?[a-zA-Z][\w+.-]*:[^)\s]*>?)(?:\s+\"[^\"]*\")?\s*\)")
_BARE_URL = re.compile(r"\b(?:https?|ftp|data|javascript):[^\s)\]>]+", re.IGNORECASE)


def _squash(text: str) -> str:
    """Letters and digits only, for separator-insensitive matching."""
    return re.sub(r"[\W_]+", "", normalize(text))


@dataclass(frozen=True, slots=True)
class GuardResult:
    ok: bool
    text: str
    reason: str | None = None
    removed: list[str] = field(default_factory=list)


#: Consecutive letters/digits of the system prompt that count as leaking it.
PROMPT_WINDOW = 30


def _shingles(texts: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for t in texts:
        s = _squash(t)
        out.update(s[i : i + PROMPT_WINDOW] for i in range(max(0, len(s) - PROMPT_WINDOW + 1)))
    return out


def _prompt_leak(squashed: str, shingles: set[str]) -> bool:
    if not shingles:
        return False
    return any(squashed[i : i + PROMPT_WINDOW] in shingles for i in range(len(squashed) - PROMPT_WINDOW + 1))


def _leak(text: str, secrets: Iterable[str]) -> str | None:
    squashed = _squash(html.unescape(text))
    for secret in secrets:
        s = _squash(secret)
        if len(s) >= 6 and s in squashed:
            return secret
    return None


def _domain(url: str) -> str:
    try:
        host = urlsplit(url.strip("<>")).hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


def clean(text: str, *, allowed_domains: Sequence[str] | None = None) -> tuple[str, list[str]]:
    removed: list[str] = []
    text = strip_invisible(text)

    def note(kind: str) -> None:
        if kind not in removed:
            removed.append(kind)

    def image(m: re.Match[str]) -> str:
        note("markdown_image")
        return m.group(1)

    text = _MD_IMAGE.sub(image, text)
    if _MD_REF_DEF.search(text):
        note("markdown_reference")
        text = _MD_REF_DEF.sub("", text)
    if _SCRIPT.search(text):
        note("html")
        text = _SCRIPT.sub("", text)
    if _TAG.search(text):
        note("html")
        text = _TAG.sub("", text)
    if allowed_domains is not None:
        allowed = {d.lower().removeprefix("www.") for d in allowed_domains}

        def ok_domain(url: str) -> bool:
            d = _domain(url)
            return any(d == a or d.endswith("." + a) for a in allowed)

        def link(m: re.Match[str]) -> str:
            if ok_domain(m.group(2)):
                return m.group(0)
            note("foreign_link")
            return m.group(1)

        text = _MD_LINK.sub(link, text)

        def bare(m: re.Match[str]) -> str:
            if ok_domain(m.group(0)):
                return m.group(0)
            note("foreign_link")
            return "[link removed]"

        text = _BARE_URL.sub(bare, text)
    return text.strip(), removed


def check_output(
    text: str,
    *,
    canaries: Sequence[str],
    foreign_texts: Sequence[str] = (),
    allowed_domains: Sequence[str] | None = None,
    secret_texts: Sequence[str] = (),
    zh: bool = False,
) -> GuardResult:
    """Refuse leaks, clean the rest. ``allowed_domains=None`` keeps links; a list keeps only
    links to those domains (e.g. the cited sources'). ``secret_texts`` (the system prompt) may
    not appear in runs of ``PROMPT_WINDOW`` letters/digits or more."""
    refusal = REFUSAL_ZH if zh else REFUSAL_EN
    if _leak(text, canaries) is not None:
        return GuardResult(False, refusal, "canary_leak")
    if _prompt_leak(_squash(html.unescape(text)), _shingles(secret_texts)):
        return GuardResult(False, refusal, "system_prompt_leak")
    if _leak(text, foreign_texts) is not None:
        return GuardResult(False, refusal, "foreign_text")
    cleaned, removed = clean(text, allowed_domains=allowed_domains)
    # Cleaning can join pieces ("CAN<b></b>ARY"): check again.
    if _leak(cleaned, canaries) is not None:
        return GuardResult(False, refusal, "canary_leak")
    if _leak(cleaned, foreign_texts) is not None:
        return GuardResult(False, refusal, "foreign_text")
    return GuardResult(True, cleaned, None, removed)


class StreamGuard:
    """Decides which part of a growing answer is safe to stream as deltas.

    It holds back any tail that could still become a canary, an image, a tag or a link, emits
    only append-only cleaned text, and stops for good once a leak is seen (the final guard then
    refuses the whole answer, and the client replaces the draft by the final message)."""

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        allowed_domains: Sequence[str] | None = None,
        secret_texts: Sequence[str] = (),
    ) -> None:
        self._secrets = [_squash(s) for s in secrets if len(_squash(s)) >= 6]
        self._prompt = "\n".join(_squash(t) for t in secret_texts)
        self._shingles = _shingles(secret_texts)
        self._allowed = allowed_domains
        self._raw = ""
        self._emitted = ""
        self.stopped = False

    def _safe_prefix(self) -> str:
        """The raw text minus any tail that could still become a secret, then minus any
        unfinished construct (cutting for a secret can itself open one, e.g. ``</b`` → ``</``)."""
        cut = self._raw[: len(self._raw) - self._secret_hold(self._raw)]
        return cut[: len(cut) - self._construct_hold(cut)]

    @staticmethod
    def _construct_hold(raw: str) -> int:
        hold = 0
        # An unfinished construct: a tag, an image or link without its ")", a URL or an entity.
        for opener in ("<", "!", "[", "http", "&"):
            i = raw.rfind(opener)
            if i == -1 or i < len(raw) - 300:
                continue
            tail = raw[i:]
            if opener == "<":
                closed = ">" in tail
            elif opener == "!":
                closed = not (tail == "!" or tail.startswith("![")) or ")" in tail
            elif opener == "[":
                closed = ")" in tail or "\n" in tail or re.match(r"\[[^\]]*\]\s*[^(\s]", tail) is not None
            else:
                closed = re.search(r"\s", tail) is not None
            if not closed:
                hold = max(hold, len(tail))
        return hold

    def _secret_hold(self, raw: str) -> int:
        hold = 0
        # The longest tail that is the start of a secret (counted in letters/digits).
        squashed = _squash(raw)
        need = 0
        for s in self._secrets:
            for n in range(min(len(s) - 1, len(squashed)), 0, -1):
                if squashed.endswith(s[:n]):
                    need = max(need, n)
                    break
        # The longest tail that could be the start of a system-prompt leak.
        if self._prompt:
            for n in range(min(PROMPT_WINDOW - 1, len(squashed)), 0, -1):
                if squashed[-n:] in self._prompt:
                    need = max(need, n)
                    break
        if need:
            count, j = 0, len(raw)
            while j > 0 and count < need:
                j -= 1
                if raw[j].isalnum():
                    count += 1
            hold = max(hold, len(raw) - j)
        return hold

    def feed(self, piece: str) -> str:
        """Add raw model text; return the new safe text to stream (possibly empty)."""
        if self.stopped:
            return ""
        self._raw += piece
        squashed = _squash(self._raw)
        if any(s in squashed for s in self._secrets) or _prompt_leak(squashed, self._shingles):
            self.stopped = True
            return ""
        safe_raw = self._safe_prefix()
        cleaned, _ = clean(safe_raw, allowed_domains=self._allowed)
        if not cleaned.startswith(self._emitted):
            # Cleaning rewrote what was already sent: stream nothing more; the final fixes it.
            self.stopped = True
            return ""
        new = cleaned[len(self._emitted) :]
        self._emitted = cleaned
        return new

    @property
    def raw(self) -> str:
        return self._raw

    @property
    def emitted(self) -> str:
        return self._emitted
