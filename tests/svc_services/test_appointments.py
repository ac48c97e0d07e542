"""服务预约 across the two services (issue 30), in process, on both databases: a catalogue item that needs an
appointment, a request for it, its slot booked in svc_matching (which asks the real svc_services app, through a
signed in-process hop, whose request it is), rescheduled and cancelled; svc_matching's `appointment.` feed relay
delivers each step to svc_services, and the request shows its appointment and a timeline entry per step."""
from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest
from sqlalchemy import update

from common.http_client import ServiceClient
from common.outbox import OutboxRelay, TypeFilter
from common.outbox_senders import FeedSender
from tests.conftest import POSTGRES_URL, _create_pg_database, gateway_auth, start_service
from tests.svc_matching.conftest import place_persons
from tests.svc_matching.test_bookings import local, same
from tests.svc_services.conftest import GRID1, OPS, P1, P3, RES1, RES3, STAFF, submit

SOCIAL = {"code": "RS-SB-001", "name": "社保办理（窗口预约）", "category": "social_security", "tier": "basic",
          "department": "renshe", "response_hours": 24, "resolution_hours": 72, "appointment_required": True}
COUNTER = {"name": "幸福社区社保窗口", "kind": "counter", "place_code": "110105001001",
           "opening_hours": {"workday": ["09:00-12:00", "14:00-17:00"]}, "slot_minutes": 30, "capacity": 1,
           "bookers": ["resident", "staff"], "catalogue_item_code": "RS-SB-001"}
FEED_URL = "http://svc-services/services/v1/request_appointments"


class Signed(httpx.AsyncBaseTransport):
    """The gateway's hop, in process: the call reaches the real app with the gateway's assertion."""

    def __init__(self, app) -> None:
        self._inner, self._auth = httpx.ASGITransport(app=app), gateway_auth()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(next(self._auth.auth_flow(request)))


@pytest.fixture
async def matching(backend, tmp_path, jwks, client):
    """svc_matching on a database of its own, on svc_services' clock, calling svc_services through `Signed`."""
    drop = None
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/matching.db"
    else:
        url, drop = await _create_pg_database(POSTGRES_URL)
    async with AsyncExitStack() as stack:
        m = await start_service(stack, "svc_matching", url, jwks, offer_sweeper_enabled=False)
        m.app.state.clock = client.app.state.clock
        await m.app.state.services_client.aclose()
        m.app.state.services_client = ServiceClient("svc_services", "http://gw", retries=0, backoff=0,
                                                    transport=Signed(client.app))
        await place_persons(m, {P1: GRID1, P3: GRID1})
        yield m
    if drop is not None:
        await drop()


@pytest.fixture
async def relay(matching, auth, client):
    from svc_matching.base import OutboxEvent

    token = auth(role="system", user="svc_matching", member="svc_matching")["Authorization"].split()[1]

    async def provider():
        return token

    sender = FeedSender(FEED_URL, provider, transport=httpx.ASGITransport(app=client.app), auth=gateway_auth())
    yield OutboxRelay(matching.app.state.db, OutboxEvent, source="svc_matching", send=sender,
                      clock=client.app.state.clock, types=TypeFilter(include=("appointment.",)))
    await sender.aclose()


async def deliver(relay) -> None:
    while await relay.run_once():
        pass


def code_of(r: httpx.Response) -> str:
    return r.json()["errors"][0]["code"] if r.status_code == 422 else r.json()["code"]


