"""Business-time arithmetic over opening intervals: within a day, across nights, weekends,
holidays, lunch breaks and intervals that run past midnight."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from backend.consult.business_time import (
    SHANGHAI,
    add_business_seconds,
    business_seconds,
    business_seconds_for,
    deadline_for,
    fallback_intervals,
)


def at(day: str, hhmm: str) -> datetime:
    """A local Asia/Shanghai time as aware UTC."""
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=SHANGHAI).astimezone(UTC)


# 2026-12-04 is a Friday, 12-05/06 the weekend, 12-07 Monday.
def weekdays_only(day: date) -> list[tuple[datetime, datetime]]:
    return [] if day.weekday() >= 5 else fallback_intervals(day)


def with_holiday(holiday: date):  # noqa: ANN201 - a provider
    return lambda day: [] if day == holiday else weekdays_only(day)


def lunch_break(day: date) -> list[tuple[datetime, datetime]]:
    d = day.isoformat()
    return [(at(d, "08:30"), at(d, "12:00")), (at(d, "13:30"), at(d, "18:00"))]


def test_the_fallback_is_every_day_0830_to_1800_shanghai() -> None:
    [(opens, closes)] = fallback_intervals(date(2026, 12, 6))  # a Sunday too
    assert opens == datetime(2026, 12, 6, 0, 30, tzinfo=UTC) and closes == datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "provider", "expected"),
    [
        (at("2026-12-02", "09:00"), at("2026-12-02", "09:04"), fallback_intervals, 240),
        (at("2026-12-02", "07:00"), at("2026-12-02", "08:40"), fallback_intervals, 600),  # before opening
        (at("2026-12-02", "17:50"), at("2026-12-03", "08:40"), fallback_intervals, 1200),  # across the night
        (at("2026-12-02", "19:00"), at("2026-12-02", "23:00"), fallback_intervals, 0),  # all closed
        (at("2026-12-04", "17:55"), at("2026-12-07", "08:35"), weekdays_only, 600),  # across the weekend
        (at("2026-12-04", "17:55"), at("2026-12-07", "08:35"), fallback_intervals, 600 + 2 * 34200),
        (at("2026-12-04", "17:55"), at("2026-12-08", "08:35"), with_holiday(date(2026, 12, 7)), 600),  # holiday
        (at("2026-12-02", "11:50"), at("2026-12-02", "13:40"), lunch_break, 1200),
        (at("2026-12-02", "10:00"), at("2026-12-02", "09:00"), fallback_intervals, 0),  # end before start
        (at("2026-12-01", "09:00"), at("2026-12-03", "09:00"), fallback_intervals, 34200 * 2),
    ],
)
def test_business_seconds(start: datetime, end: datetime, provider, expected: int) -> None:  # noqa: ANN001
    assert business_seconds_for(start, end, provider) == expected


@pytest.mark.parametrize(
    ("start", "seconds", "provider", "expected"),
    [
        (at("2026-12-02", "09:00"), 600, fallback_intervals, at("2026-12-02", "09:10")),
        (at("2026-12-02", "17:55"), 600, fallback_intervals, at("2026-12-03", "08:35")),  # over the night
        (at("2026-12-04", "17:55"), 600, weekdays_only, at("2026-12-07", "08:35")),  # over the weekend
        (at("2026-12-05", "10:00"), 600, weekdays_only, at("2026-12-07", "08:40")),  # sent on a Saturday
        (at("2026-12-04", "17:55"), 600, with_holiday(date(2026, 12, 7)), at("2026-12-08", "08:35")),
        (at("2026-12-02", "11:55"), 600, lunch_break, at("2026-12-02", "13:35")),
        (at("2026-12-02", "20:00"), 0, fallback_intervals, at("2026-12-03", "08:30")),  # next opening
        (at("2026-12-02", "18:00"), 1, fallback_intervals, at("2026-12-03", "08:30") + timedelta(seconds=1)),
    ],
)
def test_deadlines(start: datetime, seconds: int, provider, expected: datetime) -> None:  # noqa: ANN001
    assert deadline_for(start, seconds, provider) == expected
    # And back: the business time from start to the deadline is what was added.
    assert business_seconds_for(start, expected, provider) == seconds


def test_an_interval_past_midnight_counts_on_both_days() -> None:
    def night_shift(day: date) -> list[tuple[datetime, datetime]]:
        d, nxt = day.isoformat(), (day + timedelta(days=1)).isoformat()
        return [(at(d, "20:00"), at(nxt, "02:00"))]

    assert business_seconds_for(at("2026-12-03", "01:00"), at("2026-12-03", "03:00"), night_shift) == 3600
    assert deadline_for(at("2026-12-03", "01:00"), 1800, night_shift) == at("2026-12-03", "01:30")
    assert deadline_for(at("2026-12-03", "01:45"), 1800, night_shift) == at("2026-12-03", "20:15")


def test_overlapping_and_empty_intervals_are_counted_once() -> None:
    d = "2026-12-02"
    intervals = [(at(d, "09:00"), at(d, "10:00")), (at(d, "09:30"), at(d, "11:00")), (at(d, "12:00"), at(d, "12:00"))]
    assert business_seconds(at(d, "08:00"), at(d, "13:00"), intervals) == 7200
    assert add_business_seconds(at(d, "09:00"), 7200, intervals) == at(d, "11:00")
    assert add_business_seconds(at(d, "09:00"), 7201, intervals) is None


def test_a_store_that_never_opens_has_no_deadline() -> None:
    assert deadline_for(at("2026-12-02", "09:00"), 600, lambda day: []) is None
    assert business_seconds_for(at("2026-12-02", "09:00"), at("2026-12-09", "09:00"), lambda day: []) == 0
