"""Benchmark: 10,000 bookings under contention through the gateway, checked for double booking afterwards.

    .venv/bin/python -m bench.bookings [--bookings 10000] [--connections 16] [--persons 2000] [--pg-url URL]
        [--access-ttl SECONDS]

The whole platform as `onenet up` starts it (real processes on loopback, the gateway's rate limits raised so they
never refuse the burst). 幸福's staff set up a canteen (老年食堂) with 50 seats per 30-minute slot; `--connections`
clients then book, as staff at the canteen's counter (one signed-in session shared by the clients, its access token
renewed with the refresh token before it expires: bench.support.SharedSession), for `--persons` residents (put into
svc_matching's person-place replica as svc_residents' feed would), each within the canteen's limit of WEEKLY_LIMIT
bookings a week (the run refuses a `--persons` too small for that), all racing for the earliest slot with seats
left: a refused booking (409 `booking.slot_full`) moves the client to the first of the answer's `next_free_slots`,
as an app would, and a 503 or 504 (svc_matching's SQLite writer busy past its timeout) is tried again after
Retry-After, at most 3 times. Reported: bookings per second, the 409s met on the way, and the check read from the
database afterwards: per slot, bookings held = `taken` ≤ capacity, no person twice in a slot, nobody over the weekly
limit. With `--pg-url` (or ONENET_TEST_POSTGRES_URL and `--backend postgresql`) svc_matching runs on a fresh
PostgreSQL database. No wall-clock assertion; never part of `make test`.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from bench.support import SharedSession, loadavg

BENCH_DB = "onenet_bench_bookings"
CAPACITY = 50
SLOTS_A_DAY = 24        # 08:00-20:00 in 30-minute slots
WEEKLY_LIMIT = 5        # per resident per week (Monday-Sunday): a seat on most weekdays
GRID = "110105001001001"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def start_platform(var: Path, matching_url: str | None, access_ttl: int | None = None):
    """The platform as bench.intake starts it (the gateway's rate limits raised), svc_matching on `matching_url`,
    people's access tokens living `access_ttl` seconds where given (the gateway's default otherwise)."""
    from bench.intake import start_platform as start

    env = {"ONENET_SVC_MATCHING_DATABASE_URL": matching_url} if matching_url else {}
    if access_ttl:
        env["ONENET_SESSION_ACCESS_TTL_SECONDS"] = str(access_ttl)
    return start(var, databases=env, routed="svc_matching")


async def put_persons(gw: str, ops: dict, n: int) -> list[str]:
    ids = [f"bench-person-{i:05d}" for i in range(n)]
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(timeout=60) as c:
        async def put(pid: str) -> None:
            async with sem:
                r = await c.put(f"{gw}/matching/v1/person_places/{pid}", headers=ops,
                                json={"grid_code": GRID, "community_code": GRID[:12]})
                assert r.status_code == 200, r.text
        await asyncio.gather(*(put(p) for p in ids))
    return ids


async def race(gw: str, staff: SharedSession, resource: str, first: str, persons: list[str], total: int,
               connections: int) -> dict:
    state = {"at": first, "done": 0, "conflicts": 0, "errors": Counter(), "next": 0, "renewed_on_401": 0,
             "retried": Counter()}

    async def client() -> None:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1)) as c:
            while True:
                if state["next"] >= total:   # one event loop: no await between the test and the increment
                    return
                k = state["next"]
                state["next"] += 1
                person = persons[k % len(persons)]
                refused = busy = 0
                while True:
                    at = state["at"]
                    headers = await staff.headers(c)
                    r = await c.post(f"{gw}/matching/v1/bookings", headers=headers,
                                     json={"resource_id": resource, "starts_at": at, "person_id": person})
                    if r.status_code == 201:
                        state["done"] += 1
                        break
                    body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
                    if r.status_code == 401 and refused == 0:   # revoked or expired early: renew once, try again
                        refused += 1
                        state["renewed_on_401"] += 1
                        await staff.renew(c, headers["Authorization"].removeprefix("Bearer "))
                        continue
                    if r.status_code in (503, 504) and busy < 3:   # SQLite's writer busy past its timeout
                        busy += 1   # (nothing written: held = booked below says so) → again, as an app would
                        state["retried"][r.status_code] += 1
                        await asyncio.sleep(float(r.headers.get("retry-after") or 1))
                        continue
                    if r.status_code == 409 and body.get("code") == "booking.slot_full":
                        state["conflicts"] += 1
                        nxt = body["next_free_slots"]
                        if not nxt:
                            state["errors"]["no free slot left"] += 1
                            return
                        if nxt[0]["starts_at"] > state["at"] or state["at"] == at:
                            state["at"] = max(state["at"], nxt[0]["starts_at"])
                        continue
                    code = body.get("code") or r.status_code
                    for e in body.get("errors") or ():
                        code = e.get("code", code)
                    if code == "booking.overlaps_own":   # this person holds the slot already: someone else books
                        state["errors"]["person already in the slot (another booked instead)"] += 1
                        k += 7919
                        person = persons[k % len(persons)]
                        continue
                    state["errors"][str(code)] += 1
                    break

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    state["seconds"] = time.monotonic() - started
    state["renewals"] = staff.renewals
    return state


def check(p, resource: str, backend: str, matching_url: str | None) -> dict:
    queries = {
        "slots": "SELECT s.starts_at, s.taken, s.capacity, (SELECT count(*) FROM bookings b WHERE b.slot_id = s.id "
                 "AND b.state IN ('confirmed', 'pending_approval', 'checked_in')) FROM booking_slots s "
                 "WHERE s.resource_id = '%s'" % resource,
        "twice": "SELECT count(*) FROM (SELECT slot_id, person_id FROM bookings WHERE resource_id = '%s' "
                 "GROUP BY slot_id, person_id HAVING count(*) > 1) t" % resource,
        "held": "SELECT person_id, starts_at FROM bookings WHERE resource_id = '%s' "
                "AND state IN ('confirmed', 'pending_approval', 'checked_in')" % resource,
    }
    if backend == "sqlite":
        rows = {k: p.sql("svc_matching", q) for k, q in queries.items()}
    else:
        import asyncpg
        from sqlalchemy.engine import make_url

        async def fetch():
            conn = await asyncpg.connect(make_url(matching_url).set(drivername="postgresql").render_as_string(
                hide_password=False))
            try:
                return {k: [tuple(r) for r in await conn.fetch(q)] for k, q in queries.items()}
            finally:
                await conn.close()
        rows = asyncio.run(fetch())
    slots = rows["slots"]
    weeks = Counter((person, _week(at)) for person, at in rows["held"])
    return {"slots": len(slots), "held": sum(r[3] for r in slots),
            "over_capacity": sum(1 for r in slots if r[3] > r[2] or r[1] > r[2]),
            "taken_mismatch": sum(1 for r in slots if r[1] != r[3]), "person_twice": rows["twice"][0][0],
            "persons": len({person for person, _ in weeks}), "most_in_a_week": max(weeks.values(), default=0),
            "over_weekly_limit": sum(1 for n in weeks.values() if n > WEEKLY_LIMIT)}


def _week(at) -> tuple[int, int]:
    """The Monday-to-Sunday week (Asia/Shanghai) of a booking's start, as the weekly limit counts it."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:   # SQLite keeps UTC without an offset
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(SHANGHAI).isocalendar()[:2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bookings", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--persons", type=int, default=2000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--pg-url", default=None)
    ap.add_argument("--access-ttl", type=int, default=None, metavar="SECONDS",
                    help="people's access-token lifetime (≥ 30): shorter than the run, to see the renewal at work")
    args = ap.parse_args()
    week = 7 * SLOTS_A_DAY * CAPACITY   # places filled in a week, in order: each resident books every --persons
    if -(-week // args.persons) > WEEKLY_LIMIT:
        ap.error(f"--persons {args.persons} would book someone more than {WEEKLY_LIMIT} times a week: "
                 f"at least {-(-week // WEEKLY_LIMIT)} needed")
    pg = args.pg_url or (os.environ.get("ONENET_TEST_POSTGRES_URL") if args.backend == "postgresql" else None)
    backend = "postgresql" if pg else "sqlite"
    matching_url = None
    if pg:
        from bench.intake import _pg
        from sqlalchemy.engine import make_url

        asyncio.run(_pg(pg, f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        asyncio.run(_pg(pg, f'CREATE DATABASE "{BENCH_DB}"'))
        matching_url = make_url(pg).set(drivername="postgresql+asyncpg", database=BENCH_DB).render_as_string(
            hide_password=False)
    var = Path(tempfile.mkdtemp(prefix="onenet-bench-bookings-"))
    print(f"[{backend}] starting the platform in {var} …", flush=True)
    p = start_platform(var, matching_url, args.access_ttl)
    try:
        session, ops = SharedSession(p.gw, p.sign_ins.answer("staff1")), p.token("ops1")
        staff = {"Authorization": f"Bearer {session.token}"}   # set-up, well within the token's life
        days = -(-args.bookings // (CAPACITY * SLOTS_A_DAY)) + 1
        r = httpx.post(p.gw + "/matching/v1/bookable_resources", headers=staff, timeout=30, json={
            "name": "幸福社区老年食堂（压测）", "kind": "canteen_seat", "place_code": "110105001001",
            "opening_hours": {k: ["08:00-20:00"] for k in ("workday", "weekend", "holiday")}, "slot_minutes": 30,
            "capacity": CAPACITY, "bookers": ["resident", "staff"], "advance_days": days + 1,
            "weekly_limit": WEEKLY_LIMIT})
        assert r.status_code == 201, r.text
        resource = r.json()["id"]
        persons = asyncio.run(put_persons(p.gw, ops, args.persons))
        slots = httpx.get(f"{p.gw}/matching/v1/bookable_resources/{resource}/slots", headers=staff, timeout=30,
                          params={"days": 2, "available": "true"}).json()
        print(f"[{backend}] {args.persons} persons placed; {args.connections} clients book {args.bookings} places "
              f"of {CAPACITY} per slot from {slots[0]['starts_at']} …", flush=True)
        load_before = loadavg()
        out = asyncio.run(race(p.gw, session, resource, slots[0]["starts_at"], persons, args.bookings,
                               args.connections))
        load_after = loadavg()
        verdict = check(p, resource, backend, matching_url)
    finally:
        p.stop()
        if pg:
            from bench.intake import _pg
            asyncio.run(_pg(pg, f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
    rate = out["done"] / out["seconds"] if out["seconds"] else 0.0
    print(f"[{backend}] booked {out['done']} in {out['seconds']:.1f} s = {rate:,.0f} bookings/s through the gateway; "
          f"409 slot_full met {out['conflicts']} times ({out['conflicts'] / max(1, out['done']):.2f} per booking); "
          f"other refusals {dict(out['errors']) or 'none'}; retried after 503/504 "
          f"{dict(out['retried']) or 'never'}; staff's access token renewed {out['renewals']} times "
          f"({out['renewed_on_401']} after a 401); load average {load_before} → {load_after}")
    ok = (verdict["over_capacity"] == verdict["taken_mismatch"] == verdict["person_twice"] == 0
          and verdict["over_weekly_limit"] == 0 and verdict["held"] == out["done"])
    print(f"[{backend}] check: {verdict['slots']} slots, {verdict['held']} held, over capacity "
          f"{verdict['over_capacity']}, taken ≠ held {verdict['taken_mismatch']}, a person twice in a slot "
          f"{verdict['person_twice']}; {verdict['persons']} residents, at most {verdict['most_in_a_week']} a week "
          f"(limit {WEEKLY_LIMIT}, over it {verdict['over_weekly_limit']}): "
          f"{'no double booking' if ok else 'DOUBLE BOOKING OR LOST PLACES'}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
