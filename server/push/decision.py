"""The push decision: send now, send at a time, or suppress, and why. A pure function of plain
data and an injected ``now``, so it is tested as a truth table and as properties over random
schedules. The engine gathers the context; nothing here touches I/O.

Order of checks (the first that suppresses wins; every step appends to ``reasons``):
duplicate -> preferences/opt-out -> support awareness (marketing only) -> per-rule cap ->
frequency budget (``critical`` bypasses both caps, and says so) -> best time -> quiet hours
(``critical`` bypasses, and says so).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from server.push.quiet_hours import end_of_quiet, next_local_hour_start, parse_hhmm, zone

__all__ = [
    "CATEGORIES",
    "Candidate",
    "Decision",
    "DecisionContext",
    "PastSend",
    "Prefs",
    "SupportState",
    "decide",
    "pick_best_hour",
]

CATEGORIES = ("transactional", "support", "marketing")
Action = Literal["send_now", "send_at", "suppress"]


@dataclass(frozen=True, slots=True)
class Candidate:
    user_id: str
    category: str
    rule_id: str | None = None
    critical: bool = False
    priority: int = 5
    max_delay_s: int = 0
    rule_cap: tuple[int, int] | None = None  # (count, window_s)
    collapse_key: str | None = None
    dedupe_key: str = ""
    not_before: datetime | None = None  # e.g. the end of a rule's wait


@dataclass(frozen=True, slots=True)
class Prefs:
    timezone: str | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None
    opted_out: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PastSend:
    """A notification that was (or will be) shown: it consumes budget at ``at``."""

    at: datetime
    rule_id: str | None
    category: str


@dataclass(frozen=True, slots=True)
class SupportState:
    open_conversation: bool = False  # a conversation in queued or assigned
    last_bad_rating_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DecisionContext:
    prefs: Prefs = Prefs()
    recent: Sequence[PastSend] = ()
    support: SupportState = SupportState()
    activity_hours: Sequence[int] = ()  # 24 counts by local hour (events and opens)
    duplicate: bool = False
    budget: tuple[int, int] = (5, 86400)  # (count, window_s)
    budget_exempt: frozenset[str] = frozenset({"transactional"})
    bad_rating_days: int = 14
    best_time_min_samples: int = 3


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    send_at: datetime | None
    reasons: list[str] = field(default_factory=list)

    @property
    def suppress_reason(self) -> str | None:
        if self.action != "suppress" or not self.reasons:
            return None
        return self.reasons[-1].split(":", 1)[0]


def _suppress(reasons: list[str], why: str) -> Decision:
    reasons.append(why)
    return Decision("suppress", None, reasons)


def pick_best_hour(hours: Sequence[int], reachable: Sequence[int]) -> int | None:
    """The reachable local hour with most activity; ties go to the earliest reachable."""
    best, best_n = None, 0
    for h in reachable:
        n = hours[h] if 0 <= h < len(hours) else 0
        if n > best_n:
            best, best_n = h, n
    return best


def decide(candidate: Candidate, ctx: DecisionContext, now: datetime) -> Decision:
    reasons: list[str] = []
    stopped = _preferences_and_support(candidate, ctx, now, reasons) or _caps(candidate, ctx, now, reasons)
    if stopped is not None:
        return stopped
    at = _quiet_hours(candidate, ctx, _best_time(candidate, ctx, now, reasons), reasons)
    if candidate.collapse_key:
        reasons.append(f"collapse: {candidate.collapse_key}")
    if at <= now:
        return Decision("send_now", now, reasons)
    return Decision("send_at", at, reasons)


def _preferences_and_support(c: Candidate, ctx: DecisionContext, now: datetime,
                             reasons: list[str]) -> Decision | None:
    if ctx.duplicate:
        return _suppress(reasons, f"duplicate: dedupe key {c.dedupe_key} already used")
    if "all" in ctx.prefs.opted_out:
        return _suppress(reasons, "opted_out: user opted out of all notifications")
    if c.category in ctx.prefs.opted_out:
        return _suppress(reasons, f"opted_out: user opted out of {c.category}")
    reasons.append(f"preferences: {c.category} allowed")

    if c.category == "marketing":
        if ctx.support.open_conversation:
            return _suppress(reasons, "support_open: user has a queued or assigned conversation")
        bad = ctx.support.last_bad_rating_at
        if bad is not None and now - bad < timedelta(days=ctx.bad_rating_days):
            return _suppress(reasons, f"support_bad_rating: bad rating within {ctx.bad_rating_days} days")
        reasons.append("support: no open conversation or recent bad rating")
    return None


def _caps(c: Candidate, ctx: DecisionContext, now: datetime, reasons: list[str]) -> Decision | None:
    """The rule's own cap, then the user's frequency budget (critical ones bypass both)."""
    if c.rule_cap is not None and c.rule_id is not None:
        cap, window = c.rule_cap
        since = now - timedelta(seconds=window)
        rule_n = sum(1 for p in ctx.recent if p.rule_id == c.rule_id and since < p.at <= now)
        if rule_n >= cap:
            if not c.critical:
                return _suppress(reasons, f"rule_cap: {rule_n}/{cap} in {window}s")
            reasons.append(f"critical: bypassed rule cap ({rule_n}/{cap} in {window}s)")
    b_count, b_window = ctx.budget
    if c.category in ctx.budget_exempt:
        reasons.append(f"budget: {c.category} is exempt")
        return None
    since = now - timedelta(seconds=b_window)
    budget_n = sum(
        1 for p in ctx.recent if p.category not in ctx.budget_exempt and since < p.at <= now
    )
    if budget_n >= b_count:
        if not c.critical:
            return _suppress(reasons, f"budget: {budget_n}/{b_count} in {b_window}s")
        reasons.append(f"critical: bypassed frequency budget ({budget_n}/{b_count} in {b_window}s)")
    else:
        reasons.append(f"budget: {budget_n}/{b_count} in {b_window}s")
    return None


def _best_time(c: Candidate, ctx: DecisionContext, now: datetime, reasons: list[str]) -> datetime:
    """When to send: not before ``not_before``, moved to the user's most active hour if allowed."""
    tz = zone(ctx.prefs.timezone)
    at = now if c.not_before is None or c.not_before < now else c.not_before
    if c.max_delay_s > 0:
        limit = at + timedelta(seconds=c.max_delay_s)
        samples = sum(ctx.activity_hours)
        if samples >= ctx.best_time_min_samples and len(ctx.activity_hours) == 24:
            reachable = _reachable_hours(at, limit, tz)
            hour = pick_best_hour(ctx.activity_hours, reachable)
            best = next_local_hour_start(at, tz, hour, limit) if hour is not None else None
            if best is not None:
                at = best
                reasons.append(f"best_time: local hour {hour:02d} (from {samples} samples)")
        else:
            reasons.append("best_time: not enough history, sending without delay")
    return at


def _quiet_hours(c: Candidate, ctx: DecisionContext, at: datetime, reasons: list[str]) -> datetime:
    if not (ctx.prefs.quiet_start and ctx.prefs.quiet_end):
        return at
    tz = zone(ctx.prefs.timezone)
    start, end = parse_hhmm(ctx.prefs.quiet_start), parse_hhmm(ctx.prefs.quiet_end)
    later = end_of_quiet(at, tz, start, end)
    if later != at:
        if c.critical:
            reasons.append("critical: bypassed quiet hours")
        else:
            reasons.append(f"quiet_hours: deferred to {later.isoformat()} ({tz.key})")
            at = later
    return at


def _reachable_hours(start: datetime, limit: datetime, tz: ZoneInfo) -> list[int]:
    # in order of first reach, so ties favour the sooner hour
    seen: list[int] = []
    t = start
    while t <= limit and len(seen) < 24:
        h = t.astimezone(tz).hour
        if h not in seen:
            seen.append(h)
        t = t.replace(second=0, microsecond=0) + timedelta(minutes=15 - t.minute % 15)
    return seen
