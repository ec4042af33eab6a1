"""A small JSON condition language for rules. Data, never code: no ``eval``, no attribute access,
only dotted paths into ``event`` and ``user``.

    condition := {"all": [condition, ...]} | {"any": [condition, ...]} | {"not": condition}
               | {"path": "event.properties.total", "op": "gt", "value": 50}

Ops: eq ne gt gte lt lte in contains exists (symbols ``== != > >= < <=`` are accepted too).
A missing path makes every op false except ``exists: false``; ordering ops compare numbers with
numbers and strings with strings only, anything else is false.
"""

from collections.abc import Mapping
from typing import Any, NoReturn

from server.errors import BadInput

__all__ = ["OPS", "ROOTS", "ConditionError", "evaluate", "validate"]

ROOTS = ("event", "user")
_ALIASES = {"==": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists")
_MISSING = object()


class ConditionError(BadInput):
    """A rule's conditions are malformed; ``field`` names where."""


def validate(cond: Any, *, field: str = "conditions", max_nodes: int = 64, max_depth: int = 8) -> None:
    """Raise ``ConditionError`` naming the offending field, or return quietly."""
    count = [0]
    _validate(cond, field, 0, count, max_nodes, max_depth)


def _fail(field: str, detail: str) -> NoReturn:
    raise ConditionError(f"{field}: {detail}", field=field)


def _validate(cond: Any, field: str, depth: int, count: list[int], max_nodes: int, max_depth: int) -> None:
    count[0] += 1
    if count[0] > max_nodes:
        _fail(field, f"too many conditions (at most {max_nodes})")
    if depth > max_depth:
        _fail(field, f"nested too deep (at most {max_depth})")
    if not isinstance(cond, Mapping):
        _fail(field, "must be an object")
    for key in ("all", "any"):
        if key in cond:
            if len(cond) != 1:
                _fail(field, f"'{key}' must be the only key")
            items = cond[key]
            if not isinstance(items, list) or not items:
                _fail(f"{field}.{key}", "must be a non-empty list")
            for i, sub in enumerate(items):
                _validate(sub, f"{field}.{key}[{i}]", depth + 1, count, max_nodes, max_depth)
            return
    if "not" in cond:
        if len(cond) != 1:
            _fail(field, "'not' must be the only key")
        _validate(cond["not"], f"{field}.not", depth + 1, count, max_nodes, max_depth)
        return
    _validate_leaf(cond, field)


def _validate_leaf(cond: Mapping[str, Any], field: str) -> None:
    """One ``{path, op, value}`` test."""
    extra = set(cond) - {"path", "op", "value"}
    if extra:
        _fail(field, f"unknown key(s) {sorted(extra)}; expected all/any/not or path/op/value")
    path = cond.get("path")
    if not isinstance(path, str) or not path:
        _fail(f"{field}.path", "must be a non-empty string like 'event.properties.total'")
    assert isinstance(path, str)
    parts = path.split(".")
    if parts[0] not in ROOTS or any(not p for p in parts) or len(parts) > 10 or len(path) > 200:
        _fail(f"{field}.path", f"must start with one of {list(ROOTS)} and be dotted segments")
    op = cond.get("op")
    op = _ALIASES.get(op, op) if isinstance(op, str) else op
    if op not in OPS:
        _fail(f"{field}.op", f"must be one of {list(OPS)}")
    if "value" not in cond:
        _fail(f"{field}.value", "is required")
    _validate_value(op, cond["value"], field)


def _validate_value(op: str, value: Any, field: str) -> None:
    if op == "in" and not isinstance(value, list):
        _fail(f"{field}.value", "must be a list for 'in'")
    if op == "exists" and not isinstance(value, bool):
        _fail(f"{field}.value", "must be true or false for 'exists'")
    if op in ("gt", "gte", "lt", "lte") and not _orderable(value):
        _fail(f"{field}.value", f"must be a number or a string for '{op}'")
    if isinstance(value, list | dict) and len(repr(value)) > 4096:
        _fail(f"{field}.value", "is too large")


def _orderable(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) or isinstance(v, str)


def _resolve(data: Mapping[str, Any], path: str) -> Any:
    cur: Any = data
    for part in path.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return _MISSING
    return cur


def evaluate(cond: Mapping[str, Any] | None, data: Mapping[str, Any]) -> bool:
    """True when ``data`` ({"event": ..., "user": ...}) satisfies a *validated* condition."""
    if cond is None:
        return True
    if "all" in cond:
        return all(evaluate(c, data) for c in cond["all"])
    if "any" in cond:
        return any(evaluate(c, data) for c in cond["any"])
    if "not" in cond:
        return not evaluate(cond["not"], data)
    op = _ALIASES.get(cond["op"], cond["op"])
    want = cond["value"]
    got = _resolve(data, cond["path"])
    if op == "exists":
        return bool((got is not _MISSING and got is not None) == want)
    if got is _MISSING:
        return False
    return _compare(op, got, want)


def _compare(op: str, got: Any, want: Any) -> bool:
    """``got op want`` for a value that is present."""
    if op == "eq":
        return _eq(got, want)
    if op == "ne":
        return not _eq(got, want)
    if op == "in":
        return any(_eq(got, w) for w in want)
    if op == "contains":
        if isinstance(got, str) and isinstance(want, str):
            return want in got
        if isinstance(got, list):
            return any(_eq(g, want) for g in got)
        return False
    if not (_orderable(got) and _orderable(want)) or isinstance(got, str) != isinstance(want, str):
        return False
    if op == "gt":
        return bool(got > want)
    if op == "gte":
        return bool(got >= want)
    if op == "lt":
        return bool(got < want)
    return bool(got <= want)


def _eq(a: Any, b: Any) -> bool:
    # JSON has no distinction between 1 and True for Python; keep booleans apart from numbers
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)
