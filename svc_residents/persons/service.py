"""Persons (一人一档): identity from the ID number, encrypted sensitive fields, tags, consents, search."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

from sqlalchemy import exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import age_on, local_date, years_before
from common.context import request_id_var
from common.errors import Problem, invalid
from common.ids import new_id
from common.lookup import get_or_404
from common.outbox import record_event
from common.errors import check_version
from svc_residents import access, protection as prot
from svc_residents.protection import FieldProtection
from svc_residents.audit.models import AccessAudit
from svc_residents.base import OutboxEvent
from svc_residents.codes import TAGS
from svc_residents.households.models import Household
from svc_residents.households.service import household_event, move_member
from svc_residents.persons.models import Consent, Person, PersonChange, PersonTag
from svc_residents.persons.elector_feed import sync_electors
from svc_residents.persons.place_feed import send_place
from svc_residents.persons.profile_feed import sync_profile
from svc_residents.registrations import service as registrations
from svc_residents.registrations.models import PersonRegistration
from svc_residents.persons.schemas import (SELF_FIELDS, ConsentIn, PersonCreate, PersonOut, PersonSearch, PersonUpdate,
                                           TagIn, TagOut)


def not_found() -> Problem:
    return Problem(404, "person.not_found", ("居民不存在或无权查看", "Person not found"))


# ---------------------------------------------------------------- reading

async def get_person(session: AsyncSession, principal: Principal, person_id: str, *,
                     for_update: bool = False) -> Person:
    """The person if the caller may see it (404 otherwise); `for_update` locks the row for a versioned change."""
    access.require_reader(principal)
    return await get_or_404(session, Person, person_id, not_found(), for_update=for_update,
                            visible=lambda o: access.can_read_person(principal, o))


async def tags_for(session: AsyncSession, person_ids: list[str]) -> dict[str, list[PersonTag]]:
    out: dict[str, list[PersonTag]] = defaultdict(list)
    if not person_ids:
        return out
    rows = await session.execute(select(PersonTag).where(PersonTag.person_id.in_(person_ids))
                                 .order_by(PersonTag.person_id, PersonTag.code))
    for tag in rows.scalars():
        out[tag.person_id].append(tag)
    return out


def tag_out(tag: PersonTag, now: datetime) -> TagOut:
    return TagOut(code=tag.code, label=TAGS.get(tag.code, (tag.code,))[0], source=tag.source,
                  source_department=tag.source_department, verified=tag.verified, verified_at=tag.verified_at,
                  valid_until=tag.valid_until, active=tag.valid_until is None or tag.valid_until > now,
                  note=tag.note, recorded_by=tag.recorded_by, updated_at=tag.updated_at)


def person_out(person: Person, tags: list[PersonTag], *, now: datetime,
               clear: dict[str, str | None] | None = None) -> PersonOut:
    """The person as of `now` (the age on its Shanghai date, which tags are still active)."""
    return PersonOut(
        id=person.id, household_id=person.household_id, name=person.name,
        id_number=clear["id_number"] if clear else person.id_number_masked,
        phone=clear["phone"] if clear else person.phone_masked,
        revealed=clear is not None, birth_date=person.birth_date, age=age_on(person.birth_date, local_date(now)),
        sex=person.sex, residency_type=person.residency_type, relation_to_head=person.relation_to_head,
        preferred_channel=person.preferred_channel, accessibility_needs=list(person.accessibility_needs or []),
        grid_code=person.grid_code, community_code=person.community_code,
        tags=[tag_out(t, now) for t in tags], created_at=person.created_at, updated_at=person.updated_at,
        version=person.version, merged_into=person.merged_into)


def require_unmerged(person: Person) -> None:
    """A merged record is kept as the trail of the merge and no longer changes."""
    if person.merged_into:
        raise Problem(409, "person.merged", ("该档案已合并到另一份档案，请修改合并后的档案",
                                             "This record was merged into another; change that one"),
                      extra={"merged_into": person.merged_into})


async def reveal_person(session: AsyncSession, principal: Principal, protection: FieldProtection, person: Person,
                        purpose: str | None, *, now: datetime) -> dict[str, str | None]:
    """Decrypt the sensitive fields for a caller allowed to see them, and record the read (same transaction)."""
    if not access.can_reveal(principal, person):
        raise Problem(403, "person.reveal_forbidden", ("当前角色无权查看明文身份证号和手机号",
                                                       "Your role may not see clear ID numbers and phones"))
    if not purpose or not purpose.strip():
        raise invalid("purpose", "person.reveal_purpose", "查看明文须说明用途", "A purpose is required to reveal",
                      where="query")
    clear = {"id_number": prot.reveal(protection, person.id, "id_number", person.id_number_enc),
             "phone": prot.reveal(protection, person.id, "phone", person.phone_enc)}
    session.add(AccessAudit(id=new_id(), occurred_at=now, member=principal.member, user_id=principal.user,
                            role=principal.role, acting_for=principal.acting_for, subject_type="person",
                            subject_id=person.id, fields=[k for k, v in clear.items() if v is not None],
                            purpose=purpose.strip()[:200], request_id=request_id_var.get()))
    await session.flush()
    return clear


# ---------------------------------------------------------------- writing

def _person_event(session: AsyncSession, type_: str, person: Person, now: datetime, **data) -> None:
    record_event(session, OutboxEvent, type_, subject=person.id, data=data, now=now,
                 community=person.community_code, grid=person.grid_code)


async def _household_for_write(session: AsyncSession, principal: Principal, household_id: str,
                               field: str = "household_id") -> Household:
    household = await session.get(Household, household_id)
    if household is None or not access.can_read_household(principal, household):
        raise invalid(field, "person.household_unknown", "户不存在或不在您的辖区内", "Unknown household")
    if not access.staff_covers(principal, household.grid_code):
        raise Problem(403, "forbidden", ("只能在本辖区内登记居民", "You may only register persons in your scope"))
    return household


async def _on_record(session: AsyncSession, bidx: str) -> Person | None:
    return (await session.execute(select(Person).where(Person.id_number_bidx == bidx))).scalar_one_or_none()


def duplicate(principal: Principal, existing: Person | None) -> Problem:
    extra = {}
    if existing is not None and access.can_read_person(principal, existing):
        extra["existing_person_id"] = existing.id  # only to callers who may see that record anyway
    return Problem(409, "person.duplicate_id_number",
                   ("该身份证号已登记，一人只能有一份档案", "This ID number is already registered (one person, one record)"),
                   errors=[{"field": "id_number", "in": "body", "code": "person.duplicate_id_number",
                            "message": ("身份证号已存在", "ID number already registered")}], extra=extra)


async def create_person(session: AsyncSession, principal: Principal, protection: FieldProtection,
                        body: PersonCreate, *, now: datetime,
                        person_id: str | None = None) -> tuple[Person, list[PersonTag]] | PersonRegistration:
    """A new record; or, for an ID number on record out of the caller's reach, a pending registration that
    neither says so nor where (registrations/service.py: issue 23, finding 9). One on record in reach: 409."""
    access.require_staff(principal)
    resident_id = prot.check_id_number(body.id_number, today=local_date(now))
    phone = prot.check_phone(body.phone) if body.phone else None
    household = await _household_for_write(session, principal, body.household_id)
    person_id = person_id or new_id()
    pid = prot.protect_id_number(protection, person_id, resident_id.number)
    existing = await _on_record(session, pid.blind_index)
    if existing is not None:
        if access.can_read_person(principal, existing):
            raise duplicate(principal, existing)
        return await registrations.file(session, principal, existing, household, body, now)
    pphone = prot.protect_phone(protection, person_id, phone) if phone else None
    person = Person(id=person_id, household_id=household.id, name=body.name.strip(), id_number_enc=pid.ciphertext,
                    id_number_bidx=pid.blind_index, id_number_masked=pid.masked,
                    phone_enc=pphone.ciphertext if pphone else None, phone_bidx=pphone.blind_index if pphone else None,
                    phone_masked=pphone.masked if pphone else None, birth_date=resident_id.birth_date,
                    sex=resident_id.sex, residency_type=body.residency_type, relation_to_head=body.relation_to_head,
                    preferred_channel=body.preferred_channel, accessibility_needs=list(dict.fromkeys(
                        body.accessibility_needs)), grid_code=household.grid_code,
                    community_code=household.community_code, created_at=now, updated_at=now, version=1)
    session.add(person)
    try:
        await session.flush()
    except IntegrityError:  # registered by a concurrent call: a retry gets the answer above, whichever it is
        raise Problem(409, "person.registration_conflict", ("登记冲突，请重试", "Registration conflict; retry")) from None
    age = age_on(person.birth_date, local_date(now))
    _person_event(session, "person.registered", person, now, household_id=household.id,
                  residency_type=person.residency_type, sex=person.sex, age=age,
                  age_band=f"{min(age // 10 * 10, 90)}+")  # the exact age lets svc_metrics count 65+ residents
    previous_head = household.head_person_id
    if body.is_head:
        household.head_person_id = person.id
    household.version += 1
    household.updated_at = now
    household_event(session, household, "member_added", now, person_id=person.id, head=body.is_head)
    tags = [await _apply_tag(session, principal, person, t, now) for t in body.tags]
    await sync_profile(session, person.id, now=now)  # svc_services' requester-profile replica: birth date and tags
    send_place(session, person, now)  # svc_matching's person-place replica: grid and community
    # svc_services' electorate: the new member, and a head who no longer is one
    await sync_electors(session, [person.id, previous_head if body.is_head else None], now=now)
    return person, tags


async def update_person(session: AsyncSession, principal: Principal, protection: FieldProtection,
                        person_id: str, body: PersonUpdate, *, now: datetime) -> Person:
    person = await get_person(session, principal, person_id, for_update=True)
    require_unmerged(person)
    given = body.model_fields_set - {"version"}
    if access.is_self_or_proxy(principal, person):
        if given - SELF_FIELDS:
            raise Problem(403, "forbidden", ("本人或代办员只能修改手机号、首选渠道和无障碍需求",
                                             "You may change only phone, preferred channel and accessibility needs"))
    elif not access.staff_covers(principal, person.grid_code):
        raise Problem(403, "forbidden", ("无权修改该居民档案", "You may not change this person"))
    check_version(body.version, person.version, "person.version_conflict",
                  ("档案已被他人修改，请刷新后重试", "The record changed; reload and retry"))
    changed: list[str] = []
    if "phone" in given:
        if body.phone:
            p = prot.protect_phone(protection, person.id, prot.check_phone(body.phone))
            person.phone_enc, person.phone_bidx, person.phone_masked = p.ciphertext, p.blind_index, p.masked
        else:
            person.phone_enc = person.phone_bidx = person.phone_masked = None
        changed.append("phone")
    for name in ("name", "residency_type", "relation_to_head", "preferred_channel"):
        if name in given:
            value = getattr(body, name)
            if name in ("name", "residency_type") and value is None:
                raise invalid(name, "required", "不能为空", "May not be null")
            setattr(person, name, value)
            changed.append(name)
    if "accessibility_needs" in given:
        person.accessibility_needs = list(dict.fromkeys(body.accessibility_needs or []))
        changed.append("accessibility_needs")
    if "household_id" in given and body.household_id and body.household_id != person.household_id:
        old = await session.get(Household, person.household_id)
        new = await _household_for_write(session, principal, body.household_id)
        move_member(session, person, old, new, now)
        changed.append("household_id")
    if changed:
        person.version += 1
        person.updated_at = now
    if "household_id" in changed:  # svc_matching's person-place replica and svc_services' electorate follow
        send_place(session, person, now)
        await sync_electors(session, [person.id], now=now)
    await session.flush()
    return person


async def _apply_tag(session: AsyncSession, principal: Principal, person: Person, body: TagIn,
                     now: datetime) -> PersonTag:
    if access.is_self_or_proxy(principal, person):
        if body.source != "self" or body.verified:
            raise Problem(403, "tag.self_only", ("本人或代办员只能申报未核验的标签（来源 self）",
                                                 "Residents and proxies may only self-declare unverified tags"))
    elif not access.staff_covers(principal, person.grid_code):
        raise Problem(403, "forbidden", ("无权为该居民设置标签", "You may not tag this person"))
    verified_at = (body.verified_at or now).astimezone(timezone.utc) if body.verified else None
    valid_until = body.valid_until.astimezone(timezone.utc) if body.valid_until else None
    if valid_until is not None and verified_at is not None and valid_until < verified_at:
        raise invalid("valid_until", "tag.valid_until_before_verified", "有效期截止时间早于核验时间",
                      "valid_until is before verified_at")
    tag = (await session.execute(select(PersonTag).where(PersonTag.person_id == person.id,
                                                         PersonTag.code == body.code))).scalar_one_or_none()
    was_verified = bool(tag and tag.verified)
    if tag is not None and tag.verified and tag.source != "self" and body.source == "self":
        raise Problem(409, "tag.already_verified", ("该标签已由工作人员或部门核验，本人申报不能覆盖",
                                                    "A verified tag cannot be replaced by a self-declaration"))
    if tag is None:
        tag = PersonTag(id=new_id(), person_id=person.id, code=body.code, created_at=now)
        session.add(tag)
    previous = None if tag.source is None else {"source": tag.source, "verified": tag.verified}
    if tag.source is not None:  # a change of an existing value (a department's included) keeps the old one
        session.add(PersonChange(
            id=new_id(), person_id=person.id, field=f"tag:{tag.code}", change="edited",
            old={"source": tag.source, "source_department": tag.source_department, "verified": tag.verified,
                 "verified_at": tag.verified_at.isoformat() if tag.verified_at else None,
                 "valid_until": tag.valid_until.isoformat() if tag.valid_until else None,
                 "recorded_by": tag.recorded_by, "note": tag.note},
            new={"source": body.source, "source_department": body.source_department, "verified": body.verified,
                 "verified_at": verified_at.isoformat() if verified_at else None,
                 "valid_until": valid_until.isoformat() if valid_until else None,
                 "recorded_by": principal.caller, "note": body.note},
            source=principal.role, actor=principal.caller, verification_id=None, occurred_at=now))
    tag.source, tag.source_department = body.source, body.source_department
    tag.verified, tag.verified_at, tag.valid_until = body.verified, verified_at, valid_until
    tag.note, tag.recorded_by, tag.updated_at = body.note, principal.caller, now
    await session.flush()
    _person_event(session, "person.tagged", person, now, code=tag.code, source=tag.source, verified=tag.verified,
                  valid_until=tag.valid_until.isoformat() if tag.valid_until else None, previous=previous)
    if tag.verified and not was_verified:
        _person_event(session, "person.verified", person, now, code=tag.code, source=tag.source,
                      department=tag.source_department)
    return tag


async def set_tag(session: AsyncSession, principal: Principal, person_id: str, body: TagIn, *,
                  now: datetime) -> PersonTag:
    person = await get_person(session, principal, person_id)
    require_unmerged(person)
    tag = await _apply_tag(session, principal, person, body, now)
    # written only when the code or expiry changed what the replica holds
    await sync_profile(session, person.id, now=now)
    return tag


async def remove_tag(session: AsyncSession, principal: Principal, person_id: str, code: str, *,
                     now: datetime) -> None:
    person = await get_person(session, principal, person_id)
    require_unmerged(person)
    self_side = access.is_self_or_proxy(principal, person)
    if not self_side and not access.staff_covers(principal, person.grid_code):
        raise Problem(403, "forbidden", ("无权修改该居民的标签", "You may not change this person's tags"))
    tag = (await session.execute(select(PersonTag).where(PersonTag.person_id == person.id,
                                                         PersonTag.code == code))).scalar_one_or_none()
    if tag is None:
        raise Problem(404, "tag.not_found", ("该居民没有此标签", "The person has no such tag"))
    if self_side and tag.source != "self":
        raise Problem(403, "tag.self_only", ("本人或代办员只能撤回本人申报的标签",
                                             "Residents and proxies may only withdraw self-declared tags"))
    await session.delete(tag)
    _person_event(session, "person.tagged", person, now, code=code, removed=True, source=tag.source)
    await sync_profile(session, person.id, now=now)


async def add_consent(session: AsyncSession, principal: Principal, person_id: str, body: ConsentIn, *,
                      now: datetime) -> Consent:
    person = await get_person(session, principal, person_id)
    if not access.is_self_or_proxy(principal, person) and not access.staff_covers(principal, person.grid_code):
        raise Problem(403, "forbidden", ("无权为该居民记录授权", "You may not record consent for this person"))
    require_unmerged(person)
    consent = Consent(id=new_id(), person_id=person.id, purpose=body.purpose, granted=body.granted,
                      channel=body.channel, recorded_at=now, recorded_by=principal.caller,
                      recorded_role=principal.role, note=body.note,
                      extra={"acting_for": principal.acting_for} if principal.role == "proxy" else {})
    session.add(consent)
    await session.flush()
    return consent


async def list_consents(session: AsyncSession, principal: Principal, person_id: str) -> list[Consent]:
    person = await get_person(session, principal, person_id)
    rows = await session.execute(select(Consent).where(Consent.person_id == person.id)
                                 .order_by(Consent.recorded_at, Consent.id))
    return list(rows.scalars())


async def access_log(session: AsyncSession, principal: Principal, person_id: str, *, after: str | None,
                     limit: int) -> list[AccessAudit]:
    """The clear reads of one person's data: for the person (PIPL right to know) and staff who may reveal."""
    person = await get_person(session, principal, person_id)
    if not (access.can_reveal(principal, person) or principal.role == "ops"):
        raise Problem(403, "forbidden", ("无权查看访问记录", "You may not read the access log"))
    stmt = (select(AccessAudit).where(AccessAudit.subject_type == "person", AccessAudit.subject_id == person.id)
            .order_by(AccessAudit.id).limit(limit + 1))
    if after:
        stmt = stmt.where(AccessAudit.id > after)
    return list((await session.execute(stmt)).scalars())


