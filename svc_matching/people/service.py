"""Rules for volunteers and needs."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Problem, invalid
from common.ids import new_id
from common.outbox import record_event
from common.errors import NotFound
from common.lookup import get_or_404
from svc_matching.access import PLACE_STAFF, is_own, sees_place
from svc_matching.base import OutboxEvent
from svc_matching.directory.service import check_windows, resolve_terms
from svc_matching.people.models import Need, Volunteer, VolunteerHourOffer
from svc_matching.people.places import known_person, reaches_person
from svc_matching.people.schemas import HoursOfferCreate, NeedCreate, VolunteerCreate
from svc_matching.timebank.service import open_account

# who records needs, lists them and asks for a need's candidates (svc_services' dispatchers among them): the
# community runs its needs list (DOMAIN.md); no department or member system (svc_matching/access.py)
NEED_STAFF = (*PLACE_STAFF, "ops")
NOT_FOUND = ("需求不存在", "Need not found")
BASE_PRIORITY = {"normal": 1, "urgent": 2, "emergency": 3}
# Special groups that raise a need's priority (DOMAIN.md: vulnerable requester raises it).
VULNERABLE = frozenset({"elderly", "living_alone", "very_old", "disabled", "dibao", "tekun", "left_behind_child",
                        "migrant_child", "infant", "low_income"})


def priority_score(priority: str, tags: list[str]) -> int:
    return BASE_PRIORITY[priority] + (1 if VULNERABLE & set(tags) else 0)


def community_of(code: str | None) -> str | None:
    return code[:12] if code and len(code) >= 12 else None


def grid_of(code: str | None) -> str | None:
    return code[:15] if code and len(code) >= 15 else None


def _check_place(principal: Principal, place_code: str | None) -> None:
    if principal.role in PLACE_STAFF and not principal.covers_place(place_code):
        raise Problem(403, "forbidden", ("只能登记本辖区内的需求或志愿者", "Only within your scope"))


async def create_volunteer(session: AsyncSession, principal: Principal, body: VolunteerCreate, now: datetime,
                           volunteer_id: str | None = None) -> Volunteer:
    _check_place(principal, body.place_code)
    check_windows(body.availability, "availability")
    await resolve_terms(session, "category", body.skills, "skills")
    # a volunteer is a person of the register within the caller's places (svc_residents' feed): an account is
    # opened for them below, and an unknown person and one elsewhere get the same answer
    if not reaches_person(principal, body.person_id, await known_person(session, body.person_id)):
        raise invalid("person_id", "volunteer.person_unknown", "找不到该居民（不存在或不在您的辖区内）",
                      "No such person within your scope")
    if (await session.execute(select(Volunteer).where(Volunteer.person_id == body.person_id))).scalar_one_or_none():
        raise Problem(409, "volunteer.exists", ("该居民已登记为志愿者", "This person is already a volunteer"))
    account = await open_account(session, "person", body.person_id, "minute", "member", now)
    data = body.model_dump()
    vol = Volunteer(id=volunteer_id or new_id(), created_at=now, status="active", account_id=account.id, **data)
    session.add(vol)
    record_event(session, OutboxEvent, "volunteer.registered", subject=vol.id,
                 data={"person_id": vol.person_id, "skills": vol.skills, "max_load": vol.max_load},
                 community=community_of(vol.place_code), grid=grid_of(vol.place_code), now=now)
    await session.flush()
    return vol


async def get_volunteer(session: AsyncSession, volunteer_id: str, principal: Principal | None = None) -> Volunteer:
    # a volunteer's record (name, home position) is personal: the person, staff of the place, ops
    return await get_or_404(session, Volunteer, volunteer_id,
                            Problem(404, "volunteer.not_found", ("志愿者不存在", "Volunteer not found")),
                            visible=None if principal is None else lambda v: _may_see_volunteer(principal, v))


def _may_see_volunteer(principal: Principal, vol: Volunteer) -> bool:
    """The volunteer themselves (as a resident, or a provider account naming the volunteer), staff of the
    volunteer's place, ops; no department or member system (no grant covers volunteers)."""
    return (sees_place(principal, vol.place_code) or is_own(principal, vol.person_id)
            or vol.id in principal.scope_values("volunteer"))


