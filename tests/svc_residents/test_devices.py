"""Alarm devices: registered and bound by staff of the place; each reports only through its own IoT platform (a
member system); an alarm becomes an emergency request at the person's place in a real svc_services through the
alarm feed (once per device event, once per alarm however often delivered) and reaches the call-out through the
emergency feed; a missed heartbeat raises a check task for the
grid's workers and a lone elderly person's silent device a welfare check, once each, under the injected clock.
Unknown devices, alarms from an unbound device and callers outside the scope: clear problems, nothing written."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from svc_residents.devices.scan import run_device_scan
from tests.svc_residents.conftest import GRID_A1, H, P
from tests.svc_residents.test_callout_feeds import drain, relay
from tests.svc_residents.test_callout_feeds import services  # noqa: F401  (the svc_services fixture)

DEVICES = "/residents/v1/devices"


@pytest.fixture(autouse=True)
def _no_background_scans(monkeypatch):
    monkeypatch.setenv("ONENET_CALLOUT_SCAN_ENABLED", "false")
    monkeypatch.setenv("ONENET_DEVICE_SCAN_ENABLED", "false")


def hub(auth, member="iot-hub"):
    return auth(role="system", user=member, member=member)


async def count(client, model, *where) -> int:
    async with client.app.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


def tok(auth, member):
    return auth(role="system", user=member, member=member)["Authorization"].split()[1]


async def test_an_alarm_becomes_an_emergency_at_the_persons_place_once(seeded, services, as_, auth):  # noqa: F811
    from svc_residents.devices.models import DeviceAlarm
    from svc_services.base import OutboxEvent as ServicesEvent

    residents, svc = seeded, services
    svc.app.state.clock.set(residents.app.state.clock.now())
    r = await residents.post(DEVICES, headers=as_("grid1"), json={
        "id": "BR-0001", "kind": "bracelet", "member": "iot-hub", "person_id": P("P3"), "inactivity_hours": 12})
    assert r.status_code == 201, r.text
    assert r.json()["grid_code"] == GRID_A1 and r.json()["household_id"] == H("2")
    event = {"event_id": "evt-1", "type": "alarm"}
    r = await residents.post(f"{DEVICES}/BR-0001/events", headers=hub(auth), json=event)
    assert r.status_code == 200, r.text
    rid, alarm_id = r.json()["request_id"], r.json()["alarm_id"]
    again = await residents.post(f"{DEVICES}/BR-0001/events", headers=hub(auth), json=event)   # the device retries
    assert (again.json()["request_id"], again.json()["alarm_id"]) == (rid, alarm_id)
    assert await count(residents, DeviceAlarm) == 1
    alarms, alarm_sender = relay(residents, svc, "alarm.", "/services/v1/device_alarms", tok(auth, "svc_residents"))
    assert await alarms.run_once() == 1
    req = (await svc.get(f"/services/v1/requests/{rid}", headers=auth(role="ops", user="ops1"))).json()
    assert (req["channel"], req["priority"], req["person_id"], req["grid"]) == ("iot", "emergency", P("P3"), GRID_A1)
    assert "智能手环报警（设备 BR-0001）" in req["description"] and req["address"]
    submit = req["timeline"][0]     # the device filed it, for the person
    assert (submit["actor"], submit["acting_for"]) == ("svc_residents/device:BR-0001", P("P3")), submit
    # the same alarm delivered again (a relay that died before marking it, a second replica): still one request
    async with residents.app.state.db.session() as s, s.begin():
        from sqlalchemy import update

        from svc_residents.base import OutboxEvent
        await s.execute(update(OutboxEvent).where(OutboxEvent.type == "alarm.raised").values(delivered_at=None))
    assert await alarms.run_once() == 1
    assert await count(svc, ServicesEvent, ServicesEvent.type == "request.submitted") == 1
    feed, sender = relay(svc, residents, "emergency.", "/residents/v1/emergencies", tok(auth, "svc_services"))
    await drain(feed)
    c = (await residents.get(f"/residents/v1/callouts/{rid}", headers=as_("grid1"))).json()
    assert c["state"] == "calling" and c["source"] == "iot" and c["attempts"][0]["targets"][0]["user_id"] == "grid1"
    await sender.aclose()
    await alarm_sender.aclose()


async def test_only_svc_residents_files_alarms_and_a_refused_alarm_stays_pending(seeded, services, as_, auth):  # noqa: F811
    from svc_residents.base import OutboxEvent

    residents, svc = seeded, services
    body = {"request_id": "01900000-0000-7000-8000-000000000001", "device_id": "BR-0009", "device_kind": "bracelet",
            "event_id": "e1", "grid": GRID_A1, "description": "智能手环报警", "raised_at": "2026-01-05T02:00:00+00:00"}
    for who in (as_("staff1"), as_("ops1"), hub(auth), auth(role="system", user="svc_matching", member="svc_matching")):
        r = await svc.put("/services/v1/device_alarms/a-1", headers=who, json=body)
        assert r.status_code == 403, r.text
    r = await svc.put("/services/v1/device_alarms/a-1", headers=hub(auth, "svc_residents"),
                      json={**body, "grid": "110105009009009"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("location.grid"), r.text
    r = await svc.put("/services/v1/device_alarms/a-1", headers=hub(auth, "svc_residents"),
                      json={**body, "request_id": "nope"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("request_id"), r.text
    assert (await svc.get("/services/v1/requests", headers=as_("ops1"))).json()["items"] == []
    # an alarm svc_services refuses (here its alarm item is unknown): kept pending and retried, nothing lost
    r = await residents.post(DEVICES, headers=as_("grid1"), json={"id": "BR-0002", "kind": "bracelet",
                                                                  "member": "iot-hub", "person_id": P("P3")})
    assert r.status_code == 201
    svc.app.state.settings.alarm_item_code = "NO-SUCH-1"
    r = await residents.post(f"{DEVICES}/BR-0002/events", headers=hub(auth), json={"event_id": "x", "type": "alarm"})
    assert r.status_code == 200
    alarms, sender = relay(residents, svc, "alarm.", "/services/v1/device_alarms", tok(auth, "svc_residents"))
    assert await alarms.run_once() == 0
    async with residents.app.state.db.session() as s:
        row = (await s.execute(select(OutboxEvent).where(OutboxEvent.type == "alarm.raised"))).scalar_one()
    assert row.delivered_at is None and row.attempts == 1 and "422" in row.last_error
    await sender.aclose()


async def test_bad_devices_events_and_callers_write_nothing(seeded, as_, auth):
    from svc_residents.base import OutboxEvent
    from svc_residents.devices.models import AlarmDevice, DeviceAlarm

    residents = seeded
    base = {"id": "SM-0001", "kind": "smoke_sensor", "member": "iot-hub", "household_id": H("1")}
    for who, body, status, field in (
            ("staff2", base, 422, "household_id"),                       # 安康's staff: 幸福's household
            ("grid1", {**base, "household_id": "no-such"}, 422, "household_id"),
            ("grid1", {**base, "person_id": P("P1")}, 422, "household_id"),
            ("grid1", {**base, "kind": "camera"}, 422, "kind"),
            ("grid1", {**base, "id": "a b"}, 422, "id"),
            ("grid1", {**base, "heartbeat_minutes": 0}, 422, "heartbeat_minutes"),
            ("grid1", {k: v for k, v in base.items() if k != "household_id"}, 422, "person_id"),
            ("resident1", base, 403, None), ("dept_mz", base, 403, None), ("portal", base, 403, None)):
        r = await residents.post(DEVICES, headers=as_(who), json=body)
        assert r.status_code == status, (who, r.text)
        if field:
            assert any(e["field"].endswith(field) for e in r.json()["errors"]), r.text
    assert await count(residents, AlarmDevice) == 0
    assert (await residents.post(DEVICES, headers=as_("staff1"), json=base)).status_code == 201
    assert (await residents.post(DEVICES, headers=as_("staff1"), json=base)).json()["code"] == "device.exists"
    # an unbound device (ops registered it for stock): its alarm has no place; nothing is filed
    r = await residents.post(DEVICES, headers=as_("ops1"), json={"id": "DR-0009", "kind": "door_sensor",
                                                                  "member": "iot-hub"})
    assert r.status_code == 201 and r.json()["grid_code"] is None
    r = await residents.post(f"{DEVICES}/DR-0009/events", headers=hub(auth), json={"event_id": "e1", "type": "alarm"})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "device.unbound", r.text
    # unknown device; another platform's device (answers as unknown); a person's token: refused
    for url, who, status in ((f"{DEVICES}/NOPE-1/events", hub(auth), 404),
                             (f"{DEVICES}/SM-0001/events", hub(auth, "other-hub"), 404),
                             (f"{DEVICES}/SM-0001/events", as_("grid1"), 403),
                             (f"{DEVICES}/SM-0001/events", as_("resident1"), 403)):
        r = await residents.post(url, headers=who, json={"event_id": "e2", "type": "alarm"})
        assert r.status_code == status, (url, r.text)
    r = await residents.post(f"{DEVICES}/SM-0001/events", headers=hub(auth), json={"event_id": "e3", "type": "fire"})
    assert r.status_code == 422
    assert await count(residents, DeviceAlarm) == 0
    assert await count(residents, OutboxEvent, OutboxEvent.type.startswith("alarm.")) == 0
    # staff elsewhere neither see nor change the device; a deactivated device's events are refused
    assert (await residents.get(f"{DEVICES}/SM-0001", headers=as_("staff2"))).status_code == 404
    r = await residents.patch(f"{DEVICES}/SM-0001", headers=as_("grid1"), json={"version": 1, "active": False})
    assert r.status_code == 200 and r.json()["active"] is False
    r = await residents.post(f"{DEVICES}/SM-0001/events", headers=hub(auth), json={"event_id": "e4",
                                                                                   "type": "heartbeat"})
    assert r.status_code == 409 and r.json()["code"] == "device.inactive"


async def test_a_missed_heartbeat_and_a_silent_lone_elder_raise_one_check_each(seeded, as_, auth):
    from svc_residents.notifications.models import Notification

    clock = seeded.app.state.clock
    for body in ({"id": "BR-0003", "kind": "bracelet", "person_id": P("P3"), "inactivity_hours": 12},   # 独居老人
                 {"id": "BR-0001", "kind": "bracelet", "person_id": P("P1"), "inactivity_hours": 12}):  # not alone
        r = await seeded.post(DEVICES, headers=as_("grid1"), json={**body, "member": "iot-hub",
                                                                  "heartbeat_minutes": 30})
        assert r.status_code == 201, r.text
    db = seeded.app.state.db
    clock.advance(minutes=29)
    assert await run_device_scan(db, clock) == 0
    r = await seeded.post(f"{DEVICES}/BR-0001/events", headers=hub(auth), json={"event_id": "h1",
                                                                                "type": "heartbeat"})
    assert r.status_code == 200
    clock.advance(minutes=2)                                 # BR-0003 silent for 31 minutes, BR-0001 for 2
    assert await run_device_scan(db, clock) == 1 and await run_device_scan(db, clock) == 0
    checks = (await seeded.get("/residents/v1/device_checks", headers=as_("grid1"))).json()["items"]
    assert [(c["device_id"], c["kind"], c["state"]) for c in checks] == [("BR-0003", "heartbeat", "open")]
    assert (await seeded.get("/residents/v1/device_checks", headers=as_("grid3"))).json()["items"] == []
    # both keep their heartbeats from now on; neither shows activity for 12 hours
    for hour in range(12):
        clock.advance(minutes=25)
        for dev in ("BR-0001", "BR-0003"):
            r = await seeded.post(f"{DEVICES}/{dev}/events", headers=hub(auth), json={"event_id": f"h{hour}{dev}",
                                                                                     "type": "heartbeat"})
            assert r.status_code == 200
        assert await run_device_scan(db, clock) == 0
    clock.advance(hours=7)
    raised = await run_device_scan(db, clock)
    checks = (await seeded.get("/residents/v1/device_checks", headers=as_("staff1"),
                               params={"state": "open"})).json()["items"]
    kinds = sorted((c["device_id"], c["kind"]) for c in checks)
    assert ("BR-0003", "welfare") in kinds and ("BR-0001", "welfare") not in kinds and raised >= 1
    async with db.session() as s:
        told = (await s.execute(select(Notification.recipient, Notification.body)
                                .where(Notification.event_key.startswith("device_check:")))).all()
    assert {r for r, _ in told} == {"user:grid1"} and any("关怀探访" in b for _, b in told)
    welfare = next(c for c in checks if c["kind"] == "welfare")
    r = await seeded.post(f"/residents/v1/device_checks/{welfare['id']}/close", headers=as_("staff2"),
                          json={"note": "已探访"})
    assert r.status_code == 404
    r = await seeded.post(f"/residents/v1/device_checks/{welfare['id']}/close", headers=as_("grid1"),
                          json={"note": "已上门探访，老人安好"})
    assert r.status_code == 200 and r.json()["state"] == "closed"
    r = await seeded.post(f"/residents/v1/device_checks/{welfare['id']}/close", headers=as_("grid1"),
                          json={"note": "again"})
    assert r.status_code == 409
    assert (await seeded.get("/residents/v1/device_checks", headers=as_("resident1"))).status_code == 403
