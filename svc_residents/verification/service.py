"""Once-only verification (一次采集): ask the owning departments through the gateway's exchange instead of asking
the resident for paper, and record what they vouch for.

1. (one transaction) the caller's access is checked, the ID number is decrypted for the question (the read is
   recorded in the access audit), and each department to ask gets a `pending` record: if anything stops here the
   record says so and a later POST retries it;
2. (no transaction held) every department is asked at `/departments/{code}/v1/queries` in parallel, with
   svc_residents' own token (the exchange checks the member's grant and logs the exchange);
3. (one transaction) each answer is applied: a department's "yes" sets or upgrades the tag (source=department,
   verified, verified-at now); its "no" expires a tag that same department vouched for earlier; a staff- or
   self-entered value is never changed silently: an upgrade is written to the person's change history with the
   old value, and a department "no" against a staff-entered tag is recorded as a conflict for staff to resolve,
   leaving the tag as it is. Events person.tagged / person.verified go to the outbox.

A time-out, an unreachable department, a refused exchange or an unusable answer leaves the record `pending`,
`refused` or `failed` with the reason; POST again asks only the departments not yet done (or all with refresh).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal, ServiceTokenProvider
from common.clock import Clock
from common.context import request_id_var
from common.errors import Problem
from common.crypto import FieldProtection
from common.db import Database
from common.http_client import ServiceClient, UpstreamError, UpstreamTimeout
from common.ids import new_id
from common.outbox import record_event
from svc_residents import access, protection as prot
from svc_residents.audit.models import AccessAudit
from svc_residents.base import OutboxEvent
from svc_residents.persons.models import Person, PersonChange, PersonTag
from svc_residents.persons.profile_feed import sync_profile
from svc_residents.persons.service import get_person
from svc_residents.verification.departments import DEPARTMENTS, Findings, UnusableAnswer, interpret
from svc_residents.verification.models import Verification

VERIFIERS = access.PLACE_STAFF  # grid workers, community and street staff of the person's place


@dataclass
class Outcome:
    status: str  # done / pending / refused / failed
    reason: str | None = None
    findings: Findings | None = None


def _problem_code(resp) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


async def ask(client: ServiceClient, provider: ServiceTokenProvider | None, code: str, id_number: str,
              person_id: str) -> Outcome:
    """`client`: the department's; `provider`: svc_residents' own token, or None to send the caller's."""
    headers = {"X-OneNet-Purpose": quote(f"居民 {person_id} 一次采集核验（{DEPARTMENTS[code][0]}） once-only "
                                         f"verification", safe="")}
    try:
        if provider is not None:  # the exchange member svc_residents holds the grants
            headers["Authorization"] = f"Bearer {await provider()}"
        resp = await client.post(f"/departments/{code}/v1/queries", json={"id_number": id_number},
                                 headers=headers, idempotent=True, forward_caller_token=provider is None)
    except UpstreamTimeout:
        return Outcome("pending", "部门应答超时，可重试 / the department timed out; retry")
    except UpstreamError:
        return Outcome("pending", "部门系统暂时无法访问，可重试 / the department is unreachable; retry")
    except Exception as exc:  # noqa: BLE001 - e.g. the token endpoint is down: nothing was asked
        return Outcome("pending", f"无法取得交换凭证，可重试 / no exchange token ({type(exc).__name__}); retry")
    if resp.status_code == 200:
        try:
            return Outcome("done", findings=interpret(code, id_number, resp.json()))
        except (UnusableAnswer, ValueError) as exc:
            return Outcome("failed", str(exc) or "部门应答无法使用 / unusable answer")
    problem = _problem_code(resp)
    if resp.status_code in (401, 403):
        return Outcome("refused", f"数据交换拒绝（{problem or resp.status_code}），取得授权后可重试 / "
                                  f"refused by the exchange; retry once granted")
    if resp.status_code in (408, 429) or resp.status_code >= 500:
        return Outcome("pending", f"部门暂时无法应答（HTTP {resp.status_code}），可重试 / "
                                  f"the department could not answer; retry")
    return Outcome("failed", f"部门无法核验（HTTP {resp.status_code}{' ' + problem if problem else ''}） / "
                             f"the department could not verify")


# ---------------------------------------------------------------- recording

def _tag_snapshot(tag: PersonTag) -> dict[str, Any]:
    return {"source": tag.source, "source_department": tag.source_department, "verified": tag.verified,
            "verified_at": tag.verified_at.isoformat() if tag.verified_at else None,
            "valid_until": tag.valid_until.isoformat() if tag.valid_until else None,
            "recorded_by": tag.recorded_by, "note": tag.note}


def _change(session: AsyncSession, person: Person, field: str, change: str, old, new, source: str, actor: str,
            now: datetime, verification_id: str | None = None) -> None:
    session.add(PersonChange(id=new_id(), person_id=person.id, field=field, change=change, old=old, new=new,
                             source=source, actor=actor, verification_id=verification_id, occurred_at=now))


