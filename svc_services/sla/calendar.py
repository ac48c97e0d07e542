"""Deadlines in calendar hours or in working hours (Asia/Shanghai), with Chinese public holidays and
make-up working days (调休) as data: the `chinese-calendar` package for the years it covers, plus the
`extra_holidays` / `extra_workdays` settings; years it does not cover fall back to Monday–Friday."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone

from common.clock import SHANGHAI

from common.workdays import is_workday


def _parse_windows(windows: Iterable[str]) -> list[tuple[time, time]]:
    out = []
    for w in windows:
        a, b = w.split("-")
        start, end = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
        if end <= start:
            raise ValueError(f"working window {w!r} ends before it starts")
        out.append((start, end))
    return sorted(out)


class WorkCalendar:
    def __init__(self, windows: Iterable[str] = ("09:00-12:00", "13:30-17:30"), *,
                 holidays: Iterable[str | date] = (), workdays: Iterable[str | date] = ()) -> None:
        self.windows = _parse_windows(windows)
        self.holidays = {d if isinstance(d, date) else date.fromisoformat(d) for d in holidays}
        self.workdays = {d if isinstance(d, date) else date.fromisoformat(d) for d in workdays}

    @classmethod
    def from_settings(cls, settings) -> "WorkCalendar":
        return cls(settings.working_windows, holidays=settings.extra_holidays, workdays=settings.extra_workdays)

    def is_workday(self, d: date) -> bool:
        if d in self.workdays:
            return True
        if d in self.holidays:
            return False
        return is_workday(d)

    def add(self, start: datetime, hours: float, *, working: bool) -> datetime:
        """The deadline `hours` after `start`: plain elapsed time, or counted only inside working windows."""
        if not working or hours <= 0:
            return start + timedelta(hours=hours)
        remaining = timedelta(hours=hours)
        local = start.astimezone(SHANGHAI)
        day = local.date()
        for _ in range(3660):  # ten years of days is more than any limit
            if self.is_workday(day):
                for w_start, w_end in self.windows:
                    ws = datetime.combine(day, w_start, SHANGHAI)
                    we = datetime.combine(day, w_end, SHANGHAI)
                    begin = max(ws, local)
                    if begin >= we:
                        continue
                    if begin + remaining <= we:
                        return (begin + remaining).astimezone(timezone.utc)
                    remaining -= we - begin
            day += timedelta(days=1)
            local = datetime.combine(day, time(0), SHANGHAI)
        raise ValueError("deadline beyond the calendar horizon")
