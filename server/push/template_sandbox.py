"""A Jinja2 sandbox whose every template finishes quickly and small, whatever a tenant writes.

Jinja's own sandbox stops attribute tricks but not work: ``{{ 9 ** 3000000 }}``, ``'x' * 10**8``,
nested loops, or doubling a string with ``~`` in a chain of ``set`` statements each hold the
event loop (or the worker thread) for seconds and gigabytes. Here:

* a render runs under a ``Budget`` (deadline, loop iterations, characters printed) that every
  loop step, call, filter, operator and output checks, so a bad template stops itself;
* operators (``* ** + %``), string formatting, ``~`` and the filters refuse results larger
  than ``max_value_chars`` or integers wider than ``max_int_bits`` *before* computing them;
* ``range`` is capped, ``lipsum`` and ``pprint`` are gone, and the optimizer is off, so
  nothing is computed when a template is compiled;
* only plain data (strings, numbers, lists and dicts of them) can be printed or turned into a
  string: a function or method would print its repr, a memory address.

All refusals raise ``TemplateRefused`` (a ``jinja2.TemplateError``).
"""

import contextvars
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from jinja2 import Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

__all__ = ["BoundedEnvironment", "Budget", "TemplateLimits", "TemplateRefused", "budget"]


class TemplateRefused(SecurityError):
    """The template would exceed a limit, or print something that is not plain data."""


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    max_value_chars: int = 16_000  # any one string, list or dict made while rendering
    max_output_chars: int = 16_000  # everything a render prints, captured blocks included
    max_iterations: int = 2_000  # loop steps, calls and operators, summed over one render
    max_range: int = 1_000
    max_int_bits: int = 256
    budget_s: float = 0.25


class Budget:
    __slots__ = ("deadline", "limits", "printed", "steps")

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.budget_s
        self.steps = 0
        self.printed = 0

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > self.limits.max_iterations:
            raise TemplateRefused(f"more than {self.limits.max_iterations} loop steps, calls and operations")
        if time.monotonic() > self.deadline:
            raise TemplateRefused(f"rendering took longer than {self.limits.budget_s}s")

    def emit(self, n: int) -> None:
        self.printed += n
        if self.printed > self.limits.max_output_chars:
            raise TemplateRefused(f"the output is longer than {self.limits.max_output_chars} characters")


_current: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("parley_template_budget", default=None)


class budget:
    """``with budget(limits): ...`` makes a render stop itself at the limits."""

    def __init__(self, limits: TemplateLimits) -> None:
        self.b = Budget(limits)
        self._token: contextvars.Token[Budget | None] | None = None

    def __enter__(self) -> Budget:
        self._token = _current.set(self.b)
        return self.b

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _current.reset(self._token)


def _step(n: int = 1) -> None:
    b = _current.get()
    if b is not None:  # outside a render (compile-time constants) only the size checks apply
        b.step(n)


# Markup is a str; a range prints as "range(0, 3)"; dict views as their items
_PLAIN = (str, int, float, bool, type(None), Undefined, range)
_VIEWS: tuple[type, ...] = (type({}.items()), type({}.keys()), type({}.values()))


def _is_plain(v: Any, depth: int = 0) -> bool:
    if isinstance(v, _PLAIN):
        return True
    if depth > 8:
        return False
    if isinstance(v, (list, tuple, *_VIEWS)):
        return all(_is_plain(x, depth + 1) for x in cast(Iterable[Any], v))
    if isinstance(v, dict):
        return all(isinstance(k, str | int) and _is_plain(x, depth + 1) for k, x in v.items())
    return False


def _size(v: Any) -> int:
    return len(v) if isinstance(v, str | bytes | list | tuple | dict) else 0


