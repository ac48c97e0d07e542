"""服务预约: a booking that is a svc_services request's appointment (`request_id`).

Whose request it is, and for which catalogue item, is svc_services' to say: before the booking is written, the
request is read through the gateway with the caller's own token (`GET /services/v1/requests/{id}`), so
svc_services' own visibility decides (a resident sees only their own requests, staff those of their places) and
nothing the caller sends is trusted. The booking is refused (422 `request_id`, nothing written) for a request the
caller cannot see (the same answer as for none), one of another person than the booking's, one of another item
than the resource's `catalogue_item_code`, or one no longer open; svc_services down answers 503. Request intake
never waits on this (ADR 0011): the call is made at booking time, by svc_matching.

Every step of such a booking (booked, approved, rescheduled, cancelled, checked in, …) writes one `appointment.
changed` row to the outbox in the step's transaction: a feed (ADR 0007) whose relay PUTs it to svc_services'
`/services/v1/request_appointments/{booking_id}`. The row is the booking's full snapshot with every step so far
(the feed sends only a subject's newest row of a batch), versioned by the booking's version, so svc_services can
copy each step onto the request's timeline once, in order, whatever the retries.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.errors import Problem, invalid
from common.http_client import ServiceClient
from common.outbox import record_event
from svc_matching.base import OutboxEvent
from svc_matching.bookings.models import BookableResource, Booking, BookingEntry

FEED = "appointment."
# svc_services' request states in which work is still owed (its lifecycle.OPEN): an appointment is booked for those
OPEN = frozenset({"submitted", "accepted", "dispatched", "claimed", "returned", "in_progress", "reopened",
                  "escalated"})


@dataclass(frozen=True)
class RequestFacts:
    id: str
    item_code: str
    person_id: str | None
    state: str


async def look_up(client: ServiceClient, request_id: str) -> RequestFacts:
    """The request as svc_services shows it to this caller (their token travels with the call)."""
    resp = await client.get(f"/services/v1/requests/{quote(request_id, safe='')}")
    if resp.status_code in (403, 404):
        raise invalid("request_id", "booking.request_unknown", "诉求不存在或不是您可预约的",
                      "No such request, or not one you may book for")
    if resp.status_code != 200:
        raise Problem(503, "booking.services_unavailable", ("暂时无法核实诉求，请稍后再试",
                                                            "The request cannot be checked now; try again later"))
    doc = resp.json()
    return RequestFacts(id=doc["id"], item_code=doc["item_code"], person_id=doc.get("person_id"), state=doc["state"])


def check_request(facts: RequestFacts | None, res: BookableResource, person: str | None) -> None:
    """The request fits this resource and this booker (called once the booker is known)."""
    if facts is None:  # not looked up (a retried key whose stored answer went away meanwhile): ask again
        raise invalid("request_id", "booking.request_unknown", "诉求不存在或不是您可预约的",
                      "No such request, or not one you may book for")
    if res.catalogue_item_code is None:
        raise invalid("request_id", "booking.not_appointment", "该资源不是服务预约时段",
                      "This resource offers no service appointments")
    if facts.item_code != res.catalogue_item_code:
        raise invalid("request_id", "booking.wrong_item",
                      f"该诉求的事项（{facts.item_code}）不在此处预约（本资源办理 {res.catalogue_item_code}）",
                      f"The request's item {facts.item_code} is not served here ({res.catalogue_item_code})")
    if facts.person_id is not None and facts.person_id != person:
        raise invalid("request_id", "booking.request_not_own", "该诉求不是所预约居民本人的",
                      "The request is not the booked person's")
    if facts.state not in OPEN:
        raise invalid("request_id", "booking.request_closed", "该诉求已办结或已关闭，不能再预约",
                      "The request is no longer open")


async def record_change(session: AsyncSession, b: Booking, now: datetime) -> None:
    """The booking's snapshot for svc_services (after its newest entry was added)."""
    await session.flush()
    res = await session.get(BookableResource, b.resource_id)
    entries = (await session.execute(select(BookingEntry).where(BookingEntry.booking_id == b.id)
                                     .order_by(BookingEntry.seq))).scalars().all()
    record_event(session, OutboxEvent, FEED + "changed", subject=b.id, now=now, data={
        "request_id": b.request_id, "resource_id": res.id, "resource_name": res.name, "place_code": res.place_code,
        "starts_at": b.starts_at.isoformat(), "ends_at": b.ends_at.isoformat(), "state": b.state,
        "version": b.version,
        "history": [{"seq": e.seq, "action": e.action, "from_state": e.from_state, "to_state": e.to_state,
                     "starts_at": e.starts_at.isoformat(), "at": e.at.isoformat(), "actor": e.actor,
                     "role": e.role, "note": e.note} for e in entries]})
