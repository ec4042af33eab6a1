"""The pure decision and quiet-hours arithmetic as properties over random schedules on a
simulated clock (hypothesis), plus conditions, templates and the copywriter fallback."""

import asyncio
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.push.conditions import ConditionError, evaluate, validate
from server.push.decision import Candidate, DecisionContext, PastSend, Prefs, SupportState, decide
from server.push.quiet_hours import end_of_quiet, in_quiet, zone
from server.push.templates import TemplateRenderer, choose_variant, rewrite_or_keep

ZONES = ["America/New_York", "Europe/London", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
# instants around the 2025 DST changes of New York and London, plus the rest of the year
instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2025, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC))
dst_instants = st.sampled_from([datetime(2025, 3, 9, 6, tzinfo=UTC), datetime(2025, 11, 2, 5, tzinfo=UTC),
                                datetime(2025, 3, 30, 0, tzinfo=UTC), datetime(2025, 10, 26, 0, tzinfo=UTC)]).flatmap(
    lambda base: st.integers(-6 * 60, 6 * 60).map(lambda m: base + timedelta(minutes=m)))
hhmm = st.tuples(st.integers(0, 23), st.sampled_from([0, 15, 30, 45])).map(lambda t: f"{t[0]:02d}:{t[1]:02d}")


@settings(max_examples=400, deadline=None)
@given(now=st.one_of(instants, dst_instants), tz=st.sampled_from(ZONES), start=hhmm, end=hhmm)
def test_quiet_hours_defer_to_the_first_instant_outside(now: datetime, tz: str, start: str, end: str) -> None:
    z = zone(tz)
    s, e = time.fromisoformat(start), time.fromisoformat(end)
    out = end_of_quiet(now, z, s, e)
    assert out >= now
    assert not in_quiet(out, z, s, e)
    assert out - now <= timedelta(hours=26)
    # nothing earlier (minute by minute) was already outside the window
    t = now
    while t + timedelta(minutes=1) <= out and (out - t) > timedelta(minutes=1):
        assert in_quiet(t, z, s, e)
        t += timedelta(minutes=7)


@settings(max_examples=300, deadline=None)
@given(now=st.one_of(instants, dst_instants), tz=st.sampled_from(ZONES), start=hhmm, end=hhmm,
       critical=st.booleans(), category=st.sampled_from(["transactional", "support", "marketing"]))
def test_decision_never_sends_inside_quiet_hours_unless_critical(
    now: datetime, tz: str, start: str, end: str, critical: bool, category: str,
) -> None:
    ctx = DecisionContext(prefs=Prefs(timezone=tz, quiet_start=start, quiet_end=end))
    d = decide(Candidate("u", category, critical=critical), ctx, now)
    assert d.action != "suppress"
    assert d.send_at is not None
    quiet = in_quiet(d.send_at, zone(tz), time.fromisoformat(start), time.fromisoformat(end))
    if critical:
        assert d.action == "send_now"
        assert not in_quiet(now, zone(tz), time.fromisoformat(start), time.fromisoformat(end)) or \
            "critical: bypassed quiet hours" in d.reasons
    else:
        assert not quiet


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 6 * 3600), min_size=1, max_size=40),
    budget=st.integers(1, 6), window=st.sampled_from([3600, 6 * 3600, 86400]),
    cap=st.one_of(st.none(), st.tuples(st.integers(1, 4), st.sampled_from([600, 3600, 86400]))),
    critical_every=st.integers(0, 5),
)
def test_caps_hold_over_random_schedules(gaps: list[int], budget: int, window: int,
                                         cap: tuple[int, int] | None, critical_every: int) -> None:
    """Simulate a user receiving candidates over time: the sent ones never exceed the budget or
    the rule cap in any window, except critical ones, which always say they bypassed."""
    now = datetime(2025, 3, 8, tzinfo=UTC)
    sent: list[PastSend] = []
    for i, g in enumerate(gaps):
        now += timedelta(seconds=g)
        critical = critical_every > 0 and i % critical_every == 0
        ctx = DecisionContext(recent=list(sent), budget=(budget, window))
        d = decide(Candidate("u", "marketing", rule_id="r", critical=critical, rule_cap=cap), ctx, now)
        if d.action == "suppress":
            assert not critical
            assert d.suppress_reason in ("budget", "rule_cap")
            continue
        assert d.action == "send_now"
        in_window = [p for p in sent if now - timedelta(seconds=window) < p.at <= now]
        if len(in_window) >= budget or (cap and len([p for p in sent if now - timedelta(seconds=cap[1]) < p.at
                                                     <= now]) >= cap[0]):
            assert critical and any(r.startswith("critical: bypassed") for r in d.reasons)
        sent.append(PastSend(now, "r", "marketing"))