_WIDTH = re.compile(r"\d+")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, limits: TemplateLimits, **kw: Any) -> None:
        # no optimizer: constant folding would compute `9 ** 3000000` at compile time
        super().__init__(optimized=False, autoescape=False, finalize=self._finalize, **kw)
        self.limits = limits
        self.globals.pop("lipsum", None)  # lipsum(n=10**9) writes a book
        self.globals["range"] = self._range
        self.filters = {name: self._guard(f) for name, f in FILTERS.items() if name != "pprint"}
        self.filters["_parley_loop"] = self._loop
        self.filters["_parley_concat"] = self._concat

    # ------------------------------------------------------------------ checks

    def _too_big(self, n: int, what: str) -> None:
        if n > self.limits.max_value_chars:
            raise TemplateRefused(f"{what} would be longer than {self.limits.max_value_chars}")

    def _int_ok(self, v: Any) -> None:
        if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > self.limits.max_int_bits:
            raise TemplateRefused(f"integers are limited to {self.limits.max_int_bits} bits")

    def _plain(self, v: Any) -> None:
        if not _is_plain(v):
            raise TemplateRefused(f"a {type(v).__name__} cannot be printed or turned into text")

    def _format_ok(self, fmt: str) -> None:
        for m in _WIDTH.findall(fmt):
            if len(m) > 6 or int(m) > self.limits.max_value_chars:
                raise TemplateRefused("a format width is too large")

    def _result(self, v: Any) -> Any:
        self._too_big(_size(v), "a value")
        self._int_ok(v)
        return v

    # ------------------------------------------------------------------ jinja hooks

    def _finalize(self, value: Any) -> Any:
        self._plain(value)
        _step()
        b = _current.get()
        if b is not None:
            b.emit(len(value) if isinstance(value, str) else 32)
        return value

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _step()
        lim = self.limits
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if left.bit_length() * right > lim.max_int_bits:
                raise TemplateRefused(f"integers are limited to {lim.max_int_bits} bits")
        elif operator == "*":
            if (isinstance(left, int) and isinstance(right, int)
                    and left.bit_length() + right.bit_length() > lim.max_int_bits):
                raise TemplateRefused(f"integers are limited to {lim.max_int_bits} bits")
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int):
                    self._too_big(len(seq) * max(n, 0), "a repeated value")
        elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            self._too_big(len(left) + len(right), "a joined value")
        elif operator == "%" and isinstance(left, str):
            self._format_ok(left)
            self._plain(right)
        return self._result(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        for a in (*args, *kwargs.values()):
            __self._int_ok(a)
        target = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(target, str):
            if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
                __self._too_big(args[0], "a padded string")
            elif name == "expandtabs":
                __self._too_big(len(target) * (args[0] if args and isinstance(args[0], int) else 8), "a string")
            elif name == "replace" and len(args) >= 2 and isinstance(args[1], str):
                __self._too_big(len(target) + (len(target) + 1) * len(args[1]), "a replaced string")
            elif name == "join" and args:
                __self._plain(args[0])
                __self._too_big(sum(_size(x) + len(target) for x in args[0]) if isinstance(args[0], list | tuple)
                                else 0, "a joined string")
        return __self._result(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        f_self = getattr(value, "__self__", None)
        wrapped = super().wrap_str_format(value)
        if wrapped is None or not isinstance(f_self, str):
            return wrapped
        self._format_ok(f_self)

        def checked(*args: Any, **kwargs: Any) -> str:
            for a in (*args, *kwargs.values()):
                self._plain(a)
            out: str = self._result(wrapped(*args, **kwargs))
            return out

        return checked

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _Instrument().visit(super()._parse(source, name, filename))  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ globals and filters

    def _range(self, *args: int) -> range:
        for a in args:
            self._int_ok(a)
        r = range(*args)
        if len(r) > self.limits.max_range:
            raise TemplateRefused(f"range() is limited to {self.limits.max_range} items")
        return r

    def _loop(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _step()
            yield item

    def _concat(self, parts: list[Any]) -> str:
        _step()
        for p in parts:
            self._plain(p)
        out = "".join(str(p) for p in parts)
        return str(self._result(out))

    def _guard(self, f: Callable[..., Any]) -> Callable[..., Any]:
        env = self

        @functools.wraps(f)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            _step()
            # filters get (value, *args) or (context|eval_ctx|env, value, *args)
            vals = [a for a in (*args, *kwargs.values()) if not isinstance(a, Context | BoundedEnvironment)
                    and type(a).__name__ != "EvalContext"]
            for a in vals:
                env._int_ok(a)
                env._plain(a)
            if f.__name__ in ("do_center", "do_indent", "do_wordwrap", "do_truncate", "do_batch", "do_slice"):
                for a in vals[1:]:
                    if isinstance(a, int):
                        env._too_big(a, "a filter width")
            if f.__name__ == "do_replace" and len(vals) >= 3 and isinstance(vals[0], str) and isinstance(vals[2], str):
                env._too_big(len(vals[0]) + (len(vals[0]) + 1) * len(vals[2]), "a replaced string")
            if f.__name__ == "do_format" and vals and isinstance(vals[0], str):
                env._format_ok(vals[0])
            if f.__name__ == "do_join" and vals and isinstance(vals[0], list | tuple):
                sep = vals[1] if len(vals) > 1 and isinstance(vals[1], str) else ""
                env._too_big(sum(_size(x) + len(sep) for x in vals[0]), "a joined string")
            return env._result(f(*args, **kwargs))

        # keep jinja's pass_context / pass_eval_context / pass_environment marker
        if hasattr(f, "jinja_pass_arg"):
            guarded.jinja_pass_arg = f.jinja_pass_arg  # type: ignore[attr-defined]
        return guarded


class _Instrument(NodeTransformer):
    """Every ``for`` iterates through the budget; ``~`` joins through the size check."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, "_parley_loop", [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes, lineno=node.lineno), "_parley_concat", [], [], None, None,
                            lineno=node.lineno)

