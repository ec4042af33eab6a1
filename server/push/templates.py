"""Notification text: bounded, sandboxed Jinja2 (``server.push.template_sandbox``) personalised
from ``user`` and ``event``, rendered in worker threads off the event loop, deterministic
A/B variants, and an optional copywriter (an LLM) that may rewrite within a bound and is never
trusted: any error, timeout, empty or over-long answer falls back to the template."""

import asyncio
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from jinja2 import ChainableUndefined, StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError

from server.errors import BadInput
from server.push.template_sandbox import BoundedEnvironment, TemplateLimits, TemplateRefused, budget

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
_T = TypeVar("_T")


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
    """Compiles each template source once (bounded cache) in a bounded sandbox, and renders off
    the event loop: a few worker threads, each render under a deadline it enforces itself."""

    def __init__(self, *, max_title: int = 120, max_body: int = 500, max_url: int = 2000,
                 cache_size: int = 2048, limits: TemplateLimits | None = None, max_source_chars: int = 2000,
                 threads: int = 2, batch_budget_s: float = 2.0) -> None:
        self.limits = limits or TemplateLimits()
        self.batch_budget_s = batch_budget_s
        self.env = BoundedEnvironment(self.limits, undefined=StrictUndefined)
        # validation renders with every missing value empty, to find what no data can excuse
        self._trial_env = BoundedEnvironment(self.limits, undefined=ChainableUndefined)
        self.max = {"title": max_title, "body": max_body, "url": max_url}
        self.max_source_chars = max_source_chars
        self._cache: dict[str, Template] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()  # the cache is shared by the template threads
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="parley-template")

    def compile(self, source: str) -> Template:
        t = self._cache.get(source)
        if t is None:
            t = self.env.from_string(source)
            with self._lock:
                if len(self._cache) >= self._cache_size:
                    self._cache.pop(next(iter(self._cache)), None)
                self._cache[source] = t
        return t

    def _emit(self, t: Template, ctx: Mapping[str, Any]) -> str:
        out: list[str] = []
        size = 0
        for chunk in t.generate(**ctx):
            size += len(chunk)
            if size > self.limits.max_output_chars:
                raise TemplateRefused(f"the output is longer than {self.limits.max_output_chars} characters")
            out.append(chunk)
        return "".join(out)

    def _one(self, source: str | None, ctx: Mapping[str, Any]) -> str | None:
        if source is None:
            return None
        if "{" not in source:
            return source
        with budget(self.limits):
            return self._emit(self.compile(source), ctx)

    def render(self, template: Mapping[str, Any], ctx: Mapping[str, Any], *,
               variants: Sequence[Mapping[str, Any]] | None = None,
               user_id: str = "", rule_id: str = "") -> Rendered:
        """Blocking: call ``render_async`` from the event loop."""
        variant = choose_variant(variants, user_id, rule_id)
        src = dict(template)
        if variant is not None:
            src.update({k: variant[k] for k in _FIELDS if k in variant})
        name = str(variant.get("name", "")) if variant is not None else None
        try:
            out = {k: self._one(src.get(k), ctx) for k in _FIELDS}
            fell_back = False
        except Exception as exc:  # noqa: BLE001 (missing data or a refused template must not drop the message)
            log.info("template fell back: %s", type(exc).__name__)
            out = _fallback(template, src)
            fell_back = True
        return self._finish(out, name, fell_back)

    def _finish(self, out: Mapping[str, str | None], name: str | None, fell_back: bool) -> Rendered:
        url = out["url"]
        return Rendered(
            title=_clip(out["title"] or "", self.max["title"]),
            body=_clip(out["body"] or "", self.max["body"]),
            url=url[: self.max["url"]] if url else None,
            variant=name,
            fell_back=fell_back,
        )

    async def render_async(self, template: Mapping[str, Any], ctx: Mapping[str, Any], *,
                           variants: Sequence[Mapping[str, Any]] | None = None,
                           user_id: str = "", rule_id: str = "") -> Rendered:
        src = {**template, **(choose_variant(variants, user_id, rule_id) or {})}
        if all("{" not in str(src.get(k) or "") for k in _FIELDS):
            return self.render(template, ctx, variants=variants, user_id=user_id, rule_id=rule_id)
        call = functools.partial(self.render, template, ctx, variants=variants, user_id=user_id, rule_id=rule_id)
        try:
            # the render stops itself at its deadline; this only guards against a stuck pool
            async with asyncio.timeout(self.limits.budget_s * len(_FIELDS) + 1.0):
                return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except TimeoutError:
            log.warning("template render timed out; using the fallback")
            return self._fallback_for(template, variants, user_id, rule_id)

    async def render_many_async(
        self, jobs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], Sequence[Mapping[str, Any]] | None, str, str]],
    ) -> list[Rendered]:
        """(template, ctx, variants, user_id, rule_id) each, in one trip to a template thread. The
        batch shares one deadline (``batch_budget_s``): what is left when it passes falls back."""
        if not jobs:
            return []

        def work() -> list[Rendered]:
            deadline = time.monotonic() + self.batch_budget_s
            out = []
            for template, ctx, variants, user_id, rule_id in jobs:
                if time.monotonic() > deadline:
                    out.append(self._fallback_for(template, variants, user_id, rule_id))
                else:
                    out.append(self.render(template, ctx, variants=variants, user_id=user_id, rule_id=rule_id))
            return out

        try:
            async with asyncio.timeout(self.batch_budget_s + self.limits.budget_s * len(_FIELDS) + 1.0):
                return await asyncio.get_running_loop().run_in_executor(self._pool, work)
        except TimeoutError:
            log.warning("template batch timed out; using the fallbacks")
            return [self._fallback_for(t, v, u, r) for t, _, v, u, r in jobs]

    def _fallback_for(self, template: Mapping[str, Any], variants: Sequence[Mapping[str, Any]] | None,
                      user_id: str, rule_id: str) -> Rendered:
        variant = choose_variant(variants, user_id, rule_id)
        name = str(variant.get("name", "")) if variant is not None else None
        return self._finish(_fallback(template, {**template, **(variant or {})}), name, True)

    def check_source(self, source: str, field: str) -> None:
        """Blocking: compile, then render once with every value missing. Only a refusal (a
        limit, an unprintable value) or a syntax error fails: missing data is the fallback's job."""
        if len(source) > self.max_source_chars:
            raise BadInput(f"{field}: must be a string of at most {self.max_source_chars} characters", field=field)
        try:
            with budget(self.limits):
                self.compile(source)
        except TemplateSyntaxError as exc:
            raise BadInput(f"{field}: template syntax error: {exc}", field=field) from exc
        except TemplateRefused as exc:
            raise BadInput(f"{field}: {exc}", field=field) from exc
        except (TemplateError, RecursionError, MemoryError, SyntaxError, ValueError) as exc:
            raise BadInput(f"{field}: the template cannot be compiled", field=field) from exc
        try:
            with budget(self.limits):
                self._emit(self._trial_env.from_string(source), _TRIAL_CONTEXT)
        except SecurityError as exc:  # a limit (TemplateRefused) or the sandbox itself
            raise BadInput(f"{field}: {exc}", field=field) from exc
        except RecursionError as exc:
            raise BadInput(f"{field}: the template recurses too deep", field=field) from exc
        except Exception:  # noqa: BLE001, S110 (anything else depends on the data it will get)
            pass

    async def run(self, fn: Callable[[], _T], field: str = "template") -> _T:
        """Run blocking template work (validation) in the template threads, under a deadline."""
        try:
            async with asyncio.timeout(self.limits.budget_s * 8 + 1.0):
                return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        except TimeoutError as exc:
            raise BadInput(f"{field}: the template took too long to check", field=field) from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# What a template sees, shaped like the real thing (server.push.engine.user_context)
