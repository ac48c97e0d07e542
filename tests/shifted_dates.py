"""Run the calendar-sensitive tests again with the whole process tree moved to other dates (`make test-dates`).

libfaketime (Debian's `faketime`) in offset mode (`faketime -f +Ns`): every process it starts, the platform's
children in the e2e tests included, keeps running from real time plus the same offset, so tokens, deadlines and
"this month" agree between them (with `@` each process would start its own clock at the instant, and tokens one
process signs would look issued in the future to another).

The instants (Asia/Shanghai):
- the last minutes of a quarter that is not a year's end, and of a year (periods, "this quarter", rollovers);
- the morning of a Monday after a 调休 weekend (a Saturday or Sunday that was a working day: working-hour
  deadlines, working-day grant deadlines);
- 29 February 2028 (ages, "a year ago", month lengths);
- one year ahead (a year past the holiday data of `chinese-calendar`).
Each runs on SQLite (`BOTH_BACKENDS` names the instants that also run on PostgreSQL when it is configured).

    python -m tests.shifted_dates                 # every instant
    python -m tests.shifted_dates --only leap-day  # one
    python -m tests.shifted_dates --list           # what would run
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta

from common.clock import SHANGHAI, Clock

# The tests whose answers depend on "now": requests and SLA, KPIs and periods, offers and the time bank, ages and
# tags, grants and working days, tokens, and one whole platform of real processes (with the edge).
CALENDAR_TESTS = [
    "tests/svc_services", "tests/svc_metrics", "tests/svc_matching", "tests/svc_residents", "tests/common",
    "tests/gateway/test_exchange.py", "tests/gateway/test_identity_routing.py", "tests/authz/test_tokens.py",
    "tests/e2e/test_platform.py",
]
# What a shifted clock cannot change, and costs minutes: the browser (its own clocks and caches).
DESELECT = ["tests/svc_metrics/test_dashboard_browser.py"]


def _local(y: int, mo: int, d: int, h: int, mi: int) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SHANGHAI)


def tiaoxiu_monday() -> datetime:
    """09:05 on the Monday after the latest weekend with a make-up working day in the holiday data."""
    import chinese_calendar
    from chinese_calendar import constants

    day = max(d for d in constants.workdays if d.weekday() >= 5)
    monday = day + timedelta(days=7 - day.weekday())
    assert monday.weekday() == 0 and chinese_calendar.is_workday(day)
    return _local(monday.year, monday.month, monday.day, 9, 5)


def instants(now: datetime) -> dict[str, datetime]:
    local = now.astimezone(SHANGHAI)
    year_end = _local(local.year, 12, 31, 23, 56)
    if year_end <= local:
        year_end = _local(local.year + 1, 12, 31, 23, 56)
    quarter_end = None
    for year in (local.year, local.year + 1):
        for month, day in ((3, 31), (6, 30), (9, 30)):
            candidate = _local(year, month, day, 23, 56)
            if candidate > local:
                quarter_end = candidate
                break
        if quarter_end:
            break
    return {
        "quarter-end": quarter_end,
        "year-end": year_end,
        "tiaoxiu-monday": tiaoxiu_monday(),
        "leap-day": _local(2028, 2, 29, 10, 0),
        "year-ahead": local + timedelta(days=365),
    }


# PostgreSQL doubles a run's time; the year's end, where the most rolls over at once, runs on both backends, the
# others on SQLite (the database's own clock is not shifted anyway: the services hand it every time it stores).
# (A test's thread waits in short relative sleeps, never `Event.wait(timeout)` or `threading.Timer`: their deadline
# is absolute, and under libfaketime the kernel reads it on the unshifted clock, so they would last the shift.)
BOTH_BACKENDS = {"year-end"}


def environment(name: str) -> dict[str, str]:
    env = dict(os.environ)
    if name not in BOTH_BACKENDS:
        env.pop("ONENET_TEST_POSTGRES_URL", None)
        required = [c for c in env.get("ONENET_REQUIRE", "").split(",") if c.strip() and c.strip() != "postgres"]
        env["ONENET_REQUIRE"] = ",".join(required)
    return env


def command(offset_seconds: int, pytest_args: list[str]) -> list[str]:
    sign = "+" if offset_seconds >= 0 else "-"
    tests = [*CALENDAR_TESTS, *(f"--deselect={d}" for d in DESELECT)]
    return ["faketime", "-f", f"{sign}{abs(offset_seconds)}s", sys.executable, "-m", "pytest", *tests,
            "-p", "no:cacheprovider", *pytest_args]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", help="run only these instants (by name)")
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    parser.add_argument("pytest_args", nargs="*", default=["-n", "2", "--dist", "loadfile", "-q"])
    args = parser.parse_args(argv)
    if shutil.which("faketime") is None and not args.list:
        print("faketime is not installed (Debian package faketime): the shifted-date runs need it", file=sys.stderr)
        return 2
    failed = []
    real = Clock()  # the real clock: what the runs are shifted from
    for name, at in instants(real.now()).items():
        if args.only and name not in args.only:
            continue
        offset = int((at - real.now()).total_seconds())
        cmd = command(offset, args.pytest_args)
        backends = "SQLite and PostgreSQL" if name in BOTH_BACKENDS else "SQLite"
        print(f"== {name}: {at.isoformat()} (offset {offset:+d} s, {backends})\n   {' '.join(cmd)}", flush=True)
        if args.list:
            continue
        started = time.monotonic()
        rc = subprocess.call(cmd, env=environment(name))
        print(f"== {name}: exit {rc} in {time.monotonic() - started:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"shifted-date runs failed at: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
