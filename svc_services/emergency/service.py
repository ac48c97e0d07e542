"""The call-out's entries on an emergency request's timeline (svc_residents' `callout.` feed)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import Clock, FrozenClock
from common.errors import Problem, invalid
from svc_services.emergency.schemas import EntryIn
from svc_services.requests import service
from svc_services.requests.lifecycle import TRANSITIONS
from svc_services.requests.models import ServiceRequest, TimelineEntry
from svc_services.requests.schemas import TransitionIn
from svc_services.settings import ServicesSettings
from svc_services.sla.calendar import WorkCalendar

CALLOUT = Principal(member="svc_residents", user="callout", role="system")
DUTY_ZH = {"grid_worker": "网格员", "backup_worker": "备岗网格员", "community_duty": "社区值班电话",
           "street_duty": "街道值班领导"}
CHANNEL_ZH = {"voice": "语音外呼", "sms": "短信", "push": "App 推送"}


def _note(body: EntryIn) -> str:
    who = DUTY_ZH.get(body.duty, body.duty)
    if body.kind == "acknowledge":
        return f"{who}已应答紧急呼叫" + (f"：{body.note}" if body.note else "")
    if body.outcome == "nobody_on_duty":
        return f"{who}无人在岗，转下一级"
    names = "、".join(t.get("name") or t.get("user_id") or "" for t in body.targets) or who
    return f"第 {body.step + 1} 轮呼叫{who}（{names}）：{'、'.join(CHANNEL_ZH.get(c, c) for c in body.channels)}"


async def _annotate(session: AsyncSession, req: ServiceRequest, entry_id: str, action: str, actor: Principal,
                    body: EntryIn, now: datetime) -> None:
    """An entry that records without moving the request (as merge's `absorb`): the version still counts entries."""
    res = await session.execute(
        update(ServiceRequest).where(ServiceRequest.id == req.id, ServiceRequest.version == req.version)
        .values(version=ServiceRequest.version + 1, updated_at=now).execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise Problem(409, "version_conflict", ("诉求刚被他人更新，请重试", "The request just changed; retry"))
    session.add(TimelineEntry(id=entry_id, request_id=req.id, seq=req.version + 1, action=action,
                              from_state=req.state, to_state=req.state, actor=actor.caller, role=actor.role,
                              note=_note(body), occurred_at=body.occurred_at,
                              data={"step": body.step, "duty": body.duty, "channels": body.channels,
                                    "outcome": body.outcome, "targets": body.targets}))
    await session.flush()
    await session.refresh(req)


async def record_entry(session: AsyncSession, entry_id: str, body: EntryIn, *, clock: Clock,
                       settings: ServicesSettings) -> TimelineEntry:
    """Idempotent by entry id (a redelivery, or two relays, writes one entry). An acknowledgement also accepts a
    request still waiting for it, as the person who acknowledged, at the moment they did."""
    done = await session.get(TimelineEntry, entry_id)
    if done is not None:
        return done
    req = await session.get(ServiceRequest, body.request_id, with_for_update=True)
    if req is None:
        raise invalid("request_id", "emergency.unknown_request", "诉求不存在", "Unknown request")
    if req.priority != "emergency":
        raise invalid("request_id", "emergency.not_emergency", "该诉求不是紧急诉求", "Not an emergency request")
    now = clock.now()
    if body.kind == "call":
        await _annotate(session, req, entry_id, "call", CALLOUT, body, now)
    else:
        acker = Principal(member="svc_residents", user=body.actor or "unknown", role=body.role or "grid_worker")
        await _annotate(session, req, entry_id, "acknowledge", acker, body, now)
        if (req.state, "accept") in TRANSITIONS:
            # the acceptance is dated when it was acknowledged (the KPI measures alarm → acknowledgement), not
            # when this delivery arrived
            at = FrozenClock(min(max(body.occurred_at, req.created_at), now))
            move = service.Move(session, req, acker, TransitionIn(action="accept", version=req.version),
                                "紧急呼叫已应答", at.now(), WorkCalendar.from_settings(settings), at, None)
            await service.ACTION_RULES["accept"](move)
            await service.apply(session, req, acker, "accept", note="紧急呼叫已应答", expected_version=req.version,
                                changes=move.changes, clock=at, data={**move.data, "callout_entry": entry_id})
    try:
        await session.flush()
    except IntegrityError:  # the same entry written by another delivery meanwhile
        raise Problem(409, "emergency.entry_exists", ("该记录已写入", "Entry already recorded")) from None
    return await session.get(TimelineEntry, entry_id)