_TRIAL_CONTEXT: dict[str, Any] = {
    "user": {"id": "u", "name": "Ada", "email": "ada@example.com", "locale": "en", "timezone": "UTC",
             "attributes": {}},
    "event": {"id": "e", "name": "event", "properties": {}, "occurred_at": "2025-01-01T00:00:00+00:00"},
}


def _fallback(template: Mapping[str, Any], src: Mapping[str, Any]) -> dict[str, str | None]:
    fb = template.get("fallback") or {}
    return {
        "title": fb.get("title") or _strip_tags(src.get("title") or ""),
        "body": fb.get("body") or _strip_tags(src.get("body") or ""),
        "url": fb.get("url") or (src.get("url") if "{" not in str(src.get("url")) else None),
    }


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
    """Blocking (it compiles and trial-renders): run it through ``renderer.run``."""
    if not isinstance(template, Mapping):
        raise BadInput(f"{field}: must be an object with title and body", field=field)
    for k in ("title", "body"):
        if not isinstance(template.get(k), str) or not template[k].strip():
            raise BadInput(f"{field}.{k}: is required (a non-empty string)", field=f"{field}.{k}")
    for k in ("title", "body", "url"):
        v = template.get(k)
        if v is None:
            continue
        if not isinstance(v, str):
            raise BadInput(f"{field}.{k}: must be a string", field=f"{field}.{k}")
        renderer.check_source(v, f"{field}.{k}")
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
    except Exception as exc:  # noqa: BLE001 (the copywriter is an untrusted dependency)
        return text, f"copywriter: {type(exc).__name__}, kept template"
    if not isinstance(out, str) or not out.strip():
        return text, "copywriter: empty answer, kept template"
    if len(out) > max_len:
        return text, f"copywriter: {len(out)} > {max_len} characters, kept template"
    return " ".join(out.split()), "copywriter: rewritten"
