"""Known event types: the envelope every outbox relay sends, and each type's `data` schema.

`data` models list what svc_metrics reads (required where an indicator depends on it); producers may send more
fields (extra data is kept, not refused). The envelope itself refuses unknown fields.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat

from common.validators import CommunityCode, GridCode, Instant, JSON_INTEGER

class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=64)
    type: str = Field(min_length=1, max_length=64)
    occurred_at: Instant
    source: str | None = Field(default=None, max_length=64)
    community: CommunityCode | None = None
    grid: GridCode | None = None
    subject: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict)


class Data(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestData(Data):
    category: str | None = None
    channel: str | None = None
    priority: str | None = None
    department: str | None = None
    online: StrictBool | None = None
    submitted_at: Instant | None = None
    resolution_due_at: Instant | None = None
    response_due_at: Instant | None = None
    groups: list[str] = Field(default_factory=list)
    departments: list[str] = Field(default_factory=list)


class RequestSubmitted(RequestData):
    category: str = Field(min_length=1)
    channel: str = Field(min_length=1)


class RequestRated(RequestData):
    rating: Annotated[int, Field(ge=1, le=5), JSON_INTEGER]


class NeedCreated(Data):
    category: str = Field(min_length=1)


class OfferData(Data):
    need_id: str = Field(min_length=1)
    category: str | None = None


class LedgerPosted(Data):
    kind: str
    unit: str
    entries: list[dict[str, Any]]


class PersonRegistered(Data):
    age_band: str | None = None
    age: Annotated[int, Field(ge=0, le=150), JSON_INTEGER] | None = None


class PersonTagged(Data):
    code: str = Field(min_length=1)
    removed: StrictBool = False


class HouseholdChanged(Data):
    change: str


class MemberData(Data):
    kind: str | None = None


class ExchangeCall(Data):
    member: str | None = None
    resource: str | None = None


class ExchangeCalls(ExchangeCall):
    """The gateway's calls of one resource, member, owner, outcome and minute, counted."""
    count: Annotated[int, Field(ge=1, le=1_000_000), JSON_INTEGER]


class ExchangeItem(Data):
    item: str = Field(min_length=1)
    required: StrictBool = True
    shared: StrictBool = False


class PlaceCreated(Data):
    level: str


class CatalogueItem(Data):
    code: str = Field(min_length=1)
    online: StrictBool = False


class VolunteerRegistered(Data):
    person_id: str | None = None


class VolunteerHoursOffered(Data):
    minutes: StrictFloat = Field(ge=0)


class ParticipationRecorded(Data):
    person_id: str = Field(min_length=1)
    activity: str | None = None


class ResourceListed(Data):
    category: str = Field(min_length=1)


class Anything(Data):
    pass


class BookingData(Data):
    """svc_matching's bookings (issue 30): room utilisation (booked and used minutes ÷ open minutes), no-shows."""
    resource_id: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    minutes: Annotated[int, Field(ge=0), JSON_INTEGER] | None = None


class BookableListed(Data):
    kind: str = Field(min_length=1)
    open_minutes_per_week: Annotated[int, Field(ge=0), JSON_INTEGER]


class ActivityData(Data):
    """svc_matching's activities (issue 30): activities per month per community; check-ins."""
    activity_id: str = Field(min_length=1)
    category: str = Field(min_length=1)


class MaterialData(Data):
    """A required material of a request (svc_services, issue 27): `source` exchange (fetched from the department,
    once-only) or upload (the resident brought a file)."""

    request_id: str = Field(min_length=1)
    code: str = Field(min_length=1)
    source: str = Field(min_length=1)


@dataclass(frozen=True)
class EventType:
    data: type[Data]
    entity_kind: str
    # Which entity the event belongs to; default: the subject.
    entity: Callable[[Envelope, Data], str | None] = lambda env, _d: env.subject
    subject_required: bool = True


def _need(env: Envelope, d: Data) -> str | None:
    return getattr(d, "need_id", None) or env.subject


def _resolution(env: Envelope, d: Data) -> str | None:
    return getattr(d, "resolution_id", None) or env.subject


def _task(env: Envelope, d: Data) -> str | None:
    return getattr(d, "task_id", None) or env.subject


REQUEST_ACTIONS = ("accepted", "rejected", "dispatched", "claimed", "returned", "started", "resolved", "closed",
                   "reopened", "escalated", "cancelled", "merged", "overdue",
                   "deliberating", "resumed")  # a 大事 waiting for its topic's outcome, and going on after it

