"""Call-outs: started by svc_services' snapshot of an emergency request, advanced one step at a time (here at the
start, then by the scheduler), ended by an acknowledgement or by the request being taken up elsewhere.

Each step and the acknowledgement write a `callout.changed` row to the outbox in the same transaction: the feed
relay puts it on the request's timeline in svc_services (`PUT /services/v1/emergency_log/{entry id}`)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Conflict, Forbidden, NotFound
from common.ids import new_id
from common.lookup import get_or_404
from common.outbox import record_event
from svc_residents import access
from svc_residents.base import OutboxEvent
from svc_residents.callout import chain, rosters, sending
from svc_residents.callout.models import Callout, CalloutAttempt
from svc_residents.callout.schemas import AcknowledgeIn, EmergencyIn
from svc_residents.places.models import GridWorker, Place

FEED = "callout."
NOT_FOUND = NotFound("callout.not_found", ("紧急呼叫不存在或无权查看", "Call-out not found"))
ACKNOWLEDGERS = ("grid_worker", "community_staff", "street_staff")


def may_see(principal: Principal, c: Callout) -> bool:
    return access.staff_covers(principal, c.grid_code)


async def _targets(session: AsyncSession, c: Callout, duty: str, now: datetime) -> list[dict]:
    if duty == "grid_worker":
        rows = await session.execute(select(GridWorker.user_id).where(GridWorker.grid_code == c.grid_code)
                                     .order_by(GridWorker.user_id))
        return [{"user_id": u, "name": u} for u in rows.scalars()]
    place = {"backup_worker": c.grid_code, "community_duty": c.community_code, "street_duty": c.grid_code[:9]}[duty]
    shift = await rosters.on_duty(session, place, duty, now)
    if shift is None:
        return []
    return [{"user_id": shift.user_id, "name": shift.name, "phone_masked": shift.phone_masked, "shift_id": shift.id}]


def _entry(session: AsyncSession, c: Callout, entry_id: str, *, kind: str, step: int, duty: str, targets: list[dict],
           channels: list[str], outcome: str, now: datetime, actor: str | None = None, role: str | None = None,
           note: str | None = None) -> None:
    """The step for svc_services' timeline: names and staff accounts only (the request's timeline is read by the
    requester too), no phone."""
    record_event(session, OutboxEvent, f"{FEED}changed", subject=entry_id, now=now, data={
        "request_id": c.request_id, "kind": kind, "step": step, "duty": duty,
        "targets": [{"user_id": t.get("user_id"), "name": t.get("name")} for t in targets], "channels": channels,
        "outcome": outcome, "actor": actor, "role": role, "note": note, "occurred_at": now.isoformat(),
        "version": 1})


async def advance(session: AsyncSession, c: Callout, now: datetime, step_seconds: float) -> CalloutAttempt | None:
    """Make the next step: call whoever holds the next duty; a duty nobody holds is recorded and skipped, at most
    one round of the chain at a time. The call-out waits `step_seconds` for an acknowledgement after a call."""
    called = None
    for _ in chain.CHAIN:
        duty = chain.duty_at(c.step)
        targets = await _targets(session, c, duty, now)
        outcome = "called" if targets else "nobody_on_duty"
        channels = list(chain.CHANNELS) if targets else []
        attempt = CalloutAttempt(id=new_id(), request_id=c.request_id, step=c.step, duty=duty, targets=targets,
                                 channels=channels, outcome=outcome, made_at=now)
        session.add(attempt)
        _entry(session, c, attempt.id, kind="call", step=c.step, duty=duty, targets=targets, channels=channels,
               outcome=outcome, now=now)
        c.step += 1
        if targets:
            place = await session.get(Place, c.grid_code)
            await sending.call(session, attempt_id=attempt.id, request_id=c.request_id, duty=duty, targets=targets,
                               channels=chain.CHANNELS, now=now, source=c.source, grid=c.grid_code,
                               community=c.community_code, place_name=place.name if place else "")
            called = attempt
            break
    c.next_step_at = now + timedelta(seconds=step_seconds)
    c.updated_at = now
    c.version += 1
    await session.flush()
    return called


async def receive(session: AsyncSession, request_id: str, body: EmergencyIn, *, now: datetime,
                  step_seconds: float) -> Callout | None:
    """svc_services' snapshot: a new emergency starts its call-out with its first call in this very transaction;
    a later snapshot (newer version) stops a chain whose request was taken up. Older versions change nothing."""
    c = await session.get(Callout, request_id, with_for_update=True)
    if c is None:
        if body.state not in chain.WAITING:
            return None  # taken up before svc_residents heard of it: nobody to call
        c = Callout(request_id=request_id, grid_code=body.grid, community_code=body.community,
                    person_id=body.person_id, source=body.channel, state="calling", step=0, next_step_at=now,
                    alarm_at=body.submitted_at, request_state=body.state, request_version=body.version,
                    created_at=now, updated_at=now, version=1)
        session.add(c)
        try:
            await session.flush()
        except IntegrityError:  # the same snapshot delivered twice at once: the other one starts it
            raise Conflict("callout.exists", ("该紧急呼叫已开始", "The call-out has started")) from None
        await advance(session, c, now, step_seconds)
        return c
    if body.version <= c.request_version:
        return c
    c.request_state, c.request_version = body.state, body.version
    if body.state not in chain.WAITING and c.state == "calling":
        c.state = chain.move(c.state, "stop")
        c.next_step_at = None
        c.version += 1
    c.updated_at = now
    await session.flush()
    return c


async def get_callout(session: AsyncSession, principal: Principal, request_id: str, *,
                      for_update: bool = False) -> Callout:
    return await get_or_404(session, Callout, request_id, NOT_FOUND, for_update=for_update,
                            visible=lambda c: may_see(principal, c))


async def attempts(session: AsyncSession, request_id: str) -> list[CalloutAttempt]:
    rows = await session.execute(select(CalloutAttempt).where(CalloutAttempt.request_id == request_id)
                                 .order_by(CalloutAttempt.step, CalloutAttempt.id))
    return list(rows.scalars())


async def acknowledge(session: AsyncSession, principal: Principal, request_id: str, body: AcknowledgeIn, *,
                      now: datetime) -> Callout:
    """Whoever covers the request's place and answers first takes the emergency (一人应答即止)."""
    c = await get_callout(session, principal, request_id, for_update=True)
    if principal.role not in ACKNOWLEDGERS:
        raise Forbidden(("只有网格员、社区或街道值班人员可以应答紧急呼叫",
                         "Only grid workers and community or street staff acknowledge a call-out"))
    to = chain.move(c.state, "acknowledge")
    if to is None:
        if c.state == "acknowledged":
            raise Conflict("callout.acknowledged", (f"已由 {c.acknowledged_by} 应答", f"Already acknowledged by "
                                                                                  f"{c.acknowledged_by}"),
                           extra={"acknowledged_by": c.acknowledged_by})
        raise Conflict("callout.stopped", ("该诉求已在工单系统中受理或结束，呼叫已停止",
                                           "The request was taken up; the call-out has stopped"))
    called = [a for a in await attempts(session, request_id)
              if any(t.get("user_id") == principal.user for t in a.targets)]
    duty = called[-1].duty if called else chain.ROLE_DUTY[principal.role]
    c.state, c.next_step_at = to, None
    c.acknowledged_at, c.acknowledged_by, c.acknowledged_role = now, principal.user, principal.role
    c.version += 1
    c.updated_at = now
    note = (body.note or "").strip() or None
    _entry(session, c, new_id(), kind="acknowledge", step=max(c.step - 1, 0), duty=duty, targets=[], channels=[],
           outcome="acknowledged", now=now, actor=principal.user, role=principal.role, note=note)
    await session.flush()
    return c
