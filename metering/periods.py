"""The billing period holding a moment, for a subscription (reference/lago-semantics.md section 5).

Days are counted in the customer's timezone and the bounds are returned in UTC:

- calendar periods start on the 1st of the month (quarter, half year, year) or on Monday;
- anniversary periods start on the subscription's day of month (or weekday), clamped to the
  month's length (a 31st anniversary starts on Feb 28), and end the day before the next one;
- the first period starts at the subscription's exact ``started_at``;
- ``to_datetime`` is the end of the last local day (23:59:59.999999).

Yearly and semiannual plans with ``bill_charges_monthly`` meter charges per month.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec

from metering.models import BillingTime, Interval, Plan, Subscription

__all__ = ["BillingPeriod", "billing_period", "subscription_period"]

_MONTHS = {
    Interval.MONTHLY: 1,
    Interval.QUARTERLY: 3,
    Interval.SEMIANNUAL: 6,
    Interval.YEARLY: 12,
}


class BillingPeriod(msgspec.Struct, frozen=True, kw_only=True):
    """The charges window of one period.

    ``from_datetime`` / ``to_datetime`` bound the events (both inclusive, UTC);
    ``start_date`` / ``end_date`` are the full period's local days, ``issuing_date`` its last
    day, and ``duration_days`` its length (the weighted sum's divisor), even when the first
    period starts late.
    """

    from_datetime: datetime
    to_datetime: datetime
    issuing_date: date
    start_date: date
    end_date: date
    duration_days: int


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def _anniversary(month_index: int, day_of_month: int) -> date:
    # The anniversary day in that month, clamped to the month's length.
    year, month0 = divmod(month_index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day_of_month, last))


def _month_period(today: date, months: int, anchor: date, day_of_month: int) -> tuple[date, date]:
    """The ``months``-long period holding ``today``; periods start in anchor's month + k·months."""
    anchor_index = _month_index(anchor)
    k = (_month_index(today) - anchor_index) // months
    start = _anniversary(anchor_index + k * months, day_of_month)
    if start > today:
        k -= 1
        start = _anniversary(anchor_index + k * months, day_of_month)
    end = _anniversary(anchor_index + (k + 1) * months, day_of_month) - timedelta(days=1)
    return start, end


def _local_days(
    interval: Interval, billing_time: BillingTime, subscription_day: date, today: date
) -> tuple[date, date]:
    anniversary = billing_time is BillingTime.ANNIVERSARY
    if interval is Interval.WEEKLY:
        weekday = subscription_day.weekday() if anniversary else 0  # calendar weeks: Monday
        start = today - timedelta(days=(today.weekday() - weekday) % 7)
        return start, start + timedelta(days=6)
    months = _MONTHS[interval]
    if anniversary:
        return _month_period(today, months, subscription_day, subscription_day.day)
    return _month_period(today, months, date(2000, 1, 1), 1)


def billing_period(
    *,
    interval: Interval,
    billing_time: BillingTime,
    subscription_at: datetime,
    started_at: datetime,
    now: datetime,
    timezone: str | None = None,
    bill_charges_monthly: bool | None = None,
    terminated_at: datetime | None = None,
) -> BillingPeriod:
    """The charges period holding ``now`` (Lago's current-usage boundaries).

    ``timezone`` is the customer's applicable IANA timezone (``None``: UTC). Every datetime
    argument must be timezone-aware.
    """
    zone = ZoneInfo(timezone or "UTC")
    if bill_charges_monthly and interval in (Interval.YEARLY, Interval.SEMIANNUAL):
        interval = Interval.MONTHLY
    today = now.astimezone(zone).date()
    subscription_day = subscription_at.astimezone(zone).date()
    start, end = _local_days(interval, billing_time, subscription_day, today)

    from_datetime = datetime.combine(start, time.min, tzinfo=zone).astimezone(UTC)
    from_datetime = max(from_datetime, started_at.astimezone(UTC))
    to_datetime = datetime.combine(end, time.max, tzinfo=zone).astimezone(UTC)
    if terminated_at is not None and terminated_at <= to_datetime:
        to_datetime = terminated_at.astimezone(UTC)
    to_datetime = max(to_datetime, started_at.astimezone(UTC))
    return BillingPeriod(
        from_datetime=from_datetime,
        to_datetime=to_datetime,
        issuing_date=end,
        start_date=start,
        end_date=end,
        duration_days=(end - start).days + 1,
    )


def subscription_period(
    subscription: Subscription, plan: Plan, *, now: datetime, timezone: str | None = None
) -> BillingPeriod:
    """:func:`billing_period` for a stored subscription of ``plan``."""
    return billing_period(
        interval=plan.interval,
        billing_time=subscription.billing_time,
        subscription_at=subscription.subscription_at,
        started_at=subscription.started_at or subscription.subscription_at,
        now=now,
        timezone=timezone,
        bill_charges_monthly=plan.bill_charges_monthly,
        terminated_at=subscription.terminated_at,
    )
