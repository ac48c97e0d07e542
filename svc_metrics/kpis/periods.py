"""Reporting periods on Asia/Shanghai calendar days: 2026-03-05 (day), 2026-W10 (ISO week), 2026-03 (month),
2026-Q1 (quarter), 2026 (year). Boundaries are converted to UTC for queries."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from common.clock import SHANGHAI
from common.errors import invalid


@dataclass(frozen=True)
class Period:
    label: str
    kind: str
    first: date      # first local day
    after: date      # the local day after the last

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, datetime.min.time(), SHANGHAI).astimezone(timezone.utc)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.after, datetime.min.time(), SHANGHAI).astimezone(timezone.utc)

    @property
    def months(self) -> float:
        """How many months the period is: whole calendar months for a month, quarter or year; a day or a week as
        its days over the mean month (365.25 / 12 days)."""
        if self.first.day == 1 and self.after.day == 1:
            return float((self.after.year - self.first.year) * 12 + self.after.month - self.first.month)
        return (self.after - self.first).days / (365.25 / 12)

    def previous(self) -> "Period":
        return of(self.kind, self.first - timedelta(days=1))

    def trailing(self, n: int) -> list["Period"]:
        """This period and the n-1 before it, oldest first."""
        out = [self]
        while len(out) < n:
            out.append(out[-1].previous())
        return list(reversed(out))


def of(kind: str, day: date) -> Period:
    if kind == "day":
        return Period(day.isoformat(), "day", day, day + timedelta(days=1))
    if kind == "week":
        y, w, _ = day.isocalendar()
        first = day - timedelta(days=day.isoweekday() - 1)
        return Period(f"{y}-W{w:02d}", "week", first, first + timedelta(days=7))
    if kind == "month":
        first = day.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
        return Period(f"{day.year}-{day.month:02d}", "month", first, after)
    if kind == "quarter":
        q = (day.month - 1) // 3 + 1
        first = date(day.year, 3 * q - 2, 1)
        after = date(day.year + 1, 1, 1) if q == 4 else date(day.year, 3 * q + 1, 1)
        return Period(f"{day.year}-Q{q}", "quarter", first, after)
    if kind == "year":
        return Period(str(day.year), "year", date(day.year, 1, 1), date(day.year + 1, 1, 1))
    raise ValueError(kind)


def local_today(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()


# Years a period may name: the platform has no data before 2000, and Python's dates (with the trailing periods
# before one and the UTC offset of its first day) end short of year 1 and past 9999.
MIN_YEAR, MAX_YEAR = 2000, 2999


def parse(value: str | None, now: datetime, *, default_kind: str = "month") -> Period:
    if not value:
        return of(default_kind, local_today(now))
    v = value.strip()
    if v in ("day", "week", "month", "quarter", "year"):
        return of(v, local_today(now))
    if (m := re.match(r"([0-9]{4})(?:-|$)", v)) and not MIN_YEAR <= int(m[1]) <= MAX_YEAR:
        raise invalid("period", "period.out_of_range", f"统计周期的年份应在 {MIN_YEAR}–{MAX_YEAR} 之间",
                      f"A period's year is between {MIN_YEAR} and {MAX_YEAR}", where="query")
    try:
        if m := re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", v):
            return of("day", date(int(m[1]), int(m[2]), int(m[3])))
        if m := re.fullmatch(r"([0-9]{4})-W([0-9]{2})", v):
            return of("week", date.fromisocalendar(int(m[1]), int(m[2]), 1))
        if m := re.fullmatch(r"([0-9]{4})-([0-9]{2})", v):
            return of("month", date(int(m[1]), int(m[2]), 1))
        if m := re.fullmatch(r"([0-9]{4})-Q([1-4])", v):
            return of("quarter", date(int(m[1]), 3 * int(m[2]) - 2, 1))
        if m := re.fullmatch(r"([0-9]{4})", v):
            return of("year", date(int(m[1]), 1, 1))
    except ValueError:
        pass
    raise invalid("period", "period.invalid", "统计周期格式应为 2026-03-05、2026-W10、2026-03、2026-Q1 或 2026",
                  "Period must look like 2026-03-05, 2026-W10, 2026-03, 2026-Q1 or 2026", where="query")
