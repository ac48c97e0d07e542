"""Working-day deadlines (Asia/Shanghai) for grant applications: public holidays and make-up working days (调休)
from the `chinese-calendar` package for the years it covers, Monday–Friday otherwise."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

from common.clock import SHANGHAI

try:  # pragma: no cover - import guard
    import chinese_calendar
except ImportError:  # pragma: no cover
    chinese_calendar = None


def is_workday(d: date) -> bool:
    if chinese_calendar is not None:
        try:
            return chinese_calendar.is_workday(d)
        except NotImplementedError:
            pass
    return d.weekday() < 5


def add_working_days(start: datetime, days: int) -> datetime:
    """End of the `days`-th working day after the day of `start` (local midnight after it, as aware UTC)."""
    d = start.astimezone(SHANGHAI).date()
    counted = 0
    while counted < days:
        d += timedelta(days=1)
        if is_workday(d):
            counted += 1
    return datetime.combine(d + timedelta(days=1), time(0), tzinfo=SHANGHAI).astimezone(start.tzinfo)