async def tell_resident(session: AsyncSession, person: Person, verification_id: str, tag_code: str,
                        now: datetime) -> None:
    """A department's answer contradicts what was recorded: the person is asked to confirm (notifications)."""
    from svc_residents.codes import TAGS
    from svc_residents.notifications import rules

    await rules.handle(session, "verification.needs_resident", f"{verification_id}:{tag_code}",
                       {"person_id": person.id, "field": TAGS.get(tag_code, (tag_code,))[0],
                        "community": person.community_code, "grid": person.grid_code}, now=now)


def _event(session: AsyncSession, type_: str, person: Person, now: datetime, **data) -> None:
    record_event(session, OutboxEvent, type_, subject=person.id, data=data, now=now,
                 community=person.community_code, grid=person.grid_code)


async def _apply(session: AsyncSession, person: Person, v: Verification, f: Findings, actor: str,
                 now: datetime) -> dict[str, list[str]]:
    code = v.department
    source = f"department:{code}"
    recorder = f"verification/{code}"
    out: dict[str, list[str]] = {"set": [], "confirmed": [], "upgraded": [], "expired": [], "conflicts": []}
    existing = {t.code: t for t in (await session.execute(
        select(PersonTag).where(PersonTag.person_id == person.id, PersonTag.code.in_(list(f.tags))))).scalars()}
    for tag_code, holds in f.tags.items():
        tag = existing.get(tag_code)
        if holds:
            if tag is None:
                tag = PersonTag(id=new_id(), person_id=person.id, code=tag_code, source="department",
                                source_department=code, verified=True, verified_at=now, valid_until=None,
                                note="部门核验 once-only verification", recorded_by=recorder, created_at=now,
                                updated_at=now)
                session.add(tag)
                _change(session, person, f"tag:{tag_code}", "set", None, _tag_snapshot(tag), source, actor, now, v.id)
                out["set"].append(tag_code)
                previous = None
            elif tag.source == "department" and tag.source_department == code and tag.verified:
                expired = tag.valid_until is not None and tag.valid_until <= now
                old = _tag_snapshot(tag)
                tag.verified_at, tag.valid_until, tag.updated_at = now, None, now
                if expired:
                    _change(session, person, f"tag:{tag_code}", "reinstated", old, _tag_snapshot(tag), source,
                            actor, now, v.id)
                out["confirmed"].append(tag_code)
                continue  # no change of substance: no person.tagged event
            else:  # a staff-, self- or other-department value: upgraded, with the old value in the history
                old = _tag_snapshot(tag)
                tag.source, tag.source_department, tag.verified = "department", code, True
                tag.verified_at, tag.valid_until, tag.recorded_by, tag.updated_at = now, None, recorder, now
                _change(session, person, f"tag:{tag_code}", "upgraded", old, _tag_snapshot(tag), source, actor, now,
                        v.id)
                out["upgraded"].append(tag_code)
                previous = {"source": old["source"], "verified": old["verified"]}
            await session.flush()
            _event(session, "person.tagged", person, now, code=tag_code, source="department", verified=True,
                   department=code, valid_until=None, previous=previous, verification_id=v.id)
        elif tag is not None:
            active = tag.valid_until is None or tag.valid_until > now
            if tag.source == "department" and tag.source_department == code:
                if active:  # the department no longer vouches for what it vouched for: the tag lapses today
                    old = _tag_snapshot(tag)
                    tag.valid_until, tag.updated_at = max(now, tag.verified_at or now), now
                    _change(session, person, f"tag:{tag_code}", "expired", old, _tag_snapshot(tag), source, actor,
                            now, v.id)
                    out["expired"].append(tag_code)
                    _event(session, "person.tagged", person, now, code=tag_code, source="department",
                           verified=True, department=code, valid_until=tag.valid_until.isoformat(), expired=True,
                           verification_id=v.id)
            elif active:  # never overwrite a staff / self / other-department value: record the conflict
                _change(session, person, f"tag:{tag_code}", "conflict", _tag_snapshot(tag),
                        {"department": code, "holds": False}, source, actor, now, v.id)
                out["conflicts"].append(tag_code)
                await tell_resident(session, person, v.id, tag_code, now)  # only the person can settle it
    if code == "gongan" and f.residency_type and f.residency_type != person.residency_type:
        old_value = person.residency_type
        person.residency_type, person.version, person.updated_at = f.residency_type, person.version + 1, now
        _change(session, person, "residency_type", "updated", {"value": old_value}, {"value": f.residency_type},
                source, actor, now, v.id)
        out["upgraded"].append("residency_type")
    return out


