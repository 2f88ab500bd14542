"""Billing periods: calendar and anniversary, every interval, in the customer's timezone."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from metering.formats import format_datetime
from metering.models import BillingTime, Interval
from metering.periods import BillingPeriod, billing_period, subscription_period
from tests.metering.builders import plan, utc

CAL, ANN = BillingTime.CALENDAR, BillingTime.ANNIVERSARY
LONG_AGO = utc(2020, 1, 1)


def _period(
    now: datetime,
    *,
    interval: Interval = Interval.MONTHLY,
    billing_time: BillingTime = CAL,
    subscription_at: datetime = LONG_AGO,
    started_at: datetime | None = None,
    timezone: str | None = None,
    bill_charges_monthly: bool | None = None,
) -> BillingPeriod:
    return billing_period(
        interval=interval,
        billing_time=billing_time,
        subscription_at=subscription_at,
        started_at=started_at or subscription_at,
        now=now,
        timezone=timezone,
        bill_charges_monthly=bill_charges_monthly,
    )


def _days(period: BillingPeriod) -> tuple[date, date]:
    return period.start_date, period.end_date


def test_calendar_monthly_spec_example() -> None:
    period = _period(utc(2025, 6, 15, 10, 30))
    assert format_datetime(period.from_datetime) == "2025-06-01T00:00:00Z"
    assert format_datetime(period.to_datetime) == "2025-06-30T23:59:59Z"
    assert period.to_datetime == utc(2025, 6, 30, 23, 59, 59, 999_999)
    assert period.issuing_date == date(2025, 6, 30)
    assert period.duration_days == 30


def test_anniversary_monthly_spec_example() -> None:
    period = _period(utc(2022, 6, 22), billing_time=ANN, subscription_at=utc(2022, 3, 7))
    assert format_datetime(period.from_datetime) == "2022-06-07T00:00:00Z"
    assert format_datetime(period.to_datetime) == "2022-07-06T23:59:59Z"
    assert period.issuing_date == date(2022, 7, 6)


@pytest.mark.parametrize(
    ("today", "start", "end"),
    [
        (date(2022, 2, 15), date(2022, 1, 31), date(2022, 2, 27)),
        (date(2022, 2, 27), date(2022, 1, 31), date(2022, 2, 27)),
        (date(2022, 2, 28), date(2022, 2, 28), date(2022, 3, 30)),  # clamped day starts a period
        (date(2022, 3, 30), date(2022, 2, 28), date(2022, 3, 30)),
        (date(2022, 3, 31), date(2022, 3, 31), date(2022, 4, 29)),
        (date(2022, 4, 30), date(2022, 4, 30), date(2022, 5, 30)),
        (date(2024, 2, 29), date(2024, 2, 29), date(2024, 3, 30)),  # leap year
        (date(2022, 1, 5), date(2021, 12, 31), date(2022, 1, 30)),
    ],
)
def test_anniversary_on_the_31st(today: date, start: date, end: date) -> None:
    now = utc(today.year, today.month, today.day, 12)
    period = _period(now, billing_time=ANN, subscription_at=utc(2021, 1, 31))
    assert _days(period) == (start, end)
    assert period.duration_days == (end - start).days + 1


def test_first_period_starts_at_the_exact_started_at() -> None:
    started = utc(2025, 6, 10, 14, 23, 5, 120_000)
    period = _period(utc(2025, 6, 15), subscription_at=started)
    assert period.from_datetime == started
    assert format_datetime(period.to_datetime) == "2025-06-30T23:59:59Z"
    assert period.duration_days == 30  # the full period's length


def test_later_periods_are_not_clamped() -> None:
    period = _period(utc(2025, 7, 15), subscription_at=utc(2025, 6, 10, 14))
    assert period.from_datetime == utc(2025, 7, 1)


@pytest.mark.parametrize(
    ("zone", "now", "from_utc", "to_utc", "issuing"),
    [
        (
            "America/New_York",
            utc(2025, 6, 15, 12),
            utc(2025, 6, 1, 4),
            utc(2025, 7, 1, 3, 59, 59, 999_999),
            date(2025, 6, 30),
        ),
        # 02:00 UTC on July 1st is still June 30th in New York.
        (
            "America/New_York",
            utc(2025, 7, 1, 2),
            utc(2025, 6, 1, 4),
            utc(2025, 7, 1, 3, 59, 59, 999_999),
            date(2025, 6, 30),
        ),
        # Winter: EST (UTC-5).
        (
            "America/New_York",
            utc(2025, 1, 20),
            utc(2025, 1, 1, 5),
            utc(2025, 2, 1, 4, 59, 59, 999_999),
            date(2025, 1, 31),
        ),
        (
            "Asia/Kolkata",
            utc(2025, 6, 15, 12),
            utc(2025, 5, 31, 18, 30),
            utc(2025, 6, 30, 18, 29, 59, 999_999),
            date(2025, 6, 30),
        ),
        # 19:00 UTC on June 30th is already July 1st in Kolkata.
        (
            "Asia/Kolkata",
            utc(2025, 6, 30, 19),
            utc(2025, 6, 30, 18, 30),
            utc(2025, 7, 31, 18, 29, 59, 999_999),
            date(2025, 7, 31),
        ),
    ],
)
def test_customer_timezone(
    zone: str, now: datetime, from_utc: datetime, to_utc: datetime, issuing: date
) -> None:
    period = _period(now, timezone=zone)
    assert (period.from_datetime, period.to_datetime) == (from_utc, to_utc)
    assert period.issuing_date == issuing
    assert period.from_datetime.tzinfo is not None
    assert period.from_datetime.utcoffset() == utc(2000, 1, 1).utcoffset()


def test_anniversary_day_is_read_in_the_customer_timezone() -> None:
    # 2022-03-07T02:00Z is March 6th in New York: the anniversary day is the 6th.
    period = _period(
        utc(2022, 6, 22),
        billing_time=ANN,
        subscription_at=utc(2022, 3, 7, 2),
        timezone="America/New_York",
    )
    assert _days(period) == (date(2022, 6, 6), date(2022, 7, 5))
    assert period.from_datetime == datetime(2022, 6, 6, tzinfo=ZoneInfo("America/New_York"))


@pytest.mark.parametrize(
    ("interval", "billing_time", "subscription_at", "today", "start", "end"),
    [
        # Calendar weeks run Monday to Sunday (2025-06-15 is a Sunday).
        (Interval.WEEKLY, CAL, LONG_AGO, date(2025, 6, 15), date(2025, 6, 9), date(2025, 6, 15)),
        (Interval.WEEKLY, CAL, LONG_AGO, date(2025, 6, 16), date(2025, 6, 16), date(2025, 6, 22)),
        # Anniversary weeks start on the subscription's weekday (2025-06-04 is a Wednesday).
        (
            Interval.WEEKLY,
            ANN,
            utc(2025, 6, 4),
            date(2025, 6, 15),
            date(2025, 6, 11),
            date(2025, 6, 17),
        ),
        (Interval.QUARTERLY, CAL, LONG_AGO, date(2025, 5, 20), date(2025, 4, 1), date(2025, 6, 30)),
        (
            Interval.QUARTERLY,
            ANN,
            utc(2024, 2, 15),
            date(2025, 1, 10),
            date(2024, 11, 15),
            date(2025, 2, 14),
        ),
        (
            Interval.QUARTERLY,
            ANN,
            utc(2024, 1, 31),
            date(2025, 5, 1),
            date(2025, 4, 30),
            date(2025, 7, 30),
        ),
        (
            Interval.SEMIANNUAL,
            CAL,
            LONG_AGO,
            date(2025, 9, 1),
            date(2025, 7, 1),
            date(2025, 12, 31),
        ),
        (
            Interval.SEMIANNUAL,
            ANN,
            utc(2024, 3, 10),
            date(2025, 2, 1),
            date(2024, 9, 10),
            date(2025, 3, 9),
        ),
        (Interval.YEARLY, CAL, LONG_AGO, date(2024, 6, 1), date(2024, 1, 1), date(2024, 12, 31)),
        (
            Interval.YEARLY,
            ANN,
            utc(2023, 5, 20),
            date(2024, 5, 19),
            date(2023, 5, 20),
            date(2024, 5, 19),
        ),
        # A Feb 29 anniversary falls on Feb 28 in common years.
        (
            Interval.YEARLY,
            ANN,
            utc(2024, 2, 29),
            date(2025, 2, 28),
            date(2025, 2, 28),
            date(2026, 2, 27),
        ),
        (
            Interval.YEARLY,
            ANN,
            utc(2024, 2, 29),
            date(2025, 2, 27),
            date(2024, 2, 29),
            date(2025, 2, 27),
        ),
    ],
)
def test_intervals(
    interval: Interval,
    billing_time: BillingTime,
    subscription_at: datetime,
    today: date,
    start: date,
    end: date,
) -> None:
    now = utc(today.year, today.month, today.day, 12)
    period = _period(
        now, interval=interval, billing_time=billing_time, subscription_at=subscription_at
    )
    assert _days(period) == (start, end)
    assert period.issuing_date == end
    assert period.duration_days == (end - start).days + 1


def test_weekly_duration_is_seven_days() -> None:
    assert _period(utc(2025, 6, 15), interval=Interval.WEEKLY).duration_days == 7


def test_yearly_duration_counts_the_year() -> None:
    assert _period(utc(2024, 6, 1), interval=Interval.YEARLY).duration_days == 366


@pytest.mark.parametrize("interval", [Interval.YEARLY, Interval.SEMIANNUAL])
def test_bill_charges_monthly(interval: Interval) -> None:
    period = _period(utc(2025, 6, 15), interval=interval, bill_charges_monthly=True)
    assert _days(period) == (date(2025, 6, 1), date(2025, 6, 30))


def test_subscription_period_reads_the_records() -> None:
    from metering.models import Subscription, SubscriptionStatus

    sub = Subscription(
        id="s",
        external_id="sub-1",
        customer_id="c",
        external_customer_id="cust",
        plan_id="plan-1",
        plan_code="plan",
        status=SubscriptionStatus.ACTIVE,
        billing_time=ANN,
        subscription_at=utc(2022, 3, 7, 9),
        created_at=utc(2022, 3, 7, 9),
        started_at=utc(2022, 3, 7, 9),
    )
    period = subscription_period(sub, plan(), now=utc(2022, 3, 20))
    assert period.from_datetime == utc(2022, 3, 7, 9)
    assert period.issuing_date == date(2022, 4, 6)
    ended = msgspec.structs.replace(sub, terminated_at=utc(2022, 3, 25, 8))
    terminated = subscription_period(ended, plan(), now=utc(2022, 3, 20))
    assert terminated.to_datetime == utc(2022, 3, 25, 8)