# ---------------------------------------------------------------- search

async def search(session: AsyncSession, principal: Principal, protection: FieldProtection, q: PersonSearch,
                 after: str | None, *, now: datetime) -> list[Person]:
    access.require_reader(principal)
    stmt = select(Person).where(access.person_visibility(principal, Person)).order_by(Person.id).limit(q.limit + 1)
    if q.name:
        stmt = stmt.where(Person.name.contains(q.name.strip(), autoescape=True))
    if q.id_number:  # an exact ID number also finds a merged record (it says where it was merged into)
        number = prot.check_id_number(q.id_number).number
        stmt = stmt.where(Person.id_number_bidx == prot.id_number_index(protection, number))
    else:
        stmt = stmt.where(Person.merged_into.is_(None))
    if q.phone:
        stmt = stmt.where(Person.phone_bidx == prot.phone_index(protection, prot.check_phone(q.phone)))
    if q.grid_code:
        stmt = stmt.where(Person.grid_code == q.grid_code)
    if q.community_code:
        stmt = stmt.where(Person.community_code == q.community_code)
    if q.household_id:
        stmt = stmt.where(Person.household_id == q.household_id)
    if q.tag:
        stmt = stmt.where(exists().where(PersonTag.person_id == Person.id, PersonTag.code == q.tag,
                                         or_(PersonTag.valid_until.is_(None), PersonTag.valid_until > now)))
    if q.age_min is not None and q.age_max is not None and q.age_min > q.age_max:
        raise invalid("age_max", "search.age_range", "年龄上限小于下限", "age_max is below age_min")
    d = local_date(now)
    if q.age_min is not None:  # age >= n  ⇔  born on or before today n years ago
        stmt = stmt.where(Person.birth_date <= years_before(d, q.age_min))
    if q.age_max is not None:  # age <= n  ⇔  born after today n+1 years ago
        stmt = stmt.where(Person.birth_date > years_before(d, q.age_max + 1))
    if after:
        stmt = stmt.where(Person.id > after)
    return list((await session.execute(stmt)).scalars())
