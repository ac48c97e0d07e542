"""服务预约 (issue 30): a booking for a svc_services request, checked with svc_services and fed back to it.

Here svc_services is a stand-in answering `GET /services/v1/requests/{id}` as its visibility would (the caller's
token is checked to travel with the call); tests/e2e/test_appointments.py runs the same flow against the real
svc_services app, both databases."""
from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select

from common.http_client import ServiceClient
from svc_matching.base import OutboxEvent
from svc_matching.bookings.models import Booking
from tests.svc_matching.test_bookings import book, local, make_resource, move, now_of, resident, same

# what the stand-in svc_services holds: request id → (item, person, state)
REQUESTS = {"req-1": ("RS-SB-001", "p-7", "submitted"), "req-8": ("RS-SB-001", "p-8", "accepted"),
            "req-repair": ("SH-WX-001", "p-7", "submitted"), "req-done": ("RS-SB-001", "p-7", "closed")}


def stand_in(calls: list[httpx.Request]):
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        rid = request.url.path.rsplit("/", 1)[-1]
        if rid == "req-down":
            return httpx.Response(503, json={"code": "unavailable"})
        if rid not in REQUESTS:
            return httpx.Response(404, json={"code": "request.not_found"})
        item, person, state = REQUESTS[rid]
        token = request.headers.get("authorization", "")
        # svc_services' visibility: a resident sees only their own requests (404 as for none)
        if "resident" in _claims(token).get("role", "") and f"person:{person}" not in _claims(token)["scopes"]:
            return httpx.Response(404, json={"code": "request.not_found"})
        return httpx.Response(200, json={"id": rid, "item_code": item, "person_id": person, "state": state})
    return handler


def _claims(bearer: str) -> dict:
    import jwt

    return jwt.decode(bearer.removeprefix("Bearer "), options={"verify_signature": False}) if bearer else {}


@pytest.fixture
async def services(client):
    calls: list[httpx.Request] = []
    await client.app.state.services_client.aclose()
    client.app.state.services_client = ServiceClient("svc_services", "http://gw", retries=0, backoff=0,
                                                     transport=httpx.MockTransport(stand_in(calls)))
    return calls


async def feed_rows(client) -> list[OutboxEvent]:
    async with client.app.state.db.session() as s:
        return list((await s.execute(select(OutboxEvent).where(OutboxEvent.type.like("appointment.%"))
                                     .order_by(OutboxEvent.id))).scalars())


def code_of(r: httpx.Response) -> str:
    """The problem's code (a 422 names it per field)."""
    doc = r.json()
    return doc["errors"][0]["code"] if r.status_code == 422 else doc["code"]


async def bookings(client) -> int:
    async with client.app.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(Booking))).scalar_one()


async def test_appointment_checked_with_svc_services_and_every_step_fed(client, staff, auth, services):
    counter = await make_resource(client, staff, name="社保窗口", kind="counter", slot_minutes=30, capacity=1,
                                  catalogue_item_code="RS-SB-001", bookers=["resident", "staff"])
    listed = (await client.get("/matching/v1/bookable_resources", params={"item_code": "RS-SB-001"},
                               headers=resident(auth, 1))).json()["items"]
    assert [x["id"] for x in listed] == [counter["id"]]
    now, me = now_of(client), resident(auth, 7)
    keyed = {**me, "Idempotency-Key": "appt-req-1"}
    b = await book(client, keyed, counter, local(1, 9, base=now), request_id="req-1")
    assert b.status_code == 201, b.text
    b = b.json()
    assert b["request_id"] == "req-1" and b["person_id"] == "p-7" and b["state"] == "confirmed"
    assert services[-1].headers["authorization"] == me["Authorization"]  # asked with the caller's own token
    # a retry of the same key replays the answer without asking svc_services again
    asked = len(services)
    r = await book(client, keyed, counter, local(1, 9, base=now), request_id="req-1")
    assert r.status_code == 201 and r.json()["id"] == b["id"] and r.headers["idempotency-replayed"] == "true"
    assert len(services) == asked
    # bad input: clear problems, nothing written
    before = await bookings(client)
    cases = [(resident(auth, 7), "req-1", 409, "booking.request_has_appointment"),
             (resident(auth, 7), "req-8", 422, "booking.request_unknown"),        # someone else's request
             (resident(auth, 7), "req-repair", 422, "booking.wrong_item"),
             (resident(auth, 7), "req-done", 422, "booking.request_closed"),
             (resident(auth, 7), "no-such", 422, "booking.request_unknown")]
    for who, rid, status, code in cases:
        r = await book(client, who, counter, local(1, 10, base=now), request_id=rid)
        assert (r.status_code, code_of(r)) == (status, code), (rid, r.text)
        if status == 422:
            assert r.json()["errors"][0]["field"] == "request_id"
            assert r.json()["title"] and "诉求" in r.json()["detail"]          # Chinese by default
    # staff covering the place book for the request's person only
    r = await book(client, staff, counter, local(1, 10, base=now), request_id="req-8", person_id="p-9")
    assert (r.status_code, code_of(r)) == (422, "booking.request_not_own")
    room = await make_resource(client, staff)
    r = await book(client, staff, room, local(1, 10, base=now), person_id="p-8", request_id="req-8")
    assert (r.status_code, code_of(r)) == (422, "booking.not_appointment")
    r = await book(client, me, counter, local(1, 10, base=now), request_id="req-down")
    assert (r.status_code, code_of(r)) == (503, "booking.services_unavailable")
    assert await bookings(client) == before
    # rescheduling keeps the history; the old slot frees, the new one is taken
    b = (await move(client, me, b, "reschedule", starts_at=local(2, 14, 30, base=now))).json()
    assert same(b["starts_at"], local(2, 14, 30, base=now)) and b["state"] == "confirmed"
    assert (await book(client, resident(auth, 8), counter, local(1, 9, base=now))).status_code == 201
    assert (await book(client, resident(auth, 9), counter, local(2, 14, 30, base=now))).status_code == 409
    detail = (await client.get(f"/matching/v1/bookings/{b['id']}", headers=staff)).json()
    assert [e["action"] for e in detail["timeline"]] == ["request", "reschedule"] and "→" in detail["timeline"][1]["note"]
    by_request = (await client.get("/matching/v1/bookings", params={"request_id": "req-1"}, headers=staff)).json()
    assert [x["id"] for x in by_request["items"]] == [b["id"]]
    b = (await move(client, me, b, "cancel")).json()
    # one feed row per step, each the full snapshot; no community on them, never a svc_metrics event
    rows = await feed_rows(client)
    assert [r.subject for r in rows] == [b["id"]] * 3 and {r.type for r in rows} == {"appointment.changed"}
    assert [len(r.data["history"]) for r in rows] == [1, 2, 3] and [r.data["version"] for r in rows] == [1, 2, 3]
    last = rows[-1].data
    assert last["request_id"] == "req-1" and last["state"] == "cancelled" and last["resource_name"] == "社保窗口"
    assert [h["action"] for h in last["history"]] == ["request", "reschedule", "cancel"]
    assert all(r.community is None for r in rows)
    # a booking without a request writes no feed row; after the cancellation the request books again
    r = await book(client, staff, counter, local(3, 9, base=now), request_id="req-1", person_id="p-7")
    assert r.status_code == 201, r.text
    assert len(await feed_rows(client)) == 4
