"""The working-day calendar (Asia/Shanghai dates): public holidays and make-up working days (调休) from the
`chinese-calendar` package for the years it covers, Monday–Friday otherwise. The one place the platform asks
what kind of day a date is: svc_services' SLA calendar, the gateway's grant deadlines and svc_matching's opening
hours all read it."""
from __future__ import annotations

from datetime import date

try:  # pragma: no cover - import guard
    import chinese_calendar
except ImportError:  # pragma: no cover
    chinese_calendar = None

DAY_KINDS = ("workday", "weekend", "holiday")


def day_kind(d: date) -> str:
    """"workday" (a make-up Saturday included), "holiday" (a named public holiday) or "weekend"."""
    if chinese_calendar is not None:
        try:
            if chinese_calendar.is_workday(d):
                return "workday"
            _, name = chinese_calendar.get_holiday_detail(d)
            return "holiday" if name else "weekend"
        except NotImplementedError:
            pass  # a year outside the package's data
    return "workday" if d.weekday() < 5 else "weekend"


def is_workday(d: date) -> bool:
    return day_kind(d) == "workday"