REGISTRY: dict[str, EventType] = {
    "request.submitted": EventType(RequestSubmitted, "request"),
    "request.rated": EventType(RequestRated, "request"),
    **{f"request.{a}": EventType(RequestData, "request") for a in REQUEST_ACTIONS},
    "need.created": EventType(NeedCreated, "need"),
    "match.proposed": EventType(Anything, "need", _need),
    "offer.accepted": EventType(OfferData, "need", _need),
    "offer.declined": EventType(OfferData, "need", _need),
    "offer.expired": EventType(OfferData, "need", _need),
    "offer.completed": EventType(OfferData, "need", _need),
    "ledger.posted": EventType(LedgerPosted, "posting"),
    "person.registered": EventType(PersonRegistered, "person"),
    "person.tagged": EventType(PersonTagged, "person"),
    "person.verified": EventType(PersonTagged, "person"),
    "household.changed": EventType(HouseholdChanged, "household"),
    "member.joined": EventType(MemberData, "member"),
    "member.revoked": EventType(MemberData, "member"),
    # one event per call (older gateways), or per resource, member, outcome and minute with a count
    "exchange.call": EventType(ExchangeCall, "call", lambda env, _d: env.event_id, subject_required=False),
    "exchange.calls": EventType(ExchangeCalls, "call", lambda env, _d: env.event_id, subject_required=False),
    "exchange.item": EventType(ExchangeItem, "exchange_item", lambda env, d: d.item, subject_required=False),
    "place.created": EventType(PlaceCreated, "place"),
    "grid.workers_changed": EventType(Anything, "place"),
    "catalogue.item_created": EventType(CatalogueItem, "item", lambda env, d: d.code, subject_required=False),
    "catalogue.item_versioned": EventType(CatalogueItem, "item", lambda env, d: d.code, subject_required=False),
    "catalogue.item_activated": EventType(CatalogueItem, "item", lambda env, d: d.code, subject_required=False),
    "catalogue.item_withdrawn": EventType(CatalogueItem, "item", lambda env, d: d.code, subject_required=False),
    "volunteer.registered": EventType(VolunteerRegistered, "volunteer"),
    "volunteer.hours_offered": EventType(VolunteerHoursOffered, "hours_offer", lambda env, _d: env.event_id,
                                         subject_required=False),
    "participation.recorded": EventType(ParticipationRecorded, "participation", lambda env, _d: env.event_id,
                                        subject_required=False),
    "resource.listed": EventType(ResourceListed, "resource"),
    "resource.withdrawn": EventType(Anything, "resource"),
    # once-only materials: obtained (`via` exchange or upload), a file verified or rejected by staff; a request
    # whose required materials are all present
    "material.obtained": EventType(MaterialData, "material"),
    "material.verified": EventType(MaterialData, "material"),
    "material.rejected": EventType(MaterialData, "material"),
    "request.materials_complete": EventType(Anything, "request"),
    # svc_matching's bookings and activities (issue 30); a conflict is counted per refused request
    "bookable_resource.listed": EventType(BookableListed, "bookable"),
    **{f"booking.{a}": EventType(BookingData, "booking") for a in (
        "requested", "approved", "rejected", "checked_in", "completed", "cancelled", "no_show", "rescheduled",
        "promoted")},
    "booking.conflicted": EventType(BookingData, "booking_conflict", lambda env, _d: env.event_id),
    "activity.published": EventType(ActivityData, "activity"),
    "activity.cancelled": EventType(ActivityData, "activity"),
    **{f"activity.{a}": EventType(ActivityData, "activity_signup") for a in (
        "signed_up", "signup_cancelled", "promoted", "checked_in")},
    # svc_services' resident deliberation and public notices (issue 28, ADR 0018); participation itself comes
    # as participation.recorded (a person who proposed, co-signed, commented, attended or voted)
    **{f"deliberation.{a}": EventType(Anything, "topic") for a in (
        "topic_created", "topic_moved", "comment_hidden", "meeting_recorded")},
    "deliberation.vote_closed": EventType(Anything, "vote"),
    **{f"deliberation.{a}": EventType(Anything, "resolution", _resolution) for a in (
        "resolution_created", "resolution_executed")},
    **{f"deliberation.{a}": EventType(Anything, "resolution_task", _task) for a in ("task_done", "task_overdue")},
    **{f"public_notice.{a}": EventType(Anything, "public_notice") for a in (
        "published", "withdrawn", "objection_filed", "objection_answered")},
}


def envelope_schema() -> dict[str, Any]:
    """What an event of the batch must be, as a JSON Schema (POST /metrics/v1/events declares it for each item): the
    envelope with its `type` one of the registry's, that type's `data`, and a `subject` where the type needs one.
    What is left to the server alone: a grid outside the event's community (a rule across two fields)."""
    base = Envelope.model_json_schema()
    one_of = []
    for name, spec in sorted(REGISTRY.items()):
        props = {**base["properties"], "type": {"const": name}, "data": spec.data.model_json_schema()}
        required = ["event_id", "type", "occurred_at"] + (["data"] if props["data"].get("required") else [])
        if spec.subject_required:
            props["subject"] = {"type": "string", "minLength": 1, "maxLength": 64}
            required.append("subject")
        one_of.append({"type": "object", "title": name, "properties": props, "required": required,
                       "additionalProperties": False})
    return {"anyOf": one_of}
