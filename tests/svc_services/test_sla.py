from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import select

from svc_services.sla.calendar import WorkCalendar
from svc_services.sla.scan import run_sla_scan
from tests.svc_services.conftest import OPS, PROVIDER, RES1, STAFF, move, submit

PROV = {"kind": "provider", "id": "org-1"}


def test_working_hours_skip_nights_weekends_and_holidays():
    cal = WorkCalendar(["09:00-12:00", "13:30-17:30"])
    # Friday 2026-03-06 16:00 Shanghai + 12 working hours → Tuesday 14:00 Shanghai
    start = datetime(2026, 3, 6, 8, 0, tzinfo=timezone.utc)
    assert cal.add(start, 12, working=True) == datetime(2026, 3, 10, 6, 0, tzinfo=timezone.utc)
    assert cal.add(start, 12, working=False) == datetime(2026, 3, 6, 20, 0, tzinfo=timezone.utc)
    # National Day (chinese-calendar data): 2026-10-01 is a holiday, an ordinary Thursday otherwise
    assert not cal.is_workday(date(2026, 10, 1))
    # lunch break is not counted: 11:00 + 2 h → 14:30
    assert cal.add(datetime(2026, 3, 9, 3, 0, tzinfo=timezone.utc), 2, working=True) == \
        datetime(2026, 3, 9, 6, 30, tzinfo=timezone.utc)
    # local data overrides: an extra holiday, and a make-up Saturday
    cal2 = WorkCalendar(["09:00-17:00"], holidays=["2026-03-09"], workdays=["2026-03-07"])
    assert cal2.is_workday(date(2026, 3, 7)) and not cal2.is_workday(date(2026, 3, 9))
    # years outside the package's data fall back to Monday–Friday
    assert WorkCalendar().is_workday(date(2031, 6, 2)) and not WorkCalendar().is_workday(date(2031, 6, 1))


