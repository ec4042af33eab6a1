"""Validation of rule bodies (create and patch), with errors that name the field."""

from collections.abc import Mapping
from typing import Any

from server.core.settings import PushSettings
from server.errors import BadInput
from server.push.conditions import validate as validate_conditions
from server.push.decision import CATEGORIES
from server.push.templates import TemplateRenderer, validate_template

__all__ = ["RULE_FIELDS", "validate_rule"]

RULE_FIELDS = (
    "name", "trigger_event", "conditions", "wait_s", "cancel_on", "category", "priority", "critical",
    "template", "variants", "rewrite", "max_delay_s", "per_rule_cap", "collapse_key", "goal_event", "enabled",
)


def _bad(field: str, detail: str) -> BadInput:
    return BadInput(f"{field}: {detail}", field=field)


def _name(v: Any, field: str, n: int, *, optional: bool = False) -> None:
    if v is None and optional:
        return
    if not isinstance(v, str) or not v.strip() or len(v) > n:
        raise _bad(field, f"must be a non-empty string of at most {n} characters")


def _int(v: Any, field: str, lo: int, hi: int, *, optional: bool = False) -> None:
    if v is None and optional:
        return
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise _bad(field, f"must be an integer in [{lo}, {hi}]")


def validate_rule(body: Mapping[str, Any], settings: PushSettings, renderer: TemplateRenderer) -> dict[str, Any]:
    """A complete rule (after merging a patch onto the stored one) -> the clean field dict."""
    unknown = set(body) - set(RULE_FIELDS)
    if unknown:
        raise _bad(sorted(unknown)[0], "unknown field")
    _name(body.get("name"), "name", 200)
    _name(body.get("trigger_event"), "trigger_event", settings.max_name_chars)
    if body.get("conditions") is not None:
        validate_conditions(body["conditions"], max_nodes=settings.max_condition_nodes,
                            max_depth=settings.max_condition_depth)
    _int(body.get("wait_s"), "wait_s", 1, settings.max_wait_s, optional=True)
    cancel_on = body.get("cancel_on") or []
    if not isinstance(cancel_on, list) or len(cancel_on) > 20:
        raise _bad("cancel_on", "must be a list of at most 20 event names")
    for i, n in enumerate(cancel_on):
        _name(n, f"cancel_on[{i}]", settings.max_name_chars)
    if cancel_on and body.get("wait_s") is None:
        raise _bad("cancel_on", "needs wait_s: only a waiting rule can be cancelled")
    category = body.get("category", "marketing")
    if category not in CATEGORIES:
        raise _bad("category", f"must be one of {list(CATEGORIES)}")
    _int(body.get("priority", 5), "priority", 0, 10)
    for flag in ("critical", "rewrite", "enabled"):
        if flag in body and not isinstance(body[flag], bool):
            raise _bad(flag, "must be true or false")
    validate_template(renderer, body.get("template"))
    _validate_variants(body, renderer)
    _int(body.get("max_delay_s", 0), "max_delay_s", 0, 7 * 24 * 3600)
    cap = body.get("per_rule_cap")
    if cap is not None:
        if not isinstance(cap, Mapping):
            raise _bad("per_rule_cap", "must be {count, window_s}")
        _int(cap.get("count"), "per_rule_cap.count", 1, 10000)
        _int(cap.get("window_s"), "per_rule_cap.window_s", 1, 365 * 24 * 3600)
    _name(body.get("collapse_key"), "collapse_key", 64, optional=True)
    _name(body.get("goal_event"), "goal_event", settings.max_name_chars, optional=True)
    out = {k: body[k] for k in RULE_FIELDS if k in body}
    out["cancel_on"] = list(cancel_on)
    out.setdefault("category", category)
    return out


def _validate_variants(body: Mapping[str, Any], renderer: TemplateRenderer) -> None:
    """A/B variants: each a template of its own, over the rule's template for what it leaves out."""
    variants = body.get("variants")
    if variants is None:
        return
    if not isinstance(variants, list) or not 1 <= len(variants) <= 10:
        raise _bad("variants", "must be a list of 1 to 10 objects")
    for i, v in enumerate(variants):
        f = f"variants[{i}]"
        if not isinstance(v, Mapping):
            raise _bad(f, "must be an object")
        _name(v.get("name"), f"{f}.name", 64)
        _int(v.get("weight", 1), f"{f}.weight", 0, 1000)
        merged = {"title": v.get("title", body["template"]["title"]),
                  "body": v.get("body", body["template"]["body"])}
        if v.get("url") is not None:
            merged["url"] = v["url"]
        validate_template(renderer, merged, f)
