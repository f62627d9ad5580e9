"""Business-time arithmetic for consultation response times (pure functions, no database).

A store's opening hours come as intervals: for one local (Asia/Shanghai) day, a list of
(opens, closes) aware UTC datetimes, empty when the store is closed that day. Everything here
works on such intervals, so nights, weekends and holidays need no special case: they are simply
the gaps between intervals.

- `business_seconds(start, end, intervals)`: how much of [start, end) lies inside the intervals.
- `add_business_seconds(start, seconds, intervals)`: the moment `seconds` of business time after
  `start` (None when the intervals run out first).
- `*_for` variants take a provider `day -> intervals` and collect the days they need.
- `fallback_intervals(day)`: every day 08:30–18:00 Asia/Shanghai, used for stores without
  opening hours (documented in the README).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

Interval = tuple[datetime, datetime]
IntervalsFor = Callable[[date], list[Interval]]

SHANGHAI = ZoneInfo("Asia/Shanghai")
FALLBACK_OPEN = time(8, 30)
FALLBACK_CLOSE = time(18, 0)
HORIZON_DAYS = 62  # how far ahead a deadline is looked for (a long holiday fits many times)


def fallback_intervals(day: date) -> list[Interval]:
    opens = datetime.combine(day, FALLBACK_OPEN, SHANGHAI).astimezone(UTC)
    closes = datetime.combine(day, FALLBACK_CLOSE, SHANGHAI).astimezone(UTC)
    return [(opens, closes)]


def _normalised(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, empty ones dropped, overlapping or touching ones joined."""
    out: list[Interval] = []
    for opens, closes in sorted(iv for iv in intervals if iv[1] > iv[0]):
        if out and opens <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], closes))
        else:
            out.append((opens, closes))
    return out


def business_seconds(start: datetime, end: datetime, intervals: Iterable[Interval]) -> int:
    """Whole seconds of [start, end) inside the intervals (0 when end <= start)."""
    if end <= start:
        return 0
    total = timedelta()
    for opens, closes in _normalised(intervals):
        lo, hi = max(opens, start), min(closes, end)
        if hi > lo:
            total += hi - lo
    return int(total.total_seconds())


def add_business_seconds(start: datetime, seconds: int, intervals: Iterable[Interval]) -> datetime | None:
    """The moment when `seconds` of business time have passed since `start`; None if the
    intervals end before that. With seconds == 0 outside hours: the next opening."""
    left = timedelta(seconds=max(seconds, 0))
    for opens, closes in _normalised(intervals):
        if closes <= start:
            continue
        lo = max(opens, start)
        if lo + left <= closes:
            return lo + left
        left -= closes - lo
    return None


def local_day(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def business_seconds_for(start: datetime, end: datetime, intervals_for: IntervalsFor) -> int:
    if end <= start:
        return 0
    # The day before too: an interval of the previous day may run past midnight.
    days = _days(local_day(start) - timedelta(days=1), local_day(end))
    return business_seconds(start, end, [iv for day in days for iv in intervals_for(day)])


def deadline_for(
    start: datetime, seconds: int, intervals_for: IntervalsFor, horizon_days: int = HORIZON_DAYS
) -> datetime | None:
    """`add_business_seconds` over the days from `start` on, one day at a time, looking at most
    `horizon_days` ahead (None: no such moment within the horizon, e.g. a store with no hours)."""
    first = local_day(start) - timedelta(days=1)
    intervals: list[Interval] = []
    for day in _days(first, first + timedelta(days=horizon_days)):
        intervals.extend(intervals_for(day))
        found = add_business_seconds(start, seconds, intervals)
        if found is not None:
            return found
    return None
