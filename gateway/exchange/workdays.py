"""Working-day deadlines (Asia/Shanghai) for grant applications: public holidays and make-up working days (调休)
from the `chinese-calendar` package for the years it covers, Monday–Friday otherwise."""
from __future__ import annotations

from datetime import datetime, time, timedelta

from common.clock import SHANGHAI

from common.workdays import is_workday


def add_working_days(start: datetime, days: int) -> datetime:
    """End of the `days`-th working day after the day of `start` (local midnight after it, as aware UTC)."""
    d = start.astimezone(SHANGHAI).date()
    counted = 0
    while counted < days:
        d += timedelta(days=1)
        if is_workday(d):
            counted += 1
    return datetime.combine(d + timedelta(days=1), time(0), tzinfo=SHANGHAI).astimezone(start.tzinfo)