def verification_out(v: Verification) -> dict[str, Any]:
    return {"id": v.id, "department": v.department, "department_name": DEPARTMENTS.get(v.department, ("",))[0],
            "status": v.status, "retryable": v.status != "done", "attempts": v.attempts, "reason": v.reason,
            "result": v.result, "requested_by": v.requested_by, "created_at": v.created_at,
            "updated_at": v.updated_at, "answered_at": v.answered_at}


async def list_verifications(session: AsyncSession, principal: Principal, person_id: str) -> list[Verification]:
    person = await get_person(session, principal, person_id)
    rows = await session.execute(select(Verification).where(Verification.person_id == person.id)
                                 .order_by(Verification.department))
    return list(rows.scalars())


async def verify(db: Database, protection: FieldProtection, principal: Principal, person_id: str,
                 departments: list[str] | None, refresh: bool, *, clients: dict[str, ServiceClient],
                 provider: ServiceTokenProvider | None, clock: Clock) -> list[Verification]:
    """`clients`: one per department code; `provider`: see `ask`. `clock` is read twice: when the departments are
    asked, and when their answers are recorded."""
    wanted = list(dict.fromkeys(departments or DEPARTMENTS))
    try:
        todo, rows, id_number = await _start(db, protection, principal, person_id, wanted, refresh, clock.now())
    except IntegrityError:  # another request created the same records a moment ago
        raise Problem(409, "verification.in_progress", ("该居民正在核验中，请稍后重试",
                                                         "A verification of this person is in progress; retry"),
                      headers={"Retry-After": "2"}) from None
    if todo:
        outcomes = await asyncio.gather(*(ask(clients[c], provider, c, id_number, person_id) for c in todo))
        await _finish(db, principal, person_id, todo, rows, outcomes, clock.now())
    async with db.session() as session:
        return list((await session.execute(select(Verification).where(Verification.person_id == person_id)
                                           .order_by(Verification.department))).scalars())


async def _start(db, protection, principal: Principal, person_id: str, wanted: list[str], refresh: bool,
                 now: datetime):
    async with db.session() as session, session.begin():
        person = await get_person(session, principal, person_id)
        if principal.role not in VERIFIERS or not access.staff_covers(principal, person.grid_code):
            raise Problem(403, "forbidden", ("只有本辖区的网格员、社区或街道工作人员可以发起部门核验",
                                             "Only staff of the person's place may ask departments to verify"))
        if person.merged_into:
            raise Problem(409, "person.merged", ("该档案已合并，请核验合并后的档案",
                                                 "This record was merged; verify the record it was merged into"),
                          extra={"merged_into": person.merged_into})
        rows = {v.department: v for v in (await session.execute(
            select(Verification).where(Verification.person_id == person.id))).scalars()}
        todo = [c for c in wanted if refresh or c not in rows or rows[c].status != "done"]
        for c in todo:
            v = rows.get(c)
            if v is None:
                v = rows[c] = Verification(id=new_id(), person_id=person.id, department=c, attempts=0,
                                           created_at=now, result=None, answered_at=None)
                session.add(v)
            v.status, v.attempts, v.reason = "pending", v.attempts + 1, "正在向部门核验 / asking the department"
            v.requested_by, v.request_id, v.updated_at = principal.caller, request_id_var.get(), now
        id_number = None
        if todo:
            id_number = prot.reveal(protection, person.id, "id_number", person.id_number_enc)
            session.add(AccessAudit(id=new_id(), occurred_at=now, member=principal.member, user_id=principal.user,
                                    role=principal.role, acting_for=principal.acting_for, subject_type="person",
                                    subject_id=person.id, fields=["id_number"],
                                    purpose=("一次采集核验，发送至 " + "、".join(todo))[:200],
                                    request_id=request_id_var.get(), extra={"departments": todo}))
        await session.flush()
    return todo, rows, id_number


async def _finish(db, principal: Principal, person_id: str, todo: list[str], rows: dict, outcomes,
                  now: datetime) -> None:
    async with db.session() as session, session.begin():
        person = await session.get(Person, person_id, with_for_update=True)
        for c, o in zip(todo, outcomes):
            v = await session.get(Verification, rows[c].id, with_for_update=True)
            v.status, v.reason, v.updated_at = o.status, o.reason, now
            if o.status == "done":
                changes = await _apply(session, person, v, o.findings, principal.caller, now)
                v.result = {**o.findings.summary, "changes": changes}
                v.answered_at = now
                _event(session, "person.verified", person, now, code=f"verification:{c}", department=c,
                       verification_id=v.id,
                       tags=sorted(t for t, holds in o.findings.tags.items() if holds),
                       changes={k: vs for k, vs in changes.items() if vs})
            rows[c] = v
        await session.flush()
        # a tag set, upgraded or expired by a department: the replica follows
        await sync_profile(session, person_id, now=now)
