"""The call-out across svc_services and svc_residents, through the outbox feeds and the real relays (ADR 0007):
a 一键呼叫 submitted in svc_services reaches svc_residents as an `emergency.` snapshot and is called at once; each
call and the acknowledgement come back as `callout.` entries on the request's timeline; the acknowledgement
accepts the request as the person who acknowledged, at that moment, so `accepted_at`, the SLA scan and the
emergency acknowledge KPI (request.accepted) measure alarm → acknowledgement. Two call-out schedulers on one
PostgreSQL database make each step once."""
from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from common.clock import FrozenClock
from common.db import Database
from common.outbox import OutboxRelay, TypeFilter
from common.outbox_senders import FeedSender
from svc_residents.callout.scheduler import run_callout_scan
from tests.conftest import gateway_auth, start_service
from tests.svc_residents.conftest import GRID_A1, START

ALARM = {"code": "YJ-HJ-001", "name": "一键呼叫（紧急求助）", "category": "emergency", "tier": "basic",
         "department": "community", "response_hours": 0, "resolution_hours": 2, "emergency": True,
         "channels": ["app", "kiosk", "phone", "iot"]}


@pytest.fixture(autouse=True)
def _no_background_scan(monkeypatch):
    # the app's own call-out scheduler runs on real time; these tests drive run_callout_scan with the app's clock
    monkeypatch.setenv("ONENET_CALLOUT_SCAN_ENABLED", "false")


@pytest.fixture
async def services(db_url, jwks, auth):
    """svc_services with 幸福一网格 and the alarm item, on its own database beside svc_residents'."""
    url = db_url.replace("test.db", "services.db") if db_url.startswith("sqlite") else db_url + "_svc"
    async with AsyncExitStack() as stack:
        if url.startswith("postgresql"):
            from tests.conftest import POSTGRES_URL, _create_pg_database

            url, drop = await _create_pg_database(POSTGRES_URL)
            stack.push_async_callback(drop)
        c = await start_service(stack, "svc_services", url, jwks, sla_scan_enabled=False)
        c.app.state.clock = FrozenClock(START)
        ops = auth(role="ops", user="ops1")
        assert (await c.put(f"/services/v1/grids/{GRID_A1}", json={"name": "幸福一网格", "lat": 39.921,
                                                                    "long": 116.443}, headers=ops)).status_code == 200
        r = await c.post("/services/v1/catalogue/items", json=ALARM, headers=ops)
        assert r.status_code == 201, r.text
        yield c


def relay(source, target, prefix: str, path: str, token: str):
    async def provider():
        return token

    sender = FeedSender(f"http://{prefix.rstrip('.')}{path}", provider,
                        transport=httpx.ASGITransport(app=target.app), auth=gateway_auth())
    from importlib import import_module

    model = import_module(f"{source.app.state.settings.service_name}.base").OutboxEvent
    return OutboxRelay(source.app.state.db, model, source=source.app.state.settings.service_name, send=sender,
                       clock=source.app.state.clock, types=TypeFilter(include=(prefix,))), sender


async def drain(*relays):
    for r in relays:
        while await r.run_once():
            pass


