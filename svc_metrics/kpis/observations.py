"""From one entity's events to its observations: a pure function of the set of events, so arrival order and
re-delivery never change the result (the incremental path and the rebuild share it).

Durations are in seconds; `measure` converts them to the catalogue's unit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ONLINE_CHANNELS = ("app", "kiosk", "api")
FIRST_RESPONSE = ("request.accepted", "request.rejected", "request.dispatched", "request.claimed",
                  "request.started", "request.resolved")
TERMINAL_NO_OUTCOME = ("request.cancelled", "request.merged")


@dataclass
class Ev:
    """The slice of a stored event the derivations read."""

    event_id: str
    type: str
    occurred_at: datetime
    community: str | None
    grid: str | None
    subject: str | None
    data: dict[str, Any]


@dataclass
class Obs:
    kpi: str
    at: datetime
    mode: str = "flow"
    end_at: datetime | None = None
    place: str = ""
    category: str | None = None
    channel: str | None = None
    groups: str = ""
    num: float = 0.0
    den: float = 0.0
    value: float | None = None
    key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _dt(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v
    if isinstance(v, str) and v:
        try:
            d = datetime.fromisoformat(v)
        except ValueError:
            return None
        return d if d.tzinfo else None
    return None


def _secs(a: datetime, b: datetime) -> float:
    return max(0.0, (b - a).total_seconds())


def _place(evs: list[Ev]) -> str:
    for e in reversed(evs):
        if e.grid:
            return e.grid
    for e in reversed(evs):
        if e.community:
            return e.community
    return ""


def _latest(evs: list[Ev], key: str) -> Any:
    for e in reversed(evs):
        v = e.data.get(key)
        if v not in (None, "", []):
            return v
    return None


def _groups(evs: list[Ev]) -> str:
    tags: set[str] = set()
    for e in evs:
        tags.update(str(t) for t in (e.data.get("groups") or []))
    return "," + ",".join(sorted(tags)) + "," if tags else ""


def derive_request(evs: list[Ev]) -> list[Obs]:
    submitted = [e for e in evs if e.type == "request.submitted"]
    sub_at = submitted[0].occurred_at if submitted else None
    if sub_at is None:  # the submission has not arrived yet: later events carry the submission time
        sub_at = min((d for e in evs if (d := _dt(e.data.get("submitted_at")))), default=None)
    if sub_at is None:
        return []
    base = dict(place=_place(evs), category=_latest(submitted or evs, "category") or _latest(evs, "category"),
                channel=_latest(submitted or evs, "channel") or _latest(evs, "channel"), groups=_groups(evs))
    priority = _latest(evs, "priority")
    online = _latest(submitted or evs, "online")
    if online is None:
        online = base["channel"] in ONLINE_CHANNELS
    due = _dt(_latest(evs, "resolution_due_at"))
    first_response = min((e.occurred_at for e in evs if e.type in FIRST_RESPONSE), default=None)
    started = min((e.occurred_at for e in evs if e.type == "request.started"), default=None)
    departments = {str(d) for e in evs for d in ([e.data.get("department")] + list(e.data.get("departments") or []))
                   if d}

    # Walk the lifecycle in time order: a reopen undoes an earlier resolution.
    resolved_at = closed_at = None
    ended = False
    rating_at, rating = None, None
    for e in evs:
        if e.type == "request.reopened":
            resolved_at = closed_at = None
            ended = False
        elif e.type == "request.resolved" and resolved_at is None:
            resolved_at = e.occurred_at
        elif e.type == "request.closed":
            closed_at = e.occurred_at
        elif e.type in TERMINAL_NO_OUTCOME or e.type == "request.rejected":
            ended = True
        elif e.type == "request.rated":
            rating_at, rating = e.occurred_at, e.data.get("rating")
    done = resolved_at or closed_at
    cancelled = any(e.type in TERMINAL_NO_OUTCOME for e in evs) and done is None

    out: list[Obs] = []
    if not cancelled:
        out.append(Obs("resolution", sub_at, num=1.0 if done else 0.0, den=1.0, **base))
    if first_response:
        out.append(Obs("response_time", first_response, value=_secs(sub_at, first_response), **base))
    if done:
        out.append(Obs("closure_time", done, value=_secs(sub_at, done), **base))
        out.append(Obs("online", done, num=1.0 if online else 0.0, den=1.0, **base))
        if len(departments) >= 2:
            out.append(Obs("cross_dept_time", done, value=_secs(sub_at, done), **base))
    if priority == "emergency" or base["category"] == "emergency":
        if first_response:
            out.append(Obs("emergency_ack", first_response, value=_secs(sub_at, first_response), **base))
        handled = started or done
        if handled:
            out.append(Obs("emergency_handle", handled, value=_secs(sub_at, handled), **base))
    if due is not None:
        if done:
            out.append(Obs("on_time", done, num=1.0 if done <= due else 0.0, den=1.0, **base))
            if done > due:  # it was open and overdue from `due` until it was done
                out.append(Obs("on_time", due, mode="stock", end_at=done, den=1.0, **base))
        elif not cancelled and not ended:
            out.append(Obs("on_time", due, mode="stock", den=1.0, **base))
    if rating is not None and rating_at is not None:
        r = float(rating)
        out.append(Obs("satisfaction", rating_at, num=1.0 if r >= 4 else 0.0, den=1.0, value=r, **base))
    age = next((e.data.get("requester_age") for e in submitted if e.data.get("requester_age") is not None), None)
    requester = next((e.data.get("requester_id") for e in submitted if e.data.get("requester_id")), None)
    if age is not None and requester and int(age) >= 65:
        out.append(Obs("elderly_active", sub_at, key=str(requester), num=1.0, **base))
    return out


def derive_need(evs: list[Ev]) -> list[Obs]:
    created = next((e for e in evs if e.type == "need.created"), None)
    base = dict(place=_place(evs), category=_latest(evs, "category"), groups=_groups(evs))
    out: list[Obs] = []
    for e in evs:  # match accuracy: every answered offer, accepted or not
        if e.type in ("offer.accepted", "offer.declined", "offer.expired"):
            out.append(Obs("match_accuracy", e.occurred_at, num=1.0 if e.type == "offer.accepted" else 0.0,
                           den=1.0, **base))
    if created is None:
        return out
    accepted = min((e.occurred_at for e in evs if e.type == "offer.accepted"), default=None)
    out.append(Obs("match", created.occurred_at, num=1.0 if accepted else 0.0, den=1.0, **base))
    if accepted:
        out.append(Obs("match_time", accepted, value=_secs(created.occurred_at, accepted), **base))
    return out


def _segments(evs: list[Ev], kpi: str, state) -> list[Obs]:
    """Stock observations from a sequence of state changes: each state holds until the next event.

    `state(ev)` returns (num, den) for the state the event starts, or None when the entity ends there."""
    out: list[Obs] = []
    place = _place(evs)
    current: Obs | None = None
    for e in evs:
        s = state(e)
        if s is ...:
            continue  # the event does not change this indicator
        if current is not None:
            current.end_at = e.occurred_at
            current = None
        if s is not None:
            current = Obs(kpi, e.occurred_at, mode="stock", place=place, category=_latest(evs, "category"),
                          num=float(s[0]), den=float(s[1]))
            out.append(current)
    return [o for o in out if o.end_at is None or o.end_at > o.at]


def derive_person(evs: list[Ev]) -> list[Obs]:
    reg = next((e for e in evs if e.type == "person.registered"), None)
    if reg is None:
        return []
    out = [Obs("residents", reg.occurred_at, mode="stock", place=_place(evs), den=1.0)]
    age = reg.data.get("age")
    band = str(reg.data.get("age_band") or "")
    # age_band is by decade ("60+" = 60–69); without an exact age only 70+ is known to be 65+.
    if (age is not None and int(age) >= 65) or band in ("70+", "80+", "90+"):
        out.append(Obs("elderly65", reg.occurred_at, mode="stock", place=_place(evs), den=1.0))
    return out


def derive_member(evs: list[Ev]) -> list[Obs]:
    def state(e: Ev):
        if e.type == "member.joined":
            return (1, 0) if (e.data.get("kind") or "department") == "department" else None
        return None  # revoked
    return _segments(evs, "departments", state)


def derive_item(evs: list[Ev]) -> list[Obs]:
    def state(e: Ev):
        if e.type == "catalogue.item_withdrawn":
            return None
        return (1 if e.data.get("online") else 0, 1)
    return _segments(evs, "coverage", state)


def derive_exchange_item(evs: list[Ev]) -> list[Obs]:
    return _segments(evs, "interop", lambda e: (1 if e.data.get("shared") else 0, 1 if e.data.get("required", True) else 0))


def derive_call(evs: list[Ev]) -> list[Obs]:
    """The gateway's exchange calls (`exchange.calls`, counted per resource, member, outcome and minute; or
    `exchange.call`, one each): calls as den, refused calls (401 / 403 / 429) as num, by resource (category)."""
    out = []
    for e in evs:
        count = int(e.data.get("count") or 1)
        out.append(Obs("exchange_calls", e.occurred_at, category=(e.data.get("resource") or "")[:48] or None,
                       num=float(count if e.data.get("refused") else 0), den=float(count)))
    return out


def derive_resource(evs: list[Ev]) -> list[Obs]:
    return _segments(evs, "resources", lambda e: (1, 1) if e.type == "resource.listed" else None)


def derive_volunteer(evs: list[Ev]) -> list[Obs]:
    reg = next((e for e in evs if e.type == "volunteer.registered"), None)
    return [Obs("volunteers", reg.occurred_at, mode="stock", place=_place(evs), num=1.0)] if reg else []


def derive_hours_offer(evs: list[Ev]) -> list[Obs]:
    return [Obs("volunteer_hours", e.occurred_at, place=_place([e]), den=float(e.data.get("minutes") or 0))
            for e in evs]


def derive_posting(evs: list[Ev]) -> list[Obs]:
    out = []
    for e in evs:
        if e.data.get("kind") == "credit" and e.data.get("unit") == "minute":
            used = sum(float(x.get("amount") or 0) for x in e.data.get("entries") or [] if float(x.get("amount") or 0) > 0)
            out.append(Obs("volunteer_hours", e.occurred_at, place=_place([e]), num=used))
    return out


def derive_participation(evs: list[Ev]) -> list[Obs]:
    return [Obs("participation", e.occurred_at, place=_place([e]), key=str(e.data.get("person_id")), num=1.0)
            for e in evs]


def derive_vote(evs: list[Ev]) -> list[Obs]:
    """A closed vote: ballots cast of the electorate eligible (turnout)."""
    return [Obs("vote_turnout", e.occurred_at, place=_place([e]), num=float(e.data.get("cast") or 0),
                den=float(e.data.get("eligible") or 0)) for e in evs if e.type == "deliberation.vote_closed"]


def derive_resolution(evs: list[Ev]) -> list[Obs]:
    """A resolution counts in the period of its last deadline: executed by then (1 of 1) or not (0 of 1)."""
    made = next((e for e in evs if e.type == "deliberation.resolution_created"), None)
    due = _dt(made.data.get("due_at")) if made else None
    if due is None:
        return []
    done = next((e for e in evs if e.type == "deliberation.resolution_executed"), None)
    on_time = bool(done and done.data.get("on_time"))
    return [Obs("resolution_execution", due, place=_place(evs), category=made.data.get("category"),
                num=1.0 if on_time else 0.0, den=1.0)]


def derive_task(evs: list[Ev]) -> list[Obs]:
    """A resolution task past its deadline (warned once by svc_services' scan): open, a stock, until it is done;
    `key` names its topic (the subject of deliberation events), `category` the kind of owner."""
    late = next((e for e in evs if e.type == "deliberation.task_overdue"), None)
    if late is None:
        return []
    done = next((e for e in evs if e.type == "deliberation.task_done"), None)
    return [Obs("task_overdue", late.occurred_at, mode="stock", end_at=done.occurred_at if done else None,
                place=_place([late]), category=late.data.get("owner_kind"), key=late.subject, num=1.0)]


ROOM_USED = ("booking.checked_in", "booking.completed")


def derive_booking(evs: list[Ev]) -> list[Obs]:
    """A booking (category: the resource's kind): an attempt when requested (booking_conflict_rate's denominator);
    once its slot is reached (checked in, completed or no-show), counted at its slot's start (the latest, after a
    reschedule) for the no-show rate, and its minutes as used room time (room_utilisation's numerator)."""
    base = dict(place=_place(evs), category=_latest(evs, "kind"))
    asked = next((e for e in evs if e.type == "booking.requested"), None)
    out = [Obs("booking_attempt", asked.occurred_at, den=1.0, **base)] if asked else []
    slot = _dt(_latest(evs, "starts_at"))
    no_show = any(e.type == "booking.no_show" for e in evs)
    used = any(e.type in ROOM_USED for e in evs)
    if slot is not None and (no_show or used):
        out.append(Obs("booking_no_show", slot, num=1.0 if no_show else 0.0, den=1.0, **base))
        if used:
            out.append(Obs("room_used", slot, num=float(_latest(evs, "minutes") or 0), **base))
    return out


def derive_booking_conflict(evs: list[Ev]) -> list[Obs]:
    """A request refused because its slot was full: an attempt that conflicted."""
    return [Obs("booking_attempt", e.occurred_at, place=_place([e]), category=e.data.get("kind"), num=1.0, den=1.0)
            for e in evs]


def derive_bookable(evs: list[Ev]) -> list[Obs]:
    """A bookable resource's open place-minutes per week (open minutes × capacity), a stock from its listing:
    room_utilisation scales it to the period (measure.open_time)."""
    listed = next((e for e in evs if e.type == "bookable_resource.listed"), None)
    if listed is None:
        return []
    d = listed.data
    week = d.get("place_minutes_per_week")
    if week is None:
        week = float(d.get("open_minutes_per_week") or 0) * float(d.get("capacity") or 1)
    return [Obs("room_open", listed.occurred_at, mode="stock", place=_place(evs), category=d.get("kind"),
                den=float(week))]


def derive_activity(evs: list[Ev]) -> list[Obs]:
    """An activity published and not cancelled, counted once in the month it starts (activities_per_month)."""
    pub = next((e for e in evs if e.type == "activity.published"), None)
    start = _dt(pub.data.get("starts_at")) if pub else None
    if start is None or any(e.type == "activity.cancelled" for e in evs):
        return []
    return [Obs("activities", start, place=_place(evs), category=pub.data.get("category"), num=1.0)]


def derive_place(evs: list[Ev]) -> list[Obs]:
    """A community created (svc_residents' places): the stock of communities a per-community figure divides by."""
    made = next((e for e in evs if e.type == "place.created" and e.data.get("level") == "community"), None)
    return [Obs("communities", made.occurred_at, mode="stock", place=_place([made]), num=1.0)] if made else []


def derive_notice(evs: list[Ev]) -> list[Obs]:
    """A public notice published (公示), counted per kind in the period of its publication."""
    pub = next((e for e in evs if e.type == "public_notice.published"), None)
    return [Obs("notices_published", pub.occurred_at, place=_place([pub]), category=pub.data.get("kind"),
                num=1.0)] if pub else []


DERIVE = {
    "booking": derive_booking,
    "booking_conflict": derive_booking_conflict,
    "bookable": derive_bookable,
    "activity": derive_activity,
    "place": derive_place,
    "public_notice": derive_notice,
    "resolution_task": derive_task,
    "vote": derive_vote,
    "resolution": derive_resolution,
    "request": derive_request,
    "need": derive_need,
    "person": derive_person,
    "member": derive_member,
    "item": derive_item,
    "exchange_item": derive_exchange_item,
    "call": derive_call,
    "resource": derive_resource,
    "volunteer": derive_volunteer,
    "hours_offer": derive_hours_offer,
    "posting": derive_posting,
    "participation": derive_participation,
}


def derive(entity_kind: str, evs: list[Ev]) -> list[Obs]:
    fn = DERIVE.get(entity_kind)
    if fn is None:
        return []
    evs = sorted(evs, key=lambda e: (e.occurred_at, e.event_id))
    return fn(evs)