@settings(max_examples=200, deadline=None)
@given(category=st.sampled_from(["transactional", "support", "marketing"]),
       opted=st.sets(st.sampled_from(["transactional", "support", "marketing", "all"])),
       open_conv=st.booleans(), bad_days_ago=st.one_of(st.none(), st.integers(0, 40)), now=instants)
def test_preferences_and_support_awareness(category: str, opted: set[str], open_conv: bool,
                                           bad_days_ago: int | None, now: datetime) -> None:
    bad = now - timedelta(days=bad_days_ago) if bad_days_ago is not None else None
    ctx = DecisionContext(prefs=Prefs(opted_out=frozenset(opted)), support=SupportState(open_conv, bad),
                          bad_rating_days=14)
    d = decide(Candidate("u", category, critical=True), ctx, now)
    if "all" in opted or category in opted:
        assert d.action == "suppress" and d.suppress_reason == "opted_out"
    elif category == "marketing" and (open_conv or (bad_days_ago is not None and bad_days_ago < 14)):
        assert d.action == "suppress" and d.suppress_reason in ("support_open", "support_bad_rating")
    else:
        assert d.action == "send_now"


@settings(max_examples=300, deadline=None)
@given(now=st.one_of(instants, dst_instants), tz=st.sampled_from(ZONES),
       hours=st.lists(st.integers(0, 50), min_size=24, max_size=24), max_delay=st.integers(1, 2 * 86400))
def test_best_time_stays_within_the_rule_delay(now: datetime, tz: str, hours: list[int], max_delay: int) -> None:
    ctx = DecisionContext(prefs=Prefs(timezone=tz), activity_hours=hours)
    d = decide(Candidate("u", "marketing", max_delay_s=max_delay), ctx, now)
    assert d.send_at is not None
    limit = now + timedelta(seconds=max_delay)
    assert now <= d.send_at <= limit
    z = zone(tz)
    # every local hour reachable in [now, limit]: local hours start on UTC quarter-hours everywhere
    reachable = {now.astimezone(z).hour}
    t = now.replace(second=0, microsecond=0) + timedelta(minutes=15 - now.minute % 15)
    while t <= limit:
        reachable.add(t.astimezone(z).hour)
        t += timedelta(minutes=15)
    best = max(hours[h] for h in reachable)
    if sum(hours) >= 3 and best > 0:
        assert hours[d.send_at.astimezone(z).hour] == best


def test_quiet_hours_new_york_spring_forward_gap() -> None:
    z = zone("America/New_York")
    # 2025-03-09: 02:00 -> 03:00. Quiet until 02:30, which does not exist that night.
    now = datetime(2025, 3, 9, 5, 0, tzinfo=UTC)  # 00:00 EST
    out = end_of_quiet(now, z, time(22, 0), time(2, 30))
    assert out == datetime(2025, 3, 9, 7, 0, tzinfo=UTC)  # 03:00 EDT, the first minute outside


def test_quiet_hours_london_fall_back() -> None:
    z = zone("Europe/London")
    now = datetime(2025, 10, 25, 22, 0, tzinfo=UTC)  # 23:00 BST
    out = end_of_quiet(now, z, time(22, 0), time(7, 0))
    assert out == datetime(2025, 10, 26, 7, 0, tzinfo=UTC)  # 07:00 GMT after the change


