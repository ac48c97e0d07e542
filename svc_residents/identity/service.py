"""Identity resolution (一人一档): one ID number is one person, and duplicates made before verification are merged.

- The ID number's blind index is unique (`persons.id_number_bidx`), so the API, the importer and concurrent
  writers can never register one ID number twice (the database refuses the second row).
- A person registered twice under different ID numbers (a typing error in a paper ledger, an old record) is
  merged by staff: the duplicate's tags, consents and clear-read audit move to the surviving record, a missing
  phone is carried over, and the duplicate stays as a read-only record with `merged_into`, so both trails remain.
  Both records are written to the change history; household.changed (change member_merged, on the duplicate's
  household, and member_merged_in on the survivor's when it differs) and person.tagged for each tag the merge
  set go to the outbox, and the requester-profile feed drops the duplicate from svc_services' replica and sends the
  survivor's new tags (persons/profile_feed.py). (A `person.merged` event would be clearer, but svc_metrics' ingest refuses a batch
  holding an event type it does not know, so it waits until svc_metrics registers that type.)
- A duplicate whose identity a department has verified (公安 registered) is a real person: it is not merged away.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Problem, invalid
from common.ids import new_id
from common.outbox import record_event
from svc_residents import access, protection as prot
from svc_residents.audit.models import AccessAudit
from svc_residents.base import OutboxEvent
from svc_residents.households.models import Household
from svc_residents.households.service import household_event
from svc_residents.persons.models import Consent, Person, PersonChange, PersonTag
from svc_residents.persons.elector_feed import sync_electors
from svc_residents.persons.place_feed import send_place
from svc_residents.persons.profile_feed import sync_profile
from svc_residents.persons.service import get_person
from svc_residents.protection import FieldProtection
from svc_residents.verification.models import Verification

MERGERS = access.REVEAL_STAFF  # community and street staff


def _rank(tag: PersonTag) -> int:
    return (2 if tag.source == "department" else 1 if tag.source == "staff" else 0) * 2 + bool(tag.verified)


def _snap(tag: PersonTag) -> dict[str, Any]:
    return {"source": tag.source, "source_department": tag.source_department, "verified": tag.verified,
            "verified_at": tag.verified_at.isoformat() if tag.verified_at else None,
            "valid_until": tag.valid_until.isoformat() if tag.valid_until else None, "recorded_by": tag.recorded_by}


async def _identity_verified(session: AsyncSession, person_id: str) -> bool:
    v = (await session.execute(select(Verification).where(Verification.person_id == person_id,
                                                          Verification.department == "gongan"))).scalar_one_or_none()
    return bool(v and v.status == "done" and (v.result or {}).get("registered"))


async def merge(session: AsyncSession, principal: Principal, protection: FieldProtection, survivor_id: str,
                duplicate_id: str, reason: str, *, now: datetime) -> tuple[Person, Person]:
    if survivor_id == duplicate_id:
        raise invalid("duplicate_id", "merge.same_person", "不能与自身合并", "A record cannot be merged into itself")
    if principal.role not in MERGERS:
        access.require_reader(principal)
    # the record merged into must be visible (404 otherwise, whichever id sorts first), then
    # lock both rows in a fixed order, so two merges of the same pair cannot deadlock
    await get_person(session, principal, survivor_id)
    first, second = sorted((survivor_id, duplicate_id))
    locked = {}
    for pid in (first, second):
        try:
            locked[pid] = await get_person(session, principal, pid, for_update=True)
        except Problem:
            if pid == duplicate_id:
                raise invalid("duplicate_id", "merge.duplicate_unknown", "重复档案不存在或无权查看",
                              "Unknown duplicate record") from None
            raise
    survivor, dup = locked[survivor_id], locked[duplicate_id]
    if principal.role not in MERGERS or not (principal.covers_place(survivor.grid_code)
                                             and principal.covers_place(dup.grid_code)):
        raise Problem(403, "forbidden", ("只有两份档案所在辖区的社区或街道工作人员可以合并档案",
                                         "Only community or street staff covering both records may merge them"))
    if dup.merged_into == survivor.id:
        return survivor, dup  # already done: the same answer again
    if survivor.merged_into:
        raise Problem(409, "person.merged", ("保留的档案本身已被合并", "The surviving record was itself merged"),
                      extra={"merged_into": survivor.merged_into})
    if dup.merged_into:
        raise Problem(409, "person.merged", ("该重复档案已合并到其他档案", "The duplicate was merged elsewhere"),
                      extra={"merged_into": dup.merged_into})
    if await _identity_verified(session, dup.id):
        raise Problem(409, "merge.verified_identity",
                      ("该重复档案的身份已经公安核验，是另一位居民，不能合并掉",
                       "The duplicate's identity was verified by the police: it is another person"))
    actor = principal.caller
    moved: dict[str, Any] = {"tags": [], "tags_kept": [], "consents": 0, "audit": 0, "phone": False}

    def change(person: Person, field: str, kind: str, old, new) -> None:
        session.add(PersonChange(id=new_id(), person_id=person.id, field=field, change=kind, old=old, new=new,
                                 source="merge", actor=actor, verification_id=None, occurred_at=now))

    mine = {t.code: t for t in (await session.execute(
        select(PersonTag).where(PersonTag.person_id == survivor.id))).scalars()}
    theirs = list((await session.execute(select(PersonTag).where(PersonTag.person_id == dup.id))).scalars())
    for t in theirs:
        own = mine.get(t.code)
        if own is None:
            t.person_id, t.updated_at = survivor.id, now
            change(survivor, f"tag:{t.code}", "merged", None, {**_snap(t), "merged_from": dup.id})
            moved["tags"].append(t.code)
            continue
        if _rank(t) > _rank(own):  # the duplicate's value is the better-founded one: it replaces, with a trail
            old = _snap(own)
            own.source, own.source_department, own.verified = t.source, t.source_department, t.verified
            own.verified_at, own.valid_until, own.note = t.verified_at, t.valid_until, t.note
            own.recorded_by, own.updated_at = t.recorded_by, now
            change(survivor, f"tag:{t.code}", "merged", old, {**_snap(own), "merged_from": dup.id})
            moved["tags"].append(t.code)
        else:
            change(survivor, f"tag:{t.code}", "merge_kept", _snap(own), {**_snap(t), "merged_from": dup.id})
            moved["tags_kept"].append(t.code)
        change(dup, f"tag:{t.code}", "merged_away", _snap(t), {"into": survivor.id})
        await session.delete(t)
    await session.flush()
    consents = list((await session.execute(select(Consent).where(Consent.person_id == dup.id))).scalars())
    for c in consents:
        c.person_id, c.extra = survivor.id, {**(c.extra or {}), "merged_from": dup.id}
    moved["consents"] = len(consents)
    audits = list((await session.execute(select(AccessAudit).where(AccessAudit.subject_type == "person",
                                                                   AccessAudit.subject_id == dup.id))).scalars())
    for a in audits:
        a.subject_id, a.extra = survivor.id, {**(a.extra or {}), "merged_from": dup.id}
    moved["audit"] = len(audits)
    if survivor.phone_enc is None and dup.phone_enc is not None:
        phone = prot.reveal(protection, dup.id, "phone", dup.phone_enc)
        p = prot.protect_phone(protection, survivor.id, phone)  # re-encrypted: the ciphertext is bound to the row
        survivor.phone_enc, survivor.phone_bidx, survivor.phone_masked = p.ciphertext, p.blind_index, p.masked
        change(survivor, "phone", "merged", None, {"masked": p.masked, "merged_from": dup.id})
        moved["phone"] = True
    household = await session.get(Household, dup.household_id, with_for_update=True)
    if household is not None and household.head_person_id == dup.id:
        household.head_person_id = survivor.id if survivor.household_id == household.id else None
    dup.merged_into, dup.merged_at, dup.version, dup.updated_at = survivor.id, now, dup.version + 1, now
    survivor.version, survivor.updated_at = survivor.version + 1, now
    change(survivor, "merge", "merged", None, {"merged": dup.id, "reason": reason, **moved})
    change(dup, "merge", "merged_into", None, {"into": survivor.id, "reason": reason})
    if household is not None:
        household.version += 1
        household.updated_at = now
        household_event(session, household, "member_merged", now, person_id=dup.id, merged_into=survivor.id,
                        head=household.head_person_id)
    if survivor.household_id != dup.household_id:
        home = await session.get(Household, survivor.household_id)
        home.version += 1
        home.updated_at = now
        household_event(session, home, "member_merged_in", now, person_id=survivor.id, merged=dup.id)
    for code in moved["tags"]:  # the survivor's tags that the merge set
        record_event(session, OutboxEvent, "person.tagged", subject=survivor.id,
                     data={"code": code, "merged_from": dup.id}, now=now, community=survivor.community_code,
                     grid=survivor.grid_code)
    # svc_services' requester-profile replica: the duplicate leaves it, the survivor's tags may have changed
    await sync_profile(session, dup.id, now=now)
    await sync_profile(session, survivor.id, now=now)
    send_place(session, dup, now)  # svc_matching's person-place replica: the duplicate leaves the register
    # svc_services' electorate: the duplicate leaves it, the survivor may have become the head
    await sync_electors(session, [dup.id, survivor.id], now=now)
    return survivor, dup


async def changes(session: AsyncSession, principal: Principal, person_id: str) -> list[PersonChange]:
    """The person's change history, with that of the records merged into it."""
    person = await get_person(session, principal, person_id)
    if principal.role not in (*access.PLACE_STAFF, "ops") and not access.is_self_or_proxy(principal, person):
        raise Problem(403, "forbidden", ("无权查看变更记录", "You may not read the change history"))
    merged = list((await session.execute(select(Person.id).where(Person.merged_into == person.id))).scalars())
    rows = await session.execute(select(PersonChange).where(PersonChange.person_id.in_([person.id, *merged]))
                                 .order_by(PersonChange.occurred_at, PersonChange.id))
    return list(rows.scalars())

