"""Issue 26, devices: an alarm from a device becomes an emergency request at the bound person's place and its
first call attempt, end to end through the real gateway (the whole platform in process, demo district seeded,
every call with a gateway-issued token and checked where the data is), over the real feeds: svc_residents'
`alarm.` feed to svc_services' request intake, svc_services' `emergency.` feed back to the call-out (ADR 0022).
The device's platform (an exchange member) posts through the gateway; the relays deliver straight to the
subscriber with its assertion, as deployed. The same device event twice, and the same alarm delivered twice, make
one request; an unbound device, an unknown device, another platform's device and a deactivated device are clear
problems, nothing filed."""
from __future__ import annotations

from contextlib import AsyncExitStack
from importlib import import_module

import httpx
from sqlalchemy import func, select

from common.outbox import OutboxRelay, TypeFilter
from common.outbox_senders import FeedSender
from deploy.demo import household_id, person_id
from tests.conftest import gateway_auth
from tests.inprocess import start_platform

A1 = "110105001001001"          # 幸福一网格, grid1's
P3 = person_id("P3")            # 王秀英, 独居老人 of household 2 in 幸福一网格
SUBSCRIBERS = {"alarm.": ("svc_residents", "svc_services", "/services/v1/device_alarms"),
               "emergency.": ("svc_services", "svc_residents", "/residents/v1/emergencies")}


def feed_relay(p, prefix: str) -> OutboxRelay:
    """The feed's relay as the service runs it (common.app), its deliveries on the in-process subscriber."""
    source, target, path = SUBSCRIBERS[prefix]
    token = p.token("system", member=source, user=source)

    async def provider():
        return token

    app = p.apps[source]
    sender = FeedSender(f"http://{target}{path}", provider, auth=gateway_auth(),
                        transport=httpx.ASGITransport(app=p.apps[target]))
    return OutboxRelay(app.state.db, import_module(f"{source}.base").OutboxEvent, source=source, send=sender,
                       clock=app.state.clock, types=TypeFilter(include=(prefix,)), wake_on_commit=True)


async def rows(p, service: str, stmt) -> list:
    async with p.apps[service].state.db.session() as s:
        return list((await s.execute(stmt)).all())


