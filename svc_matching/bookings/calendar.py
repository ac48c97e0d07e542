"""Which hours a bookable resource is open, Asia/Shanghai: a date is a working day, a weekend (rest) day or a
public holiday by the working-day calendar (`chinese-calendar`, 调休 included: a make-up Saturday is a working
day), as svc_services' SLA calendar and the gateway's grant deadlines reckon it; each kind of day has its own
opening windows, and `closed_dates` close a resource on dates of its own."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

from common.clock import SHANGHAI

from common.workdays import DAY_KINDS, day_kind  # noqa: F401  (DAY_KINDS: the opening-hours keys)


def parse_window(w: str) -> tuple[time, time]:
    a, _, b = w.partition("-")
    start, end = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
    if end <= start:
        raise ValueError(f"window {w!r} ends before it starts")
    return start, end


def day_slots(opening_hours: dict, closed_dates: list[str], slot_minutes: int, d: date
              ) -> Iterator[tuple[datetime, datetime]]:
    """The slots of one local date: each window cut into whole slots from its opening (a remainder is unused)."""
    if d.isoformat() in closed_dates:
        return
    step = timedelta(minutes=slot_minutes)
    for w in opening_hours.get(day_kind(d), []):
        a, b = parse_window(w)
        start, end = datetime.combine(d, a, SHANGHAI), datetime.combine(d, b, SHANGHAI)
        while start + step <= end:
            yield start, start + step
            start += step


def slot_at(opening_hours: dict, closed_dates: list[str], slot_minutes: int, starts_at: datetime
            ) -> tuple[datetime, datetime] | None:
    """The slot beginning exactly at `starts_at`, or None (closed then, or not a slot's start)."""
    local = starts_at.astimezone(SHANGHAI)
    for s, e in day_slots(opening_hours, closed_dates, slot_minutes, local.date()):
        if s == local:
            return s, e
    return None


def open_minutes(opening_hours: dict, closed_dates: list[str], slot_minutes: int, first: date, days: int) -> int:
    """Bookable minutes over `days` dates from `first` (the denominator of room utilisation)."""
    return sum(slot_minutes for i in range(days)
               for _ in day_slots(opening_hours, closed_dates, slot_minutes, first + timedelta(days=i)))
