"""Benchmark: a broadcast to 10,000 residents handed to the emulated channels, and an alarm's first call.

    .venv/bin/python -m bench.notifications [--residents 10000] [--alarms 100] [--intake-connections 8]

The whole platform as `onenet up` starts it (real processes on loopback, bench.intake's start_platform, SQLite).
1. `--residents` generated residents (with mobiles) are imported into 幸福社区 (svc_residents' importer on the
   running service's database, as `onenet residents import` does). The import writes some 46,000 outbox rows
   (the other services' feeds: a PUT per person and feed, minutes on a loaded machine); the broadcast is measured
   once they are relayed and nothing is in flight (a broadcast on a running platform, not during a bulk import;
   `--during-import` first sends one beside that relay, for the ratio). 幸福's staff send a 停水通知 to the
   community; measured: from the POST until every message is in an inbox (the broadcast's fan-out) and until every
   outside delivery has been handed to the emulated SMS / 语音外呼 / push platforms (an attempt recorded), in
   messages/s, each figure with the load average (/proc/loadavg) it was measured at.
2. `--alarms` 一键呼叫 (one-key calls) by a resident through the gateway, one after another (with
   `--intake-connections` clients submitting the intake benchmark's requests through the gateway meanwhile);
   measured per alarm: from its arrival (the request's creation) to the call-out's first call attempt (the grid worker's voice + SMS + push
   handed to the notification engine), p50 / p99 / max. (A device's alarm takes the same path after one more hop.)
During the quiet hours (22:00–07:00 Asia/Shanghai hold a normal message, a broadcast's included, until 07:00) the
benchmark runs itself again under libfaketime in offset mode (Debian's `faketime -f +Ns`), it and every process of
the platform shifted alike to 10:00 the next morning (the services' clock, common.clock, asks the system; tokens,
one-time codes and timestamps agree; intervals are unchanged), so the broadcast is sent as by day; the first line
says which clock the run has.
3. `--engine-sample` (after the platform stops, on a copy of its svc_residents database): the engine's own cost,
   in process, no HTTP: the same broadcast text stored for that many residents one `notify()` at a time (the
   per-recipient path) and by `notify_many()` in chunks of 1,000 (the broadcast's path), messages/s each.
No wall-clock assertion; never part of `make test`.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from bench.support import loadavg
from common.clock import Clock

XF = "110105001001"
GRIDS = ["110105001001001", "110105001001002"]


def daytime_shift(margin: timedelta = timedelta(hours=1)) -> int:
    """Seconds the platform's clock moves so that a normal message goes out at once: 0 by day; inside the quiet
    hours, or so close to them that the run (the import's relay waited for) would reach them, to 10:00
    (Asia/Shanghai) after they end."""
    from svc_residents.notifications.channels import quiet_until

    now = Clock().now()
    end = quiet_until(now) or quiet_until(now + margin)
    return 0 if end is None else int((end + timedelta(hours=3) - now).total_seconds())


def import_residents(var: Path, n: int) -> float:
    from bench.import_residents import generate
    from common.db import Database
    from svc_residents.importer import import_file
    from svc_residents.protection import load

    async def go() -> float:
        db = Database(f"sqlite+aiosqlite:///{var}/svc_residents.db")
        keys = load(var / "keys" / "fields.json")
        path = var / "bench-ledger.csv"
        generate(path, n, GRIDS)
        t = time.perf_counter()
        r = await import_file(db, keys, path, batch_size=1000)
        await db.dispose()
        assert r.imported == n and not r.errors, (r.imported, r.errors[:3])
        return time.perf_counter() - t
    return asyncio.run(go())


def settle(p, timeout: float) -> tuple[float, int]:
    """Wait until svc_residents' outbox is relayed (the import writes some 46,000 events for the other services'
    feeds, a PUT per person and feed) and no delivery is in flight: (seconds waited, rows still pending)."""
    t0, pending = time.perf_counter(), -1
    while time.perf_counter() - t0 < timeout:
        (pending,), = p.sql("svc_residents", "SELECT (SELECT count(*) FROM outbox WHERE delivered_at IS NULL) + "
                                             "(SELECT count(*) FROM notification_deliveries WHERE state IN "
                                             "('queued', 'sending', 'sent', 'checking'))")
        if not pending:
            break
        time.sleep(1.0)
    return time.perf_counter() - t0, pending


def broadcast(p, staff: dict, timeout: float, text: str) -> dict:
    """`staff`: signed in just before (the wait for the relay outlasts an access token)."""
    t0 = time.perf_counter()
    r = httpx.post(f"{p.gw}/residents/v1/broadcasts", headers=staff, timeout=60, json={
        "title": "停水通知", "text": text, "place_code": XF})
    assert r.status_code == 202, r.text
    b = r.json()
    key = f"broadcast:{b['id']}"
    inbox_at = handed_at = None
    while time.perf_counter() - t0 < timeout:
        (messages,), = p.sql("svc_residents", "SELECT count(*) FROM notifications WHERE event_key = ?", key)
        (pending,), = p.sql("svc_residents", "SELECT count(*) FROM notification_deliveries d JOIN notifications n "
                                             "ON n.id = d.notification_id WHERE n.event_key = ? AND d.state IN "
                                             "('queued', 'sending')", key)
        if inbox_at is None and messages >= b["audience"]:
            inbox_at = time.perf_counter() - t0
        if inbox_at is not None and pending == 0:
            handed_at = time.perf_counter() - t0
            break
        time.sleep(0.2)
    outcomes = dict(p.sql("svc_residents", "SELECT a.outcome, count(*) FROM notification_attempts a JOIN "
                                           "notifications n ON n.id = a.notification_id WHERE n.event_key = ? "
                                           "GROUP BY a.outcome", key))
    channels = dict(p.sql("svc_residents", "SELECT a.channel, count(*) FROM notification_attempts a JOIN "
                                           "notifications n ON n.id = a.notification_id WHERE n.event_key = ? AND "
                                           "a.outcome IN ('sent', 'delivered') GROUP BY a.channel", key))
    return {"audience": b["audience"], "inbox_s": inbox_at, "handed_s": handed_at, "outcomes": outcomes,
            "channels": channels, "report": httpx.get(f"{p.gw}/residents/v1/broadcasts/{b['id']}", headers=staff,
                                                      timeout=30).json()}


def show(when: str, out: dict) -> None:
    n = out["audience"]
    print(f"broadcast {when} to {n:,} residents: in every inbox after {out['inbox_s']:.1f} s "
          f"({n / out['inbox_s']:,.0f} messages/s); every delivery handed to the emulated channels after "
          f"{out['handed_s']:.1f} s ({n / out['handed_s']:,.0f} messages/s) [load {loadavg()}]" if out["handed_s"]
          else f"broadcast {when} not finished within the timeout: {out}", flush=True)
    print(f"  attempts by outcome {out['outcomes']}, handed by channel {out['channels']}")
    print(f"  report: read {out['report'].get('read')}, channels {out['report'].get('channels')}, "
          f"not sent outside {out['report'].get('not_sent_outside')}", flush=True)


def intake_load(p, connections: int, stop: threading.Event) -> dict:
    """The intake benchmark's load (bench.intake: the grid worker's submissions through the gateway)."""
    from bench.intake import INTAKE_PATH, SUBMISSION, Result, _connection, request_maker

    port = int(p.gw.rsplit(":", 1)[1])
    make = request_maker(INTAKE_PATH, port, p.token("grid1"), SUBMISSION, idempotency=True)
    result = Result("intake")

    async def go() -> None:
        t0 = time.perf_counter()
        while not stop.is_set():
            await asyncio.gather(*(_connection(port, make, time.perf_counter() + 1.0, 201, result, True)
                                   for _ in range(connections)))
        result.seconds = time.perf_counter() - t0
    asyncio.run(go())
    return {"requests": result.requests, "rate": result.requests / result.seconds if result.seconds else 0}


def alarms(p, resident: dict, n: int) -> list[float]:
    """`n` 一键呼叫 (one-key calls) by 张伟 (resident1) through the gateway, one after another; per call the time
    from its arrival in svc_services to the call-out's first attempt (svc_services → emergency feed →
    svc_residents)."""
    sent: dict[str, float] = {}
    with httpx.Client(timeout=30) as c:
        for i in range(n):
            t = time.time()
            r = c.post(f"{p.gw}/services/v1/requests", headers=resident, json={
                "item_code": "YJ-HJ-001", "channel": "app", "description": f"一键呼叫（压测 {i}）",
                "location": {"grid": GRIDS[0]}})
            assert r.status_code == 201, r.text
            sent[r.json()["id"]] = t
            time.sleep(0.05)
    deadline = time.time() + 30
    made: dict[str, float] = {}
    while time.time() < deadline and len(made) < n:
        for rid, at in p.sql("svc_residents", "SELECT request_id, made_at FROM callout_attempts WHERE step = 0"):
            if rid in sent:
                made[rid] = datetime.fromisoformat(at).replace(tzinfo=timezone.utc).timestamp()
        time.sleep(0.2)
    # from the alarm's arrival (the request's created_at in svc_services): a client thread starved by the load's
    # event loop in this same process would otherwise add its own wait to the figure
    arrived = {rid: datetime.fromisoformat(at).replace(tzinfo=timezone.utc).timestamp() for rid, at in p.sql(
        "svc_services", "SELECT id, created_at FROM service_requests WHERE item_code = 'YJ-HJ-001'")}
    return sorted(made[rid] - arrived[rid] for rid in made if rid in arrived)


def engine_ratio(var: Path, n: int) -> dict:
    """notify() one at a time vs notify_many() in chunks, for the same `n` residents, on a copy of the database."""
    import shutil

    from sqlalchemy import select

    from common.db import Database
    from svc_residents.notifications.service import Message, notify, notify_many
    from svc_residents.persons.models import Person

    copy = var / "engine-bench.db"
    shutil.copyfile(var / "svc_residents.db", copy)
    words = {"title": "停水通知", "text": "明日停水，请提前储水。"}
    now = Clock().now()  # the clock the services take (common.clock), as the platform beside it does

    async def go() -> dict:
        db = Database(f"sqlite+aiosqlite:///{copy}")
        async with db.session() as s:
            people = [f"person:{i}" for i in (await s.execute(select(Person.id).where(Person.merged_into.is_(None))
                                                              .order_by(Person.id).limit(n))).scalars()]
        t = time.perf_counter()
        for i in range(0, len(people), 100):
            async with db.session() as s, s.begin():
                for r in people[i:i + 100]:
                    await notify(s, recipient=r, template="notice.general", variables=words,
                                 event_key="engine-one", now=now)
        one = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(0, len(people), 1000):
            async with db.session() as s, s.begin():
                await notify_many(s, [Message(r, "notice.general", words, "engine-many") for r in people[i:i + 1000]],
                                  now=now)
        many = time.perf_counter() - t
        await db.dispose()
        return {"n": len(people), "one_per_s": len(people) / one, "many_per_s": len(people) / many}
    try:
        return asyncio.run(go())
    finally:
        copy.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--residents", type=int, default=10_000)
    ap.add_argument("--alarms", type=int, default=100)
    ap.add_argument("--intake-connections", type=int, default=8, help="0: the alarms without the intake load")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--during-import", action="store_true",
                    help="first a broadcast beside the import's outbox relay, then the one on the idle platform")
    ap.add_argument("--settle-timeout", type=float, default=1200.0)
    ap.add_argument("--engine-sample", type=int, default=2000, help="0: skip the in-process engine comparison")
    args = ap.parse_args()
    from bench.intake import start_platform

    if shift := daytime_shift():  # under faketime the hour is 10:00: this branch is not taken again
        if shutil.which("faketime") is None:
            raise SystemExit("inside the quiet hours the broadcast would wait until 07:00: install faketime")
        print(f"quiet hours: running again with the clock {shift:+d} s ahead (10:00 Asia/Shanghai)", flush=True)
        os.execvp("faketime", ["faketime", "-f", f"+{shift}s", sys.executable, "-m", "bench.notifications",
                               *sys.argv[1:]])
    var = Path(tempfile.mkdtemp(prefix="onenet-bench-notifications-"))
    from common.clock import SHANGHAI

    faked = f" (libfaketime {os.environ['FAKETIME']}, the platform alike)" if os.environ.get("FAKETIME") else ""
    print(f"clock: {Clock().now().astimezone(SHANGHAI):%H:%M} Asia/Shanghai{faked}, outside the quiet hours; "
          f"starting the platform in {var} … [load {loadavg()}]", flush=True)
    p = start_platform(var, databases={}, routed="svc_residents")
    try:
        took = import_residents(var, args.residents)
        print(f"imported {args.residents:,} residents into 幸福社区 in {took:.1f} s", flush=True)
        first = None
        if args.during_import:
            first = broadcast(p, p.token("staff1"), args.timeout, "因管道检修，明日 9:00–17:00 幸福社区停水，请提前储水。")
            show("beside the import's relay", first)
        waited, left = settle(p, args.settle_timeout)
        print(f"the import's events relayed and the deliveries settled after {waited:.1f} s more"
              f"{f' ({left:,} rows still pending: timed out)' if left else ''} [load {loadavg()}]", flush=True)
        out = broadcast(p, p.token("staff1"), args.timeout, "因管道检修，后天 9:00–17:00 幸福社区停水，请提前储水。")
        show("on the running platform, outbox idle", out)
        if first and first["handed_s"] and out["handed_s"]:
            print(f"  handed rate idle / beside the import's relay: {first['handed_s'] / out['handed_s']:.2f} ×",
                  flush=True)
        stop, load_out = threading.Event(), {}
        loader = None
        if args.intake_connections:
            loader = threading.Thread(target=lambda: load_out.update(intake_load(p, args.intake_connections, stop)))
            loader.start()
            time.sleep(2)
        try:
            lat = alarms(p, p.token("resident1"), args.alarms)
        finally:
            stop.set()
            if loader:
                loader.join()
        if lat:
            pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]  # noqa: E731
            print(f"alarm → first call attempt over {len(lat)} alarms"
                  f"{' under intake load ' + format(load_out.get('rate', 0), ',.0f') + ' req/s' if loader else ''}: "
                  f"p50 {pick(0.5) * 1000:.0f} ms, p99 {pick(0.99) * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms "
                  f"[load {loadavg()}]",
                  flush=True)
        else:
            print("no first call attempt seen for the alarms")
    finally:
        p.stop()
    if args.engine_sample:
        e = engine_ratio(var, args.engine_sample)
        print(f"engine in process, {e['n']:,} residents: notify() one at a time {e['one_per_s']:,.0f} messages/s, "
              f"notify_many() in chunks of 1,000 {e['many_per_s']:,.0f} messages/s "
              f"({e['many_per_s'] / e['one_per_s']:.1f} ×)", flush=True)


if __name__ == "__main__":
    main()