async def test_request_carries_its_appointment_through_booking_rescheduling_and_cancelling(
        ready, matching, relay, auth):
    client, now = ready, ready.app.state.clock.now()
    r = await client.post("/services/v1/catalogue/items", json=SOCIAL, headers=auth(**OPS))
    assert r.status_code == 201 and r.json()["appointment_required"] is True, r.text
    item = (await client.get("/services/v1/catalogue/items/RS-SB-001", headers=auth(**RES1))).json()
    assert item["appointment_required"] is True
    counter = (await matching.post("/matching/v1/bookable_resources", json=COUNTER, headers=auth(**STAFF))).json()
    r = await submit(client, auth, RES1, item_code="RS-SB-001", description="办理社保卡挂失")
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    other = (await submit(client, auth, RES3, item_code="RS-SB-001", description="社保转移")).json()["id"]
    repair = (await submit(client, auth, RES1)).json()["id"]      # 家电维修: no appointment at this counter

    def booking(**over):
        return {"resource_id": counter["id"], "starts_at": local(1, 9, base=now), "request_id": rid, **over}

    # bad input first: clear problems, nothing written
    for who, body, status, code in (
            (RES3, booking(), 422, "booking.request_unknown"),            # someone else's request
            (RES1, booking(request_id=repair), 422, "booking.wrong_item"),
            (RES1, booking(request_id="no-such-request"), 422, "booking.request_unknown"),
            (STAFF, booking(request_id=other, person_id=P1), 422, "booking.request_not_own")):
        r = await matching.post("/matching/v1/bookings", json=body, headers=auth(**who))
        assert (r.status_code, code_of(r)) == (status, code), r.text
    assert (await matching.get("/matching/v1/bookings", headers=auth(**OPS))).json()["items"] == []

    r = await matching.post("/matching/v1/bookings", json=booking(), headers=auth(**RES1))
    assert r.status_code == 201, r.text
    b = r.json()
    r = await matching.post("/matching/v1/bookings", json=booking(starts_at=local(1, 10, base=now)),
                            headers=auth(**RES1))
    assert (r.status_code, r.json()["code"]) == (409, "booking.request_has_appointment")
    await deliver(relay)
    req = (await client.get(f"/services/v1/requests/{rid}", headers=auth(**RES1))).json()
    assert req["appointment"]["booking_id"] == b["id"] and req["appointment"]["state"] == "confirmed"
    assert req["appointment"]["resource_id"] == counter["id"]
    assert same(req["appointment"]["starts_at"], local(1, 9, base=now)) and req["state"] == "submitted"

    r = await matching.post(f"/matching/v1/bookings/{b['id']}/transitions", headers=auth(**RES1), json={
        "action": "reschedule", "version": b["version"], "starts_at": local(2, 14, 30, base=now)})
    assert r.status_code == 200, r.text
    b = r.json()
    await deliver(relay)
    req = (await client.get(f"/services/v1/requests/{rid}", headers=auth(**STAFF))).json()
    assert same(req["appointment"]["starts_at"], local(2, 14, 30, base=now))
    steps = [t for t in req["timeline"] if t["data"].get("booking_id") == b["id"]]
    assert [t["action"] for t in steps] == ["book", "reschedule"]
    assert "→" in steps[1]["note"] and same(steps[1]["data"]["from_starts_at"], local(1, 9, base=now))
    assert all(t["from_state"] == t["to_state"] == "submitted" for t in steps)
    # the version still counts the timeline's entries (a stale editor of the request gets 409)
    assert req["version"] == len(req["timeline"])

    r = await matching.post(f"/matching/v1/bookings/{b['id']}/transitions", headers=auth(**RES1),
                            json={"action": "cancel", "version": b["version"], "note": "时间冲突"})
    assert r.status_code == 200, r.text
    await deliver(relay)
    # a redelivery (a retry, a second relay) adds nothing
    from svc_matching.base import OutboxEvent
    async with matching.app.state.db.session() as s, s.begin():
        await s.execute(update(OutboxEvent).values(delivered_at=None))
    assert await relay.run_once() == 3   # the booking's three rows, sent again (only the newest of them goes)
    req = (await client.get(f"/services/v1/requests/{rid}", headers=auth(**RES1))).json()
    assert req["appointment"]["state"] == "cancelled"
    steps = [t["action"] for t in req["timeline"] if t["data"].get("booking_id") == b["id"]]
    assert steps == ["book", "reschedule", "unbook"]
    # cancelled, the request books again: staff of the place, for the request's person
    r = await matching.post("/matching/v1/bookings", headers=auth(**STAFF),
                            json=booking(starts_at=local(3, 9, base=now), person_id=P1))
    assert r.status_code == 201, r.text
    await deliver(relay)
    req = (await client.get(f"/services/v1/requests/{rid}", headers=auth(**RES1))).json()
    assert req["appointment"]["booking_id"] == r.json()["id"] and req["appointment"]["state"] == "confirmed"
    assert [t["action"] for t in req["timeline"]][-1] == "book" and req["version"] == len(req["timeline"])

    # the replica endpoint itself: only svc_matching's member (and ops) write; a stale snapshot changes nothing; a
    # snapshot naming an unknown request or carrying an unknown field is refused naming the field
    url = f"/services/v1/request_appointments/{b['id']}"
    stale = {"request_id": rid, "resource_id": counter["id"], "resource_name": "旧窗口", "place_code": "110105001001",
             "starts_at": local(1, 9, base=now), "ends_at": local(1, 9, 30, base=now), "state": "confirmed",
             "version": 1, "history": [{"seq": 1, "action": "request", "to_state": "confirmed",
                                        "starts_at": local(1, 9, base=now), "at": now.isoformat(),
                                        "actor": "app/resident1", "role": "resident"}]}
    feed = auth(role="system", user="svc_matching", member="svc_matching")
    r = await client.put(url, json=stale, headers=auth(role="system", user="svc_residents", member="svc_residents"))
    assert (r.status_code, r.json()["code"]) == (403, "appointment.not_a_source")
    r = await client.put(url, json=stale, headers=feed)
    assert r.status_code == 200 and r.json()["state"] == "cancelled" and r.json()["resource_name"] == COUNTER["name"]
    assert len((await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()["timeline"]) == \
        len(req["timeline"])
    r = await client.put("/services/v1/request_appointments/b-new", json={**stale, "request_id": "no-such"},
                         headers=feed)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "request_id"
    r = await client.put("/services/v1/request_appointments/b-new", json={**stale, "phone": "13800000000"},
                         headers=feed)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "phone"