async def offer_hours(session: AsyncSession, principal: Principal, volunteer_id: str, body: HoursOfferCreate,
                      now: datetime) -> VolunteerHourOffer:
    """A volunteer pledges hours for a period (the volunteer, or staff of the volunteer's place recording it for
    them). Emits `volunteer.hours_offered` in the same transaction: the denominator of volunteer-hour utilisation
    (the time bank's credited minutes are the numerator)."""
    vol = await get_volunteer(session, volunteer_id, principal)
    own = is_own(principal, vol.person_id) or vol.id in principal.scope_values("volunteer")
    if not (own or principal.role == "ops"
            or (principal.role in ("community_staff", "street_staff") and principal.covers_place(vol.place_code))):
        raise Problem(403, "forbidden", ("只能为本人或本辖区的志愿者登记服务时长",
                                         "Only for yourself or volunteers within your scope"))
    if vol.status != "active":
        raise Problem(409, "volunteer.inactive", ("该志愿者已停用，不能登记服务时长", "The volunteer is not active"))
    end = body.period_end or body.period_start
    if end < body.period_start:
        raise invalid("period_end", "period.end_before_start", "结束日期不能早于开始日期",
                      "period_end is before period_start")
    if (end - body.period_start).days >= 31:
        raise invalid("period_end", "period.too_long", "一次登记的时段不能超过 31 天",
                      "One pledge covers at most 31 days")
    offer = VolunteerHourOffer(id=new_id(), volunteer_id=vol.id, minutes=body.minutes, period_start=body.period_start,
                               period_end=end, note=body.note, created_by=principal.caller, created_at=now)
    session.add(offer)
    record_event(session, OutboxEvent, "volunteer.hours_offered", subject=offer.id,
                 data={"volunteer_id": vol.id, "person_id": vol.person_id, "minutes": offer.minutes,
                       "period_start": offer.period_start.isoformat(), "period_end": offer.period_end.isoformat()},
                 community=community_of(vol.place_code), grid=grid_of(vol.place_code), now=now)
    await session.flush()
    return offer


async def create_need(session: AsyncSession, principal: Principal, body: NeedCreate, now: datetime) -> Need:
    if principal.role not in NEED_STAFF:
        raise Problem(403, "forbidden", ("当前角色无权登记需求", "Your role may not record needs"))
    _check_place(principal, body.place_code)
    if not body.person_id and not body.household_id:
        raise invalid("person_id", "need.subject_required", "须指定居民或户", "A person or a household is required")
    if body.window_start and body.window_end and body.window_end <= body.window_start:
        raise invalid("window_end", "window.end_before_start", "需求时段的结束时间须晚于开始时间",
                      "The time window must end after it starts")
    if (body.window_start is None) != (body.window_end is None):
        raise invalid("window_end" if body.window_end is None else "window_start", "window.incomplete",
                      "需求时段须同时给出开始和结束时间", "Give both ends of the time window")
    await resolve_terms(session, "category", [body.category], "category", single=True)
    await resolve_terms(session, "eligibility", body.requester_tags, "requester_tags")
    data = body.model_dump()
    for k in ("window_start", "window_end"):
        if data[k] is not None:
            data[k] = data[k].astimezone(timezone.utc)
    need = Need(id=new_id(), created_at=now, status="open", version=1,
                priority_score=priority_score(body.priority, body.requester_tags), **data)
    session.add(need)
    record_event(session, OutboxEvent, "need.created", subject=need.id,
                 data={"category": need.category, "priority": need.priority, "priority_score": need.priority_score,
                       "source": need.source, "source_ref": need.source_ref},
                 community=community_of(need.place_code), grid=grid_of(need.place_code), now=now)
    await session.flush()
    return need


async def get_need(session: AsyncSession, principal: Principal, need_id: str) -> Need:
    """The need, if the caller may see it; one outside their reach answers as an unknown one (404)."""
    return await get_or_404(session, Need, need_id, NotFound("need.not_found", NOT_FOUND),
                            visible=lambda need: _may_see_need(session, principal, need))


async def _may_see_need(session: AsyncSession, principal: Principal, need: Need) -> bool:
    """Staff of the need's place, ops, the person it is for (or their proxy), and a provider once it was offered
    the work; no department, member system or evaluator (no grant covers needs)."""
    if sees_place(principal, need.place_code) or is_own(principal, need.person_id):
        return True
    return principal.role == "provider" and await _offered_to(session, principal, need.id)


async def _offered_to(session: AsyncSession, principal: Principal, need_id: str) -> bool:
    from svc_matching.directory.models import Service
    from svc_matching.offers.models import Offer

    orgs = set(principal.scope_values("provider"))
    volunteers = set(principal.scope_values("volunteer"))
    for offer in (await session.execute(select(Offer).where(Offer.need_id == need_id))).scalars():
        if offer.provider_kind == "service":
            svc = await session.get(Service, offer.provider_id)
            if svc is not None and svc.organization_id in orgs:
                return True
        elif offer.provider_id in volunteers:
            return True
    return False
