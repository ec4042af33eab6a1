"""Quiet-hours and local-time arithmetic, DST-safe. Windows are wall-clock ``HH:MM`` ranges in the
user's zone, ``[start, end)``, and may cross midnight (22:00-07:00). Instants are UTC-aware."""

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["end_of_quiet", "in_quiet", "local_hour", "next_local_hour_start", "parse_hhmm", "zone"]

_MINUTE = timedelta(minutes=1)


def parse_hhmm(s: str) -> time:
    """``"22:30"`` -> ``time(22, 30)``; ValueError otherwise."""
    hh, sep, mm = s.partition(":")
    if not sep or not (hh.isdigit() and mm.isdigit()) or len(hh) > 2 or len(mm) != 2:
        raise ValueError(f"expected HH:MM, got {s!r}")
    h, m = int(hh), int(mm)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"expected HH:MM, got {s!r}")
    return time(h, m)


@lru_cache(maxsize=512)
def zone(name: str | None) -> ZoneInfo:
    """The user's zone; an unknown or missing name is UTC rather than an error at send time."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _in_window(t: time, start: time, end: time) -> bool:
    if start == end:
        return False  # an empty window, not a 24-hour one
    if start < end:
        return start <= t < end
    return t >= start or t < end


def in_quiet(instant: datetime, tz: ZoneInfo, start: time, end: time) -> bool:
    local = instant.astimezone(tz)
    return _in_window(time(local.hour, local.minute), start, end)


def end_of_quiet(instant: datetime, tz: ZoneInfo, start: time, end: time) -> datetime:
    """The first instant at or after ``instant`` that is outside the window (``instant`` itself if
    it is not inside). Wall-clock ``end`` may not exist (spring forward) or exist twice (fall back):
    we take the first instant whose local time is out of the window."""
    if not in_quiet(instant, tz, start, end):
        return instant
    local = instant.astimezone(tz)
    day = local.date()
    if start > end and time(local.hour, local.minute) >= start:
        day = day + timedelta(days=1)  # the window crossed midnight: it ends tomorrow
    naive = datetime.combine(day, end)
    candidate = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    # In a spring-forward gap, fold=0 lands after the gap; walk back to the transition so we do
    # not hold a message in time that is no longer quiet. Bounded by the gap (<= 2 h anywhere).
    for _ in range(180):
        prev = candidate - _MINUTE
        if prev < instant or in_quiet(prev, tz, start, end):
            break
        candidate = prev
    # Guard against odd zones: never return an instant inside the window.
    for _ in range(24 * 60):
        if not in_quiet(candidate, tz, start, end):
            break
        candidate += _MINUTE
    return max(candidate, instant)


def local_hour(instant: datetime, tz: ZoneInfo) -> int:
    return instant.astimezone(tz).hour


def next_local_hour_start(instant: datetime, tz: ZoneInfo, hour: int, limit: datetime) -> datetime | None:
    """The first instant in ``[instant, limit]`` whose local hour is ``hour``: ``instant`` itself if it
    already is, otherwise the start of that local hour. Steps through UTC hours, so DST is exact."""
    if local_hour(instant, tz) == hour:
        return instant
    # Zones with 30/45-minute offsets: local hours start at :30/:45 UTC; step by 15 minutes.
    step = timedelta(minutes=15)
    t = instant.replace(second=0, microsecond=0)
    t = t + timedelta(minutes=(15 - t.minute % 15) % 15 or 15)
    while t <= limit:
        local = t.astimezone(tz)
        if local.hour == hour and local.minute < 15:
            return t
        t += step
    return None
