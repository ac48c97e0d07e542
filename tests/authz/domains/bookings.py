"""Bookings and activities (issue 30, svc_matching): rules and cells, written from the policy.

The policy (DESIGN "Identity and authorisation", DOMAIN workflow 12, ADR 0014, svc_matching/access.py):
- bookable resources and activities are announced to every signed-in caller, like the resource directory beside
  them (public); they are set up by community or street staff of their place and ops (a grid worker books, does
  not set up a community's rooms; departments, member systems, evaluators, providers do not);
- a booking is a personal record of a place: the person booked for (or their proxy), staff covering the resource's
  place, ops; anyone else gets 404 as for an unknown id. Residents of the booker scope book for themselves, staff
  covering the place book for the community (or a resident), ops too; a provider only where organisations may
  book; departments, member systems and evaluators neither read nor write bookings (403);
- a request's appointment (服务预约) reaches svc_services only from svc_matching's feed: its replica endpoint
  takes ops and the system member svc_matching (ONENET_APPOINTMENT_SOURCES), no one else (403), as the other
  feeds' replicas (ADR 0007);
- a sign-up is the same kind of record: the person (or proxy), staff over the activity's place, ops; check-in at the
  venue is by staff over the place, ops, or the kiosk (DOMAIN channels: 自助服务一体机).

The targets: 幸福's activity room (bookers residents and staff, booker scope 幸福), P1's booking there, a 幸福
activity; fresh objects are made as staff1 (幸福) through the APIs for every call that changes one.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from itertools import count

from tests.authz.policy import HIDE, MANAGERS, P1, P3, PLACE_STAFF, XF, Caller, Rule, allow
from tests.authz.test_matrix import Cell, World, get, holds, ids

SHANGHAI_OFFSET = timedelta(hours=8)
_slot = count()


def _xf_resident(c: Caller) -> bool:
    """A resident or proxy whose person lives in 幸福 (P1 and P3 in A1; proxy1 acts for P3)."""
    return c.role in ("resident", "proxy") and c.person in (P1, P3)


def _who_books(c: Caller) -> bool:
    return _xf_resident(c) or c.staff_of(XF) or c.ops


RULES = {
    "bookable.write": Rule("bookable resources of 幸福 are set up by 幸福's and the street's staff and ops (a grid "
                           "worker books but does not set up the community's rooms; departments, systems, "
                           "evaluators, providers: 403)", allow(lambda c: c.staff_of(XF, MANAGERS) or c.ops),
                           code=lambda c: "booking.not_manager" if c.role in ("resident", "proxy", *PLACE_STAFF)
                           else None),
    "booking.create": Rule("幸福's activity room (bookers: residents of 幸福, staff): a resident or proxy of a 幸福 "
                           "person for themselves, staff covering 幸福 (for the community), ops; not 安康's staff, "
                           "a grid worker of one grid, a department, a system, an evaluator, a provider (403)",
                           allow(_who_books), code=lambda c: "booking.not_eligible" if not c.system and
                           c.role not in ("resident", "proxy") else None),
    "booking.list": Rule("bookings are listed by the people who hold them (their own), providers (their "
                         "organisation's), place staff (their places') and ops; departments, member systems and "
                         "evaluators read no personal record of svc_matching (403, ADR 0014)",
                         allow(lambda c: c.role in ("resident", "proxy", "provider", *PLACE_STAFF, "ops"))),
    "booking.read": Rule("P1's booking of 幸福's room: P1 (or a proxy for P1), staff covering 幸福, ops; anyone else "
                         "404 as for an unknown id", allow(lambda c: c.own(P1) or c.staff_of(XF) or c.ops, HIDE)),
    "booking.cancel": Rule("P1's booking is cancelled by P1 or staff covering 幸福, ops; whoever cannot see it 404",
                           allow(lambda c: c.own(P1) or c.staff_of(XF) or c.ops, HIDE)),
    "activity.write": Rule("a 幸福 activity of the community is published and cancelled by 幸福's and the street's "
                           "staff and ops (a provider publishes only its own organisation's)",
                           allow(lambda c: c.staff_of(XF, MANAGERS) or c.ops)),
    "activity.signup": Rule("a 幸福 activity: residents of 幸福 (or their proxies) sign themselves up, staff covering "
                            "幸福 sign a resident of theirs up, ops; others 403",
                            allow(lambda c: _xf_resident(c) or c.staff_of(XF) or c.ops)),
    "activity.signups": Rule("the sign-up list: staff over the activity's place and ops (all), residents and "
                             "proxies (their own only); others 403",
                             allow(lambda c: c.staff_of(XF) or c.ops or c.role in ("resident", "proxy"))),
    "activity.signup_cancel": Rule("P1's sign-up is cancelled by P1, staff covering 幸福, ops; others 404",
                                   allow(lambda c: c.own(P1) or c.staff_of(XF) or c.ops, HIDE)),
    "feed.appointments": Rule("a request's appointments are written by svc_matching's feed (its system member) and "
                              "ops; any other caller, another system member included, 403",
                              allow(lambda c: c.ops or c.member == "svc_matching"),
                              code=lambda c: "appointment.not_a_source" if c.role == "system" else None),
    "activity.checkin": Rule("check-in at the venue: staff covering 幸福, ops, or the kiosk (自助服务一体机); "
                             "others 403", allow(lambda c: c.staff_of(XF) or c.ops or c.member == "kiosk")),
}

def _now(w: World) -> datetime:
    return w.gw.state.clock.now()


def _next_slot(w: World) -> str:
    """A slot of the matrix's room nobody has booked yet: 08:00–20:00 Beijing, from tomorrow on."""
    k = next(_slot)
    local = (_now(w) + SHANGHAI_OFFSET).date() + timedelta(days=1 + k // 12)
    return f"{local.isoformat()}T{8 + k % 12:02d}:00:00+08:00"


def _book_p1(w: World) -> dict:
    return w.call("staff1", "POST", "/matching/v1/bookings", json={
        "resource_id": w.ids["room_id"], "starts_at": _next_slot(w), "person_id": P1})


def _activity(w: World, soon: bool = False) -> dict:
    start = _now(w) + (timedelta(minutes=30) if soon else timedelta(days=3))
    return w.call("staff1", "POST", "/matching/v1/activities", json={
        "title": "授权矩阵：智能手机课堂", "category": "education", "organiser_kind": "community", "place_code": XF,
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat(), "capacity": 100,
        "points": 1})


def _signup_p1(w: World, activity_id: str) -> dict:
    return w.call("staff1", "POST", f"/matching/v1/activities/{activity_id}/signups", json={"person_id": P1})


def room_body(w: World, c: Caller, oid: str | None):
    return "POST", "/matching/v1/bookable_resources", {"json": {
        "name": w.uid("授权矩阵会议室"), "kind": "meeting_room", "place_code": XF,
        "opening_hours": {"workday": ["09:00-12:00"]}, "slot_minutes": 60, "capacity": 1, "bookers": ["resident"]}}


def booking_body(w: World, c: Caller, oid: str | None):
    return "POST", "/matching/v1/bookings", {"json": {"resource_id": w.ids["room_id"], "starts_at": _next_slot(w),
                                                      "purpose": "授权矩阵"}}


def cancel_booking(w: World, c: Caller, oid: str | None):
    b = {"id": oid, "version": 1} if oid else _shared(w, c, "booking", lambda: _book_p1(w))
    return "POST", f"/matching/v1/bookings/{b['id']}/transitions", {"json": {"action": "cancel",
                                                                             "version": b["version"]}}


def activity_body(w: World, c: Caller, oid: str | None):
    start = _now(w) + timedelta(days=5)
    return "POST", "/matching/v1/activities", {"json": {
        "title": "授权矩阵：健康讲座", "category": "health", "organiser_kind": "community", "place_code": XF,
        "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=2)).isoformat(), "capacity": 30}}


def cancel_activity(w: World, c: Caller, oid: str | None):
    a = {"id": oid, "version": 1} if oid else _shared(w, c, "activity", lambda: _activity(w))
    return "POST", f"/matching/v1/activities/{a['id']}/status", {"json": {"status": "cancelled",
                                                                          "version": a["version"], "reason": "矩阵"}}


def signup(w: World, c: Caller, oid: str | None):
    a = _shared(w, c, "activity-open", lambda: _activity(w))
    body = {"person_id": P1} if c.role not in ("resident", "proxy") else {}
    return "POST", f"/matching/v1/activities/{oid or a['id']}/signups", {"json": body}


def cancel_signup(w: World, c: Caller, oid: str | None):
    a, s = _shared(w, c, "signup", lambda: (lambda a: (a, _signup_p1(w, a["id"])))(_activity(w)))
    return "POST", f"/matching/v1/activities/{a['id']}/signups/{oid or s['id']}/cancel", {}


def checkin(w: World, c: Caller, oid: str | None):
    a = _shared(w, c, "checkin", lambda: (lambda a: (_signup_p1(w, a["id"]), a)[1])(_activity(w, soon=True)))
    return "POST", f"/matching/v1/activities/{oid or a['id']}/checkins", {"json": {"person_id": P1}}


def appointment_body(w: World, c: Caller, oid: str | None):
    """A fresh booking's snapshot for the matrix's request of P1 (an ops write adds its `book` timeline entry)."""
    start = _now(w) + timedelta(days=2)
    at = _now(w).isoformat()
    return "PUT", f"/services/v1/request_appointments/{oid or w.uid('authz-booking')}", {"json": {
        "request_id": w.ids["appointment_request"], "resource_id": "authz-counter", "resource_name": "授权矩阵窗口",
        "place_code": XF, "starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=30)).isoformat(),
        "state": "confirmed", "version": 1, "history": [{
            "seq": 1, "action": "request", "from_state": None, "to_state": "confirmed",
            "starts_at": start.isoformat(), "at": at, "actor": "svc_matching/authz", "role": "resident"}]}}


def _shared(w: World, c: Caller, kind: str, make):
    """A fresh object for an allowed caller; refused callers share one (w.reuse, as test_matrix's `shared`)."""
    if not w.reuse:
        return make()
    key = ("bookings", kind)
    if key not in w.cache:
        w.cache[key] = make()
    return w.cache[key]


CELLS = {
    "POST /matching/v1/bookable_resources": [Cell("bookable.write", room_body)],
    "GET /matching/v1/bookable_resources": [Cell("public", get("/matching/v1/bookable_resources", limit=200))],
    "GET /matching/v1/bookable_resources/{resource_id}": [Cell("public", get("/matching/v1/bookable_resources/{}",
                                                                            ids("room_id")))],
    "GET /matching/v1/bookable_resources/{resource_id}/slots": [Cell("public", get(
        "/matching/v1/bookable_resources/{}/slots", ids("room_id")))],
    "POST /matching/v1/bookings": [Cell("booking.create", booking_body)],
    "GET /matching/v1/bookings": [Cell("booking.list", get("/matching/v1/bookings", limit=200),
                                       holds("booking_p1"), lambda c: c.own(P1) or c.staff_of(XF) or c.ops)],
    "GET /matching/v1/bookings/{booking_id}": [Cell("booking.read", get("/matching/v1/bookings/{}",
                                                                        ids("booking_p1")))],
    "POST /matching/v1/bookings/{booking_id}/transitions": [Cell("booking.cancel", cancel_booking)],
    "POST /matching/v1/activities": [Cell("activity.write", activity_body)],
    "GET /matching/v1/activities": [Cell("public", get("/matching/v1/activities", limit=200))],
    "GET /matching/v1/activities/{activity_id}": [Cell("public", get("/matching/v1/activities/{}",
                                                                     ids("activity_id")))],
    "POST /matching/v1/activities/{activity_id}/status": [Cell("activity.write", cancel_activity)],
    "POST /matching/v1/activities/{activity_id}/signups": [Cell("activity.signup", signup)],
    "GET /matching/v1/activities/{activity_id}/signups": [Cell("activity.signups", get(
        "/matching/v1/activities/{}/signups", ids("activity_id")))],
    "POST /matching/v1/activities/{activity_id}/signups/{signup_id}/cancel": [Cell("activity.signup_cancel",
                                                                                   cancel_signup)],
    "POST /matching/v1/activities/{activity_id}/checkins": [Cell("activity.checkin", checkin)],
    "PUT /services/v1/request_appointments/{booking_id}": [Cell("feed.appointments", appointment_body)],
}

FILL = {"{resource_id}": "no-such-resource", "{booking_id}": "no-such-booking", "{activity_id}": "no-such-activity",
        "{signup_id}": "no-such-signup"}


def setup(w: World) -> None:
    room = w.call("staff1", "POST", "/matching/v1/bookable_resources", json={
        "name": "授权矩阵：幸福社区活动室", "kind": "activity_room", "place_code": XF,
        "opening_hours": {k: ["08:00-20:00"] for k in ("workday", "weekend", "holiday")}, "slot_minutes": 60,
        "capacity": 100, "bookers": ["resident", "staff"], "advance_days": 60, "weekly_limit": 100})
    w.ids["room_id"] = room["id"]
    w.ids["booking_p1"] = _book_p1(w)["id"]
    w.ids["activity_id"] = _activity(w)["id"]
    w.ids["appointment_request"] = w.request_p1()["id"]