def test_truth_table_reasons() -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    d = decide(Candidate("u", "marketing", dedupe_key="k"), DecisionContext(duplicate=True), now)
    assert d.action == "suppress" and d.suppress_reason == "duplicate"
    recent = [PastSend(now - timedelta(minutes=i), None, "marketing") for i in range(5)]
    d = decide(Candidate("u", "marketing"), DecisionContext(recent=recent), now)
    assert d.suppress_reason == "budget"
    d = decide(Candidate("u", "marketing", critical=True), DecisionContext(recent=recent), now)
    assert d.action == "send_now" and any("critical: bypassed frequency budget" in r for r in d.reasons)
    d = decide(Candidate("u", "transactional"), DecisionContext(recent=recent), now)
    assert d.action == "send_now" and "budget: transactional is exempt" in d.reasons


def test_conditions() -> None:
    cond = {"all": [{"path": "event.properties.total", "op": ">", "value": 50},
                    {"path": "user.attributes.plan", "op": "in", "value": ["pro"]},
                    {"not": {"path": "event.properties.coupon", "op": "exists", "value": True}},
                    {"any": [{"path": "user.attributes.tags", "op": "contains", "value": "vip"},
                             {"path": "event.properties.total", "op": "gte", "value": 1000}]}]}
    validate(cond)
    data = {"event": {"properties": {"total": 60}}, "user": {"attributes": {"plan": "pro", "tags": ["vip"]}}}
    assert evaluate(cond, data)
    assert not evaluate(cond, {**data, "event": {"properties": {"total": "60"}}})  # no str/number mixing
    assert not evaluate(cond, {**data, "event": {"properties": {"total": 60, "coupon": "X"}}})
    for bad, field in (({"path": "__class__", "op": "eq", "value": 1}, "conditions.path"),
                       ({"any": []}, "conditions.any"), ({"path": "event.a", "op": "in", "value": 3},
                                                         "conditions.value"),
                       ({"all": [{"path": "event.a", "op": "eq"}]}, "conditions.all[0].value")):
        with pytest.raises(ConditionError) as e:
            validate(bad)
        assert e.value.field == field
    deep: dict[str, object] = {"path": "event.a", "op": "eq", "value": 1}
    for _ in range(20):
        deep = {"not": deep}
    with pytest.raises(ConditionError):
        validate(deep)


def test_templates_sandbox_variants_and_fallback() -> None:
    r = TemplateRenderer(max_title=20)
    out = r.render({"title": "Hi {{ user.name }}, a very long title indeed", "body": "{{ event.properties.x }}"},
                   {"user": {"name": "Zoë"}, "event": {"properties": {"x": "<b>ok</b>"}}})
    assert out.title.endswith("…") and len(out.title) == 20 and out.body == "<b>ok</b>"
    out = r.render({"title": "Hi {{ user.nme.first }}", "body": "b", "fallback": {"title": "Hi there"}},
                   {"user": {}, "event": {}})
    assert out.fell_back and out.title == "Hi there"
    evil = r.render({"title": "{{ ''.__class__.__mro__ }}", "body": "{{ user.__init__ }}"}, {"user": {}})
    assert evil.fell_back and "class" not in evil.title
    variants = [{"name": "a", "title": "A"}, {"name": "b", "title": "B"}]
    picks = {choose_variant(variants, f"user{i}", "rule")["name"] for i in range(50)}  # type: ignore[index]
    assert picks == {"a", "b"}
    assert choose_variant(variants, "user1", "rule") == choose_variant(variants, "user1", "rule")


class SlowWriter:
    async def rewrite(self, text: str, max_len: int) -> str:
        await asyncio.sleep(10)
        return text


class LongWriter:
    async def rewrite(self, text: str, max_len: int) -> str:
        return "x" * (max_len + 1)


class BrokenWriter:
    async def rewrite(self, text: str, max_len: int) -> str:
        raise RuntimeError("model down")


class GoodWriter:
    async def rewrite(self, text: str, max_len: int) -> str:
        return "Your cart is waiting!"


async def test_copywriter_falls_back_on_error_timeout_and_length() -> None:
    for writer, note in ((SlowWriter(), "timed out"), (LongWriter(), "characters"), (BrokenWriter(), "RuntimeError")):
        text, why = await rewrite_or_keep(writer, "template text", 50, 0.05)
        assert text == "template text" and why is not None and note in why
    text, why = await rewrite_or_keep(GoodWriter(), "template text", 50, 0.05)
    assert text == "Your cart is waiting!" and why == "copywriter: rewritten"
