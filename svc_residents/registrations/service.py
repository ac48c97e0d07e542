"""Registering a person whose ID number is already on record out of the registering staff's reach (issue 23,
finding 9).

One ID number is one person (一人一档), so no second record is made; and the answer must not tell staff of
community B that the number is on record in community A (or anywhere else they cannot see), nor whose it is.
Most often the person moved: B's registration is filed as pending (待核实) and B is answered 202 "submitted for
confirmation", with the registration's id and nothing about the existing record. Staff who can see that record
(its community or street staff, or ops) confirm it, and the one record moves into B's household with the
residency B gave (both households' events, the person's change history), or refuse it (a mistyped number, a
person who has not moved). B then sees the outcome: confirmed, with the person's id (now in B's reach), or
refused. A number on record where the caller can see it is still a 409 naming that record.

What B can still tell is that this registration waits for confirmation where a new number's is made at once:
what staff holding the person's ID card learn anyway. Where, whose and under which name stay hidden, and every
such ask is put before the staff of the existing record, so probing numbers shows.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Problem
from common.ids import new_id
from svc_residents import access
from svc_residents.households.models import Household
from svc_residents.households.service import move_member
from svc_residents.persons.elector_feed import sync_electors
from svc_residents.persons.place_feed import send_place
from svc_residents.persons.models import Person, PersonChange
from svc_residents.persons.schemas import PersonCreate
from svc_residents.registrations.models import PersonRegistration
from svc_residents.registrations.schemas import RegistrationOut

DECIDERS = (*access.REVEAL_STAFF, "ops")
DETAIL = {
    "pending": ("登记已提交，待核实后生效", "Submitted; the registration takes effect once confirmed"),
    "confirmed": ("已确认，居民档案已迁入该户", "Confirmed: the person's record is in this household now"),
    "refused": ("未予确认", "Not confirmed"),
}


def not_found() -> Problem:
    return Problem(404, "registration.not_found", ("登记不存在或无权查看", "Registration not found"))


def registration_out(reg: PersonRegistration, principal: Principal, person: Person | None,
                     lang: str = "zh-CN") -> RegistrationOut:
    """`person_id` only to a caller who may see that record (before a confirmation: not the registering side)."""
    visible = person is not None and access.can_read_person(principal, person)
    zh, en = DETAIL[reg.status]
    return RegistrationOut(id=reg.id, status=reg.status, detail=en if lang.startswith("en") else zh,
                           household_id=reg.household_id, name=reg.name, residency_type=reg.residency_type,
                           relation_to_head=reg.relation_to_head, is_head=reg.is_head,
                           person_id=person.id if visible else None, requested_by=reg.requested_by,
                           requested_at=reg.requested_at, decided_by=reg.decided_by, decided_at=reg.decided_at,
                           note=reg.note)


async def file(session: AsyncSession, principal: Principal, existing: Person, household: Household,
               body: PersonCreate, now: datetime) -> PersonRegistration:
    """The pending registration of `existing` into `household`; the one already pending if asked again."""
    pending = (await session.execute(select(PersonRegistration).where(
        PersonRegistration.person_id == existing.id, PersonRegistration.household_id == household.id,
        PersonRegistration.status == "pending"))).scalars().first()
    if pending is not None:
        return pending
    reg = PersonRegistration(id=new_id(), person_id=existing.id, household_id=household.id, name=body.name.strip(),
                             residency_type=body.residency_type, relation_to_head=body.relation_to_head,
                             is_head=body.is_head, status="pending", requested_by=principal.caller,
                             requested_role=principal.role, requested_at=now)
    session.add(reg)
    await session.flush()
    return reg


async def list_registrations(session: AsyncSession, principal: Principal, *, status: str | None,
                             after: str | None, limit: int) -> list[tuple[PersonRegistration, Person]]:
    """Those of a record the caller can see (to decide) and those into a household it can see (its asks)."""
    access.require_staff(principal)
    stmt = (select(PersonRegistration, Person)
            .join(Person, Person.id == PersonRegistration.person_id)
            .join(Household, Household.id == PersonRegistration.household_id)
            .where(or_(access.person_visibility(principal, Person), access.household_visibility(principal, Household)))
            .order_by(PersonRegistration.id).limit(limit + 1))
    if status:
        stmt = stmt.where(PersonRegistration.status == status)
    if after:
        stmt = stmt.where(PersonRegistration.id > after)
    return [(reg, person) for reg, person in (await session.execute(stmt)).all()]


async def _for_decision(session: AsyncSession, principal: Principal,
                        registration_id: str) -> tuple[PersonRegistration, Person, Household]:
    access.require_staff(principal)
    reg = await session.get(PersonRegistration, registration_id, with_for_update=True)
    person = await session.get(Person, reg.person_id, with_for_update=True) if reg else None
    household = await session.get(Household, reg.household_id) if reg else None
    if reg is None or not (access.can_read_person(principal, person)
                           or access.can_read_household(principal, household)):
        raise not_found()
    # the registering side sees its ask but does not decide it (nor learn here whose record it is)
    if principal.role not in DECIDERS or not access.staff_covers(principal, person.grid_code):
        raise Problem(403, "registration.not_decider", ("该登记由负责核实的工作人员确认",
                                                        "This registration is decided by the staff who check it"))
    if reg.status != "pending":
        raise Problem(409, "registration.decided", ("该登记已处理", "This registration was decided already"),
                      extra={"status": reg.status})
    return reg, person, household


def _decided(reg: PersonRegistration, principal: Principal, status: str, note: str | None, now: datetime) -> None:
    reg.status, reg.decided_by, reg.decided_at = status, principal.caller, now
    reg.note = (note or "").strip() or None


async def confirm(session: AsyncSession, principal: Principal, registration_id: str, note: str | None,
                  now: datetime) -> tuple[PersonRegistration, Person]:
    """The person moved: the one record goes into the registration's household, with a trail."""
    reg, person, household = await _for_decision(session, principal, registration_id)
    if person.merged_into:
        raise Problem(409, "person.merged", ("该档案已合并到另一份档案", "This record was merged into another"),
                      extra={"merged_into": person.merged_into})
    before = {"household_id": person.household_id, "community_code": person.community_code,
              "residency_type": person.residency_type, "relation_to_head": person.relation_to_head}
    moved = person.household_id != household.id
    heads = [household.head_person_id]  # a head replaced by this registration is a head no more
    if moved:
        old = await session.get(Household, person.household_id)
        move_member(session, person, old, household, now, head=reg.is_head)
    elif reg.is_head:
        household.head_person_id = person.id
    person.residency_type, person.relation_to_head = reg.residency_type, reg.relation_to_head
    person.version += 1
    person.updated_at = now
    if moved:  # svc_matching's person-place replica follows the move
        send_place(session, person, now)
    await sync_electors(session, [person.id, *heads], now=now)  # svc_services' electorate
    session.add(PersonChange(
        id=new_id(), person_id=person.id, field="household_id", change="moved", old=before,
        new={"household_id": household.id, "community_code": household.community_code,
             "residency_type": reg.residency_type, "relation_to_head": reg.relation_to_head,
             "registration_id": reg.id, "requested_by": reg.requested_by},
        source=principal.role, actor=principal.caller, verification_id=None, occurred_at=now))
    _decided(reg, principal, "confirmed", note, now)
    await session.flush()
    return reg, person


async def refuse(session: AsyncSession, principal: Principal, registration_id: str, note: str | None,
                 now: datetime) -> tuple[PersonRegistration, Person]:
    reg, person, _ = await _for_decision(session, principal, registration_id)
    _decided(reg, principal, "refused", note, now)
    await session.flush()
    return reg, person
