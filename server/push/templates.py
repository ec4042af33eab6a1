"""Notification text: sandboxed Jinja2 personalised from ``user`` and ``event``, deterministic
A/B variants, and an optional copywriter (an LLM) that may rewrite within a bound and is never
trusted: any error, timeout, empty or over-long answer falls back to the template."""

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from server.errors import BadInput

__all__ = [
    "Copywriter",
    "Rendered",
    "TemplateRenderer",
    "choose_variant",
    "rewrite_or_keep",
    "validate_template",
]

log = logging.getLogger(__name__)
_FIELDS = ("title", "body", "url")


@runtime_checkable
class Copywriter(Protocol):
    async def rewrite(self, text: str, max_len: int) -> str: ...


@dataclass(frozen=True, slots=True)
class Rendered:
    title: str
    body: str
    url: str | None
    variant: str | None
    fell_back: bool = False


def _clip(s: str, n: int) -> str:
    s = " ".join(s.split())  # push text is one line; newlines render differently per platform
    return s if len(s) <= n else s[: max(0, n - 1)].rstrip() + "…"


def choose_variant(
    variants: Sequence[Mapping[str, Any]] | None, user_id: str, rule_id: str
) -> Mapping[str, Any] | None:
    """Same user and rule always get the same variant; weights (default 1) split the users."""
    if not variants:
        return None
    weights = [max(0, int(v.get("weight", 1))) for v in variants]
    total = sum(weights)
    if total <= 0:
        return variants[0]
    h = int.from_bytes(hashlib.sha256(f"{rule_id}\x00{user_id}".encode()).digest()[:8], "big") % total
    for v, w in zip(variants, weights, strict=True):
        if h < w:
            return v
        h -= w
    return variants[-1]


class TemplateRenderer:
    """Compiles each template source once (bounded cache) in an immutable sandbox."""

    def __init__(self, *, max_title: int = 120, max_body: int = 500, max_url: int = 2000,
                 cache_size: int = 2048) -> None:
        self.env = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
        self.max = {"title": max_title, "body": max_body, "url": max_url}
        self._cache: dict[str, Template] = {}
        self._cache_size = cache_size

    def compile(self, source: str) -> Template:
        t = self._cache.get(source)
        if t is None:
            t = self.env.from_string(source)
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[source] = t
        return t

    def _one(self, source: str | None, ctx: Mapping[str, Any]) -> str | None:
        if source is None:
            return None
        if "{" not in source:
            return source
        return self.compile(source).render(**ctx)

    def render(self, template: Mapping[str, Any], ctx: Mapping[str, Any], *,
               variants: Sequence[Mapping[str, Any]] | None = None,
               user_id: str = "", rule_id: str = "") -> Rendered:
        variant = choose_variant(variants, user_id, rule_id)
        src = dict(template)
        if variant is not None:
            src.update({k: variant[k] for k in _FIELDS if k in variant})
        name = str(variant.get("name", "")) if variant is not None else None
        try:
            out = {k: self._one(src.get(k), ctx) for k in _FIELDS}
            fell_back = False
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            # a missing user attribute must not drop the message: use the rule's plain fallback
            log.info("template fell back: %s", type(exc).__name__)
            fb = template.get("fallback") or {}
            out = {
                "title": fb.get("title") or _strip_tags(src.get("title") or ""),
                "body": fb.get("body") or _strip_tags(src.get("body") or ""),
                "url": fb.get("url") or (src.get("url") if "{" not in str(src.get("url")) else None),
            }
            fell_back = True
        url = out["url"]
        return Rendered(
            title=_clip(out["title"] or "", self.max["title"]),
            body=_clip(out["body"] or "", self.max["body"]),
            url=url[: self.max["url"]] if url else None,
            variant=name,
            fell_back=fell_back,
        )


def _strip_tags(s: str) -> str:
    """A template without its placeholders: 'Hi {{ user.name }}, ...' -> 'Hi, ...'."""
    out, i = [], 0
    while i < len(s):
        j = s.find("{", i)
        if j < 0 or j + 1 >= len(s) or s[j + 1] not in "{%#":
            end = len(s) if j < 0 else j + 1
            out.append(s[i:end])
            i = end
            continue
        close = {"{": "}}", "%": "%}", "#": "#}"}[s[j + 1]]
        k = s.find(close, j + 2)
        out.append(s[i:j])
        i = len(s) if k < 0 else k + 2
    text = " ".join("".join(out).split())
    return text.replace(" ,", ",").replace(" !", "!").replace(" .", ".")


def validate_template(renderer: TemplateRenderer, template: Any, field: str = "template") -> None:
    if not isinstance(template, Mapping):
        raise BadInput(f"{field}: must be an object with title and body", field=field)
    for k in ("title", "body"):
        if not isinstance(template.get(k), str) or not template[k].strip():
            raise BadInput(f"{field}.{k}: is required (a non-empty string)", field=f"{field}.{k}")
    for k in ("title", "body", "url"):
        v = template.get(k)
        if v is None:
            continue
        if not isinstance(v, str) or len(v) > 4000:
            raise BadInput(f"{field}.{k}: must be a string of at most 4000 characters", field=f"{field}.{k}")
        try:
            renderer.compile(v)
        except TemplateError as exc:
            raise BadInput(f"{field}.{k}: template syntax error: {exc}", field=f"{field}.{k}") from exc
    fb = template.get("fallback")
    if fb is not None and (not isinstance(fb, Mapping) or any(
            not isinstance(fb.get(k, ""), str) for k in ("title", "body", "url"))):
        raise BadInput(f"{field}.fallback: must be an object of strings", field=f"{field}.fallback")
    extra = set(template) - {"title", "body", "url", "fallback"}
    if extra:
        raise BadInput(f"{field}: unknown key(s) {sorted(extra)}", field=field)


async def rewrite_or_keep(
    copywriter: Copywriter | None, text: str, max_len: int, timeout_s: float
) -> tuple[str, str | None]:
    """Returns (text, note). The note says why the template was kept, for the decision trace."""
    if copywriter is None:
        return text, None
    try:
        async with asyncio.timeout(timeout_s):
            out = await copywriter.rewrite(text, max_len)
    except TimeoutError:
        return text, "copywriter: timed out, kept template"
    except Exception as exc:  # the copywriter is an untrusted dependency
        return text, f"copywriter: {type(exc).__name__}, kept template"
    if not isinstance(out, str) or not out.strip():
        return text, "copywriter: empty answer, kept template"
    if len(out) > max_len:
        return text, f"copywriter: {len(out)} > {max_len} characters, kept template"
    return " ".join(out.split()), "copywriter: rewritten"