async def test_a_devices_alarm_through_the_gateway_is_an_emergency_and_its_first_call(tmp_path):
    from svc_residents.callout.models import CalloutAttempt
    from svc_residents.notifications.models import Notification
    from svc_services.requests.models import ServiceRequest

    async with AsyncExitStack() as stack:
        p = await start_platform(stack, tmp_path)
        for app in p.apps.values():
            if getattr(app.state, "clock", None) is not None:
                app.state.clock = p.gateway.state.clock
        ops = p.headers("ops1")
        r = await p.client.post("/exchange/v1/members", headers=ops, json={"code": "iot-hub", "name": "物联感知平台",
                                                                           "kind": "app"})
        assert r.status_code == 201, r.text
        hub = p.headers("system", member="iot-hub", user="iot-hub")
        other = p.headers("system", member="kiosk", user="kiosk")
        r = await p.client.post("/residents/v1/devices", headers=p.headers("grid1"), json={
            "id": "BR-E2E-1", "kind": "bracelet", "member": "iot-hub", "person_id": P3})
        assert r.status_code == 201, r.text
        assert (r.json()["grid_code"], r.json()["household_id"]) == (A1, household_id("2"))

        event = {"event_id": "evt-1", "type": "alarm"}
        r = await p.client.post("/residents/v1/devices/BR-E2E-1/events", headers=hub, json=event)
        assert r.status_code == 200, r.text
        rid, alarm_id = r.json()["request_id"], r.json()["alarm_id"]
        again = await p.client.post("/residents/v1/devices/BR-E2E-1/events", headers=hub, json=event)
        assert (again.status_code, again.json()["alarm_id"], again.json()["request_id"]) == (200, alarm_id, rid)

        alarms, emergencies = feed_relay(p, "alarm."), feed_relay(p, "emergency.")
        assert await alarms.run_once() == 1
        assert await emergencies.run_once() == 1

        # the request, as the community sees it through the gateway: at the person's place, filed by the device
        req = (await p.client.get(f"/services/v1/requests/{rid}", headers=p.headers("staff1"))).json()
        assert (req["channel"], req["priority"], req["grid"], req["person_id"]) == ("iot", "emergency", A1, P3), req
        assert "智能手环报警（设备 BR-E2E-1）" in req["description"] and req["address"] == "和平街道幸福路2号楼202"
        submit = req["timeline"][0]
        assert (submit["action"], submit["actor"], submit["acting_for"]) == (
            "submit", "svc_residents/device:BR-E2E-1", P3), submit
        # the first call attempt: grid1 by voice, SMS and push, handed to the notification engine
        c = (await p.client.get(f"/residents/v1/callouts/{rid}", headers=p.headers("grid1"))).json()
        assert (c["state"], c["source"]) == ("calling", "iot"), c
        first = c["attempts"][0]
        assert (first["step"], first["duty"], first["outcome"]) == (0, "grid_worker", "called")
        assert [t["user_id"] for t in first["targets"]] == ["grid1"]
        told = await rows(p, "svc_residents", select(Notification.recipient, Notification.urgency)
                          .where(Notification.event_key == f"callout:{first['id']}"))
        assert told == [("user:grid1", "emergency")]

        # the same alarm delivered again (a relay that died before marking it): still the one request and call-out
        model = import_module("svc_residents.base").OutboxEvent
        async with p.apps["svc_residents"].state.db.session() as s, s.begin():
            from sqlalchemy import update
            await s.execute(update(model).where(model.type == "alarm.raised").values(delivered_at=None))
        assert await alarms.run_once() == 1
        await emergencies.run_once()
        assert await rows(p, "svc_services", select(func.count()).select_from(ServiceRequest)
                          .where(ServiceRequest.channel == "iot")) == [(1,)]
        assert await rows(p, "svc_residents", select(func.count()).select_from(CalloutAttempt)
                          .where(CalloutAttempt.request_id == rid)) == [(1,)]

        # clear problems, nothing filed: an unbound device (ops' stock), an unknown one, another platform's, a
        # person's token, a deactivated device
        r = await p.client.post("/residents/v1/devices", headers=ops, json={"id": "DR-STOCK-1", "kind": "door_sensor",
                                                                           "member": "iot-hub"})
        assert r.status_code == 201 and r.json()["grid_code"] is None
        for url, who, status, code in (
                ("/residents/v1/devices/DR-STOCK-1/events", hub, 422, "validation_failed"),
                ("/residents/v1/devices/NO-SUCH-1/events", hub, 404, "device.not_found"),
                ("/residents/v1/devices/BR-E2E-1/events", other, 404, "device.not_found"),
                ("/residents/v1/devices/BR-E2E-1/events", p.headers("resident1"), 403, "forbidden")):
            r = await p.client.post(url, headers=who, json={"event_id": "evt-2", "type": "alarm"})
            assert (r.status_code, r.json().get("code")) == (status, code), (url, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            if status == 422:
                assert (r.json()["errors"][0]["field"], r.json()["errors"][0]["code"]) == ("device_id",
                                                                                           "device.unbound")
        seen = (await p.client.get("/residents/v1/devices/BR-E2E-1", headers=p.headers("grid1"))).json()
        r = await p.client.patch("/residents/v1/devices/BR-E2E-1", headers=p.headers("grid1"),
                                 json={"version": seen["version"], "active": False})
        assert r.status_code == 200, r.text
        r = await p.client.post("/residents/v1/devices/BR-E2E-1/events", headers=hub,
                                json={"event_id": "evt-3", "type": "alarm"})
        assert (r.status_code, r.json()["code"]) == (409, "device.inactive")
        assert await alarms.run_once() == 0
        assert await rows(p, "svc_services", select(func.count()).select_from(ServiceRequest)
                          .where(ServiceRequest.channel == "iot")) == [(1,)]
        for relay in (alarms, emergencies):
            await relay.send.aclose()
