"""Injected time: the one place the platform reads the wall.

Every app holds one `Clock` in `app.state.clock` (set by `common.app.create_service_app`). Routers take it with
`Depends(get_clock)`, background jobs read `app.state.clock`, and services are handed the `now` they work with,
so a test moves time by giving an app a `FrozenClock`. Whole processes (the e2e tests, CI's shifted-date runs)
move it with libfaketime, which this clock follows because it asks the system.

Token lifetimes are measured on the system clock the issuer and verifiers are given (`Clock()` by default): a
token crosses processes (the gateway's nginx edge checks `exp` on its own), so it lives on real time.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from starlette.requests import HTTPConnection

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock:
    """The system clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def timestamp(self) -> float:
        """Seconds since the epoch, for JWT claims and cookie lifetimes."""
        return self.now().timestamp()

    def today(self) -> date:
        """Today's date where the platform's communities are (Asia/Shanghai)."""
        return local_date(self.now())


class FrozenClock(Clock):
    """A clock tests set and advance by hand."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now = self._now + timedelta(**delta)
        return self._now

    def set(self, instant: datetime) -> datetime:
        if instant.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = instant
        return self._now


def local_date(instant: datetime) -> date:
    """The calendar date of an instant in Asia/Shanghai (where "today", months and quarters are counted)."""
    return instant.astimezone(SHANGHAI).date()


async def get_clock(conn: HTTPConnection) -> Clock:
    """FastAPI dependency: the app's clock (`clock: Clock = Depends(get_clock)`). Async on purpose: FastAPI runs a
    plain `def` dependency in its thread pool, a thread hop per request."""
    return conn.app.state.clock


def age_on(birth: date, on: date) -> int:
    """Whole years from `birth` to `on` (a birthday on 29 February is reached on 1 March in other years)."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def years_before(day: date, years: int) -> date:
    """The date `years` whole years before `day` (29 February falls back to the 28th): the latest birth date of
    someone `years` old on `day` (`age_on(years_before(d, n), d) == n`)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)