async def _get(client, auth, rid):
    return (await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()


async def test_deadlines_on_acceptance_in_working_hours(ready, auth, clock):
    client = ready
    rid = (await submit(client, auth)).json()["id"]  # repair: 12 h response, 72 h resolution, working hours
    r = await move(client, auth, rid, "accept", STAFF)
    body = r.json()
    # accepted Monday 10:00 Shanghai: 6 h Monday + 3 h + 3 h Tuesday → Tuesday 16:30; 72 → ten working days later
    assert body["response_due_at"] == "2026-03-03T08:30:00Z"
    assert datetime.fromisoformat(body["resolution_due_at"]) > datetime(2026, 3, 12, tzinfo=timezone.utc)


async def test_overdue_escalates_up_the_ladder(ready, auth, clock):
    client = ready
    settings = client.app.state.settings
    db = client.app.state.db
    rid = (await submit(client, auth, item_code="YL-ZC-001", attributes={"meal_time": "lunch"})).json()["id"]
    await move(client, auth, rid, "accept", STAFF)  # 2 h response, 48 h resolution, calendar hours
    report = await run_sla_scan(db, clock, settings)
    assert report.escalated == [] and report.overdue == []
    clock.advance(hours=2, minutes=1)
    report = await run_sla_scan(db, clock, settings)
    assert report.overdue == [rid] and report.escalated == [rid]
    body = await _get(client, auth, rid)
    assert body["overdue"] and body["escalation_level"] == "community" and body["state"] == "escalated"
    entry = body["timeline"][-1]
    assert entry["action"] == "escalate" and entry["role"] == "system" and "超过响应时限" in entry["note"]
    # nothing more until the next escalation interval
    clock.advance(hours=1)
    assert (await run_sla_scan(db, clock, settings)).escalated == []
    clock.advance(hours=settings.escalation_interval_hours)
    assert (await run_sla_scan(db, clock, settings)).escalated == [rid]
    clock.advance(hours=settings.escalation_interval_hours)
    await run_sla_scan(db, clock, settings)
    body = await _get(client, auth, rid)
    assert body["escalation_level"] == "department"
    assert [t["data"].get("level_to") for t in body["timeline"] if t["action"] == "escalate"] == \
        ["community", "street", "department"]
    clock.advance(days=10)
    assert (await run_sla_scan(db, clock, settings)).escalated == []  # top of the ladder
    from svc_services.models import OutboxEvent
    async with db.session() as s:
        types = [e.type for e in (await s.execute(select(OutboxEvent).where(OutboxEvent.subject == rid)
                                                  .order_by(OutboxEvent.id))).scalars()]
    assert types.count("request.overdue") == 2 and types.count("request.escalated") == 3


async def test_emergency_ack_and_start_breaches(ready, auth, clock):
    client = ready
    db, settings = client.app.state.db, client.app.state.settings
    rid = (await submit(client, auth, item_code="YJ-HJ-001", description="一键呼叫")).json()["id"]
    clock.advance(seconds=59)
    assert (await run_sla_scan(db, clock, settings)).escalated == []
    clock.advance(seconds=2)
    report = await run_sla_scan(db, clock, settings)
    assert report.escalated == [rid]
    body = await _get(client, auth, rid)
    assert body["escalation_level"] == "community" and "超过响应时限" in body["timeline"][-1]["note"]
    # acknowledged late, still not started at 3 minutes → escalates again
    assert (await move(client, auth, rid, "accept", STAFF)).status_code == 200
    clock.advance(minutes=2)
    report = await run_sla_scan(db, clock, settings)
    assert report.escalated == [rid]
    body = await _get(client, auth, rid)
    assert body["escalation_level"] == "street" and "处置时限" in body["timeline"][-1]["note"]


async def test_emergency_handled_in_time_is_not_escalated(ready, auth, clock):
    client = ready
    db, settings = client.app.state.db, client.app.state.settings
    rid = (await submit(client, auth, item_code="YJ-HJ-001", description="一键呼叫")).json()["id"]
    clock.advance(seconds=30)
    await move(client, auth, rid, "accept", STAFF)
    clock.advance(seconds=60)
    await move(client, auth, rid, "start", STAFF)
    clock.advance(minutes=5)
    assert (await run_sla_scan(db, clock, settings)).escalated == []
    assert (await _get(client, auth, rid))["overdue"] is False


async def test_auto_close_after_n_days(ready, auth, clock):
    client = ready
    db, settings = client.app.state.db, client.app.state.settings
    rid = (await submit(client, auth)).json()["id"]
    for action, extra in (("accept", {}), ("dispatch", {"assignee": PROV})):
        await move(client, auth, rid, action, STAFF, **extra)
    for action, extra in (("claim", {}), ("start", {}), ("resolve", {"note": "修好了"})):
        await move(client, auth, rid, action, PROVIDER, **extra)
    clock.advance(days=settings.auto_close_days - 1)
    assert (await run_sla_scan(db, clock, settings)).closed == []
    clock.advance(days=1)
    assert (await run_sla_scan(db, clock, settings)).closed == [rid]
    body = await _get(client, auth, rid)
    assert body["state"] == "closed" and "自动关闭" in body["timeline"][-1]["note"]
    r = await move(client, auth, rid, "rate", RES1, rating=5)
    assert r.status_code == 409


async def test_scan_loses_cleanly_to_a_concurrent_staff_action(ready, auth, clock):
    client = ready
    db, settings = client.app.state.db, client.app.state.settings
    rid = (await submit(client, auth, item_code="YJ-HJ-001", description="一键呼叫")).json()["id"]
    clock.advance(minutes=2)
    import asyncio
    report, resp = await asyncio.gather(run_sla_scan(db, clock, settings),
                                        move(client, auth, rid, "accept", STAFF, version=1))
    body = await _get(client, auth, rid)
    assert body["version"] == len(body["timeline"])
    # exactly one of them moved the request: the staff acknowledgement or the scheduler's escalation
    assert (resp.status_code == 200) != (rid in report.escalated)
    assert resp.status_code in (200, 409)
