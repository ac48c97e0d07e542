"""The emergency call-out chain under the injected clock (no sleeps): svc_services' snapshot of an emergency starts
it with the grid worker's call at once; every 60 s without an acknowledgement the next one on duty in the roster is
called (a duty nobody holds is recorded and skipped); an acknowledgement stops it, and so does the request being
taken up in svc_services. Each step and the acknowledgement are `callout.changed` rows for svc_services' timeline.
Who may start, read and acknowledge follows the policy (svc_residents/callout/router.py, service.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from svc_residents.callout.scheduler import run_callout_scan
from tests.svc_residents.conftest import GRID_A1, GRID_B1, START

REQ = "0193a000-0000-7000-8000-00000000e001"
XF, STREET = "110105001001", "110105001"


@pytest.fixture(autouse=True)
def _no_background_scan(monkeypatch):
    # the app's own call-out scheduler runs on real time; these tests drive run_callout_scan with the app's clock
    monkeypatch.setenv("ONENET_CALLOUT_SCAN_ENABLED", "false")


def snapshot(**over):
    return {"state": "submitted", "grid": GRID_A1, "community": XF, "person_id": None, "item_code": "YJ-HJ-001",
            "channel": "iot", "submitted_at": START.isoformat(), "version": 1, **over}


def source(auth):
    return auth(role="system", user="svc_services", member="svc_services")


async def roster(client, as_, place, duty, name, user_id, hours=(0, 24)):
    r = await client.post("/residents/v1/rosters", headers=as_("street1"), json={
        "place_code": place, "duty": duty, "name": name, "user_id": user_id, "phone": "13800000009",
        "starts_at": (START + timedelta(hours=hours[0])).isoformat(),
        "ends_at": (START + timedelta(hours=hours[1])).isoformat()})
    assert r.status_code == 201, r.text


async def feed_rows(client):
    from svc_residents.base import OutboxEvent

    async with client.app.state.db.session() as s:
        rows = (await s.execute(select(OutboxEvent).where(OutboxEvent.type == "callout.changed")
                                .order_by(OutboxEvent.id))).scalars()
        return [r.data for r in rows]


async def notes(client):
    from svc_residents.notifications.models import Notification

    async with client.app.state.db.session() as s:
        return list((await s.execute(select(Notification).where(Notification.event_key.startswith("callout:"))
                                     .order_by(Notification.id))).scalars())


async def deliveries(client, note_id):
    from svc_residents.notifications.models import Delivery

    async with client.app.state.db.session() as s:
        return list((await s.execute(select(Delivery.channels).where(Delivery.notification_id == note_id)))
                    .scalars())


async def scan(client):
    return await run_callout_scan(client.app.state.db, client.app.state.clock, 60.0)


async def test_the_chain_escalates_every_minute_until_someone_acknowledges(seeded, as_, auth):
    clock = seeded.app.state.clock
    await roster(seeded, as_, GRID_A1, "backup_worker", "李备岗", "grid2")
    await roster(seeded, as_, STREET, "street_duty", "王主任", "street1")   # no community duty phone on roster
    r = await seeded.put("/residents/v1/staff_contacts/grid1", headers=as_("staff1"), json={
        "role": "grid_worker", "scope": f"grid:{GRID_A1}", "display_name": "张网格", "phone": "13900001111"})
    assert r.status_code in (200, 201), r.text
    r = await seeded.put(f"/residents/v1/emergencies/{REQ}", json=snapshot(), headers=source(auth))
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["state"] == "calling" and c["step"] == 1 and c["attempts"][0]["duty"] == "grid_worker"
    assert c["attempts"][0]["targets"][0]["user_id"] == "grid1"
    assert c["attempts"][0]["channels"] == ["voice", "sms", "push"]
    assert c["attempts"][0]["made_at"] == c["alarm_at"]          # the first call in the alarm's own transaction
    # handed to the notification engine in that transaction: voice, SMS and push at once, as an emergency
    (note,) = await notes(seeded)
    assert note.recipient == "user:grid1" and note.urgency == "emergency" and "幸福一网格" in note.body
    assert sorted(d for ds in await deliveries(seeded, note.id) for d in ds) == ["push", "sms", "voice"]
    # the same snapshot again (a redelivery): nothing new
    r = await seeded.put(f"/residents/v1/emergencies/{REQ}", json=snapshot(), headers=source(auth))
    assert r.status_code == 200 and len(r.json()["attempts"]) == 1
    clock.advance(seconds=59)
    assert await scan(seeded) == 0
    clock.advance(seconds=1)
    assert await scan(seeded) == 1 and await scan(seeded) == 0              # the backup worker, once
    clock.advance(seconds=60)
    assert await scan(seeded) == 1                                          # community: nobody → the street
    c = (await seeded.get(f"/residents/v1/callouts/{REQ}", headers=as_("staff1"))).json()
    assert [(a["duty"], a["outcome"]) for a in c["attempts"]] == [
        ("grid_worker", "called"), ("backup_worker", "called"), ("community_duty", "nobody_on_duty"),
        ("street_duty", "called")]
    # 安康's staff do not see it; a resident may not acknowledge; the street duty officer acknowledges
    assert (await seeded.get(f"/residents/v1/callouts/{REQ}", headers=as_("staff2"))).status_code == 404
    assert (await seeded.post(f"/residents/v1/callouts/{REQ}/acknowledge", json={},
                              headers=as_("staff2"))).status_code == 404
    assert (await seeded.post(f"/residents/v1/callouts/{REQ}/acknowledge", json={},
                              headers=as_("ops1"))).status_code == 403
    clock.advance(seconds=10)
    r = await seeded.post(f"/residents/v1/callouts/{REQ}/acknowledge", json={"note": "正赶往现场"},
                          headers=as_("street1"))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "acknowledged" and r.json()["acknowledged_by"] == "street1"
    r = await seeded.post(f"/residents/v1/callouts/{REQ}/acknowledge", json={}, headers=as_("grid1"))
    assert r.status_code == 409 and r.json()["code"] == "callout.acknowledged"
    clock.advance(seconds=600)
    assert await scan(seeded) == 0
    rows = await feed_rows(seeded)
    assert [(d["kind"], d["duty"], d["outcome"]) for d in rows] == [
        ("call", "grid_worker", "called"), ("call", "backup_worker", "called"),
        ("call", "community_duty", "nobody_on_duty"), ("call", "street_duty", "called"),
        ("acknowledge", "street_duty", "acknowledged")]
    assert rows[-1]["actor"] == "street1" and rows[-1]["role"] == "street_staff" and rows[-1]["note"] == "正赶往现场"
    assert all("phone" not in str(d) for d in rows)                   # the timeline is read by the requester too
    assert [n.recipient for n in await notes(seeded)] == ["user:grid1", "user:grid2", "user:street1"]
    listed = (await seeded.get("/residents/v1/callouts", headers=as_("grid1"))).json()["items"]
    assert [x["request_id"] for x in listed] == [REQ]
    assert (await seeded.get("/residents/v1/callouts", headers=as_("grid3"))).json()["items"] == []


async def test_the_chain_goes_round_and_stops_when_the_request_is_taken_up(seeded, as_, auth):
    clock = seeded.app.state.clock
    r = await seeded.put(f"/residents/v1/emergencies/{REQ}", json=snapshot(grid=GRID_B1, community=GRID_B1[:12]),
                         headers=source(auth))
    assert r.status_code == 200
    clock.advance(seconds=60)
    assert await scan(seeded) == 1   # nobody on duty anywhere: one round recorded, back to the grid worker
    c = (await seeded.get(f"/residents/v1/callouts/{REQ}", headers=as_("ops1"))).json()
    assert [a["duty"] for a in c["attempts"]] == ["grid_worker", "backup_worker", "community_duty", "street_duty",
                                                  "grid_worker"]
    # accepted in svc_services by 安康's staff: the next snapshot stops the chain; an older one changes nothing
    r = await seeded.put(f"/residents/v1/emergencies/{REQ}", json=snapshot(state="accepted", version=3,
                                                                           grid=GRID_B1, community=GRID_B1[:12]),
                         headers=source(auth))
    assert r.json()["state"] == "stopped"
    r = await seeded.put(f"/residents/v1/emergencies/{REQ}", json=snapshot(state="submitted", version=2,
                                                                           grid=GRID_B1, community=GRID_B1[:12]),
                         headers=source(auth))
    assert r.json()["state"] == "stopped"
    clock.advance(seconds=120)
    assert await scan(seeded) == 0
    r = await seeded.post(f"/residents/v1/callouts/{REQ}/acknowledge", json={}, headers=as_("grid3"))
    assert r.status_code == 409 and r.json()["code"] == "callout.stopped"
    # a request already taken up before svc_residents heard of it starts nothing
    other = REQ[:-1] + "2"
    r = await seeded.put(f"/residents/v1/emergencies/{other}", json=snapshot(state="accepted", version=2),
                         headers=source(auth))
    assert r.status_code == 204
    assert (await seeded.get(f"/residents/v1/callouts/{other}", headers=as_("ops1"))).status_code == 404


async def test_bad_snapshots_and_callers_start_nothing(seeded, as_, auth):
    url = f"/residents/v1/emergencies/{REQ}"
    for who in (auth(role="system", user="kiosk", member="kiosk"), as_("staff1"), as_("grid1"), as_("resident1")):
        r = await seeded.put(url, json=snapshot(), headers=who)
        assert r.status_code == 403, r.text
    for body, field in ((snapshot(grid="A1"), "grid"), (snapshot(submitted_at="2026-11-23 10:00"), "submitted_at"),
                        (snapshot(version=0), "version"), (snapshot(extra=1), "extra")):
        r = await seeded.put(url, json=body, headers=source(auth))
        assert r.status_code == 422 and any(e["field"].endswith(field) for e in r.json()["errors"]), r.text
    assert (await seeded.put(url, json=snapshot())).status_code == 401          # anonymous
    assert (await seeded.get(f"/residents/v1/callouts/{REQ}", headers=as_("ops1"))).status_code == 404
    assert await feed_rows(seeded) == []
    r = await seeded.post(f"/residents/v1/callouts/{REQ}/acknowledge", json={}, headers=as_("grid1"))
    assert r.status_code == 404 and r.json()["code"] == "callout.not_found"
    for who in ("resident1", "dept_mz", "provider1", "portal"):
        assert (await seeded.get("/residents/v1/callouts", headers=as_(who))).status_code == 403, who


async def test_an_emergency_is_written_ahead_of_the_bulk_writers_queued_at_the_write_gate(seeded, auth):
    """SQLite takes one writer at a time and its writers queue at the write gate (common/write_gate.py): while a
    broadcast or the dispatcher holds it with others queued, an emergency's snapshot waits only for the holder."""
    import asyncio

    from svc_residents.callout.models import Callout

    db = seeded.app.state.db
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL has no write gate: its row locks order the writers")
    held, release, seen = asyncio.Event(), asyncio.Event(), []

    async def holder():
        async with db.write_gate():
            held.set()
            await release.wait()

    async def bulk():
        async with db.write_gate(), db.session() as s:
            seen.append(await s.get(Callout, REQ))  # what the bulk writer finds when its turn comes

    tasks = [asyncio.create_task(holder())]
    await held.wait()
    tasks.append(asyncio.create_task(bulk()))
    await asyncio.sleep(0)
    put = asyncio.create_task(seeded.put(f"/residents/v1/emergencies/{REQ}", json=snapshot(), headers=source(auth)))
    for _ in range(500):
        if db.urgent_writer_waiting:
            break
        await asyncio.sleep(0.01)
    assert db.urgent_writer_waiting, "the emergency's write did not queue at the gate"
    release.set()
    r = await put
    await asyncio.gather(*tasks)
    assert r.status_code == 200, r.text
    assert seen and seen[0] is not None  # the call-out was written before the bulk writer's turn