async def test_an_alarm_is_called_out_and_acknowledged_on_the_requests_timeline(seeded, services, as_, auth):
    from svc_services.base import OutboxEvent as ServicesEvent

    rclock, sclock = seeded.app.state.clock, services.app.state.clock
    sclock.set(rclock.now())
    tok = lambda member: auth(role="system", user=member, member=member)["Authorization"].split()[1]  # noqa: E731
    to_residents, s1 = relay(services, seeded, "emergency.", "/residents/v1/emergencies", tok("svc_services"))
    to_services, s2 = relay(seeded, services, "callout.", "/services/v1/emergency_log", tok("svc_residents"))
    resident = auth(role="resident", user="resident1", scopes=["person:p-1"])
    r = await services.post("/services/v1/requests", headers=resident, json={
        "item_code": "YJ-HJ-001", "channel": "app", "description": "一键呼叫", "location": {"grid": GRID_A1}})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    await drain(to_residents)
    c = (await seeded.get(f"/residents/v1/callouts/{rid}", headers=as_("grid1"))).json()
    assert c["state"] == "calling" and c["attempts"][0]["targets"][0]["user_id"] == "grid1"
    rclock.advance(seconds=60)
    sclock.set(rclock.now())
    assert await run_callout_scan(seeded.app.state.db, rclock, 60.0) == 1       # nobody else on duty: a round
    rclock.advance(seconds=5)
    sclock.set(rclock.now())
    r = await seeded.post(f"/residents/v1/callouts/{rid}/acknowledge", json={"note": "马上到"},
                          headers=as_("grid1"))
    assert r.status_code == 200, r.text
    sclock.advance(seconds=1)                                                # the relay delivers a moment later
    await drain(to_services, to_residents)
    tl = (await services.get(f"/services/v1/requests/{rid}/timeline", headers=resident)).json()
    assert [t["action"] for t in tl] == ["submit", "call", "call", "call", "call", "call", "acknowledge", "accept"]
    assert tl[1]["note"].startswith("第 1 轮呼叫网格员（grid1）") and "语音外呼、短信、App 推送" in tl[1]["note"]
    assert "无人在岗" in tl[2]["note"] and tl[6]["actor"] == "svc_residents/grid1" and "马上到" in tl[6]["note"]
    req = (await services.get(f"/services/v1/requests/{rid}", headers=resident)).json()
    assert req["state"] == "accepted"
    assert req["accepted_at"].startswith((START + timedelta(seconds=65)).isoformat()[:19])
    async with services.app.state.db.session() as s:
        events = (await s.execute(select(ServicesEvent.type, ServicesEvent.occurred_at, ServicesEvent.data)
                                  .where(ServicesEvent.subject == rid).order_by(ServicesEvent.id))).all()
    accepted = [e for e in events if e.type == "request.accepted"]
    assert len(accepted) == 1 and accepted[0].occurred_at == START + timedelta(seconds=65)   # the KPI's ack time
    # the accepted snapshot went back to svc_residents: the call-out stays acknowledged, nothing more is called
    assert [e.type for e in events].count("emergency.changed") == 2
    c = (await seeded.get(f"/residents/v1/callouts/{rid}", headers=as_("grid1"))).json()
    assert c["state"] == "acknowledged" and len(c["attempts"]) == 5
    # redelivering every entry writes nothing twice
    from svc_residents.base import OutboxEvent as ResidentsEvent

    async with seeded.app.state.db.session() as s:
        rows = (await s.execute(select(ResidentsEvent).where(ResidentsEvent.type == "callout.changed"))).scalars()
        entries = [(r.subject, r.data) for r in rows]
    for subject, data in entries:
        r = await services.put(f"/services/v1/emergency_log/{subject}", json=data,
                               headers=auth(role="system", user="svc_residents", member="svc_residents"))
        assert r.status_code == 200, r.text
    assert len((await services.get(f"/services/v1/requests/{rid}/timeline", headers=resident)).json()) == len(tl)
    # only svc_residents (and ops) write call-out entries; a normal request has none
    bad = {**entries[0][1], "request_id": rid}
    for who in (auth(role="system", user="kiosk", member="kiosk"), auth(role="grid_worker", user="grid1",
                                                                       scopes=[f"grid:{GRID_A1}"]), resident):
        assert (await services.put("/services/v1/emergency_log/x1", json=bad, headers=who)).status_code == 403
    sysres = auth(role="system", user="svc_residents", member="svc_residents")
    r = await services.put("/services/v1/emergency_log/x2", json={**bad, "request_id": "nope"}, headers=sysres)
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("request_id")
    r = await services.put("/services/v1/emergency_log/x3", json={**bad, "kind": "hangup"}, headers=sysres)
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("kind")
    await s1.aclose()
    await s2.aclose()


@pytest.fixture
def postgres_only(backend):
    """Listed first, so a SQLite run skips before any app is built."""
    if backend != "postgresql":
        pytest.skip("row claims with FOR UPDATE SKIP LOCKED are a PostgreSQL feature; SQLite runs one scheduler")


async def test_two_schedulers_make_each_step_once(postgres_only, seeded, auth, db_url):
    clock = seeded.app.state.clock
    src = auth(role="system", user="svc_services", member="svc_services")
    ids = [f"0193a000-0000-7000-8000-0000000{i:05d}" for i in range(12)]
    for rid in ids:
        r = await seeded.put(f"/residents/v1/emergencies/{rid}", headers=src, json={
            "state": "submitted", "grid": GRID_A1, "community": GRID_A1[:12], "item_code": "YJ-HJ-001",
            "channel": "iot", "submitted_at": START.isoformat(), "version": 1})
        assert r.status_code == 200
    db_a, db_b = seeded.app.state.db, Database(db_url)   # a second replica: its own engine and pool
    try:
        for _ in range(2):
            clock.advance(seconds=60)
            made = await asyncio.gather(run_callout_scan(db_a, clock, 60.0), run_callout_scan(db_b, clock, 60.0))
            assert sum(made) == len(ids)                  # each call-out stepped once, between the two
        from svc_residents.callout.models import CalloutAttempt

        async with db_a.session() as s:
            steps = Counter((await s.execute(select(CalloutAttempt.request_id))).scalars())
        # per call-out: the grid worker at the start, then 2 rounds each of backup, community, street, grid
        assert set(steps.values()) == {1 + 2 * 4} and set(steps) == set(ids)
    finally:
        await db_b.dispose()
