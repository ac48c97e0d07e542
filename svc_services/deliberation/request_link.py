"""大事社区议: a request escalated to a topic waits for the topic's outcome, and the outcome moves it on.

Opening a topic with `source=request` puts the request in `deliberating` (requests/lifecycle.py: `deliberate`),
its timeline naming the topic; no SLA timer runs while it waits. The topic's stage changes then write back:
- passed (表决通过) → `resume` to in_progress, every deadline not yet met moved on by the time it waited;
- not passed, declined or withdrawn → `resolve` (answered with the outcome; the resident rates it as any answer);
- executed (决议已落实) → `resolve` of the resumed request, if it is still being worked on.
Each is one timeline entry with the topic id and outcome in its data, made in the topic's transaction by
`requests.service.apply` (the same compare-and-set, event and notice as any move); nobody calls these moves."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import FrozenClock
from svc_services.deliberation.models import Topic
from svc_services.requests import service as requests
from svc_services.requests.lifecycle import MOVES
from svc_services.requests.models import ServiceRequest, TimelineEntry

DELIBERATION = Principal(member="svc_services", user="deliberation", role="system")
# topic action → (request action, outcome, note)
OUTCOME = {
    "pass": ("resume", "passed", "议题表决通过，按决议继续办理"),
    "fail": ("resolve", "rejected", "议题表决未通过，答复如下：维持现状"),
    "decline": ("resolve", "declined", "议题未予议决"),
    "withdraw": ("resolve", "withdrawn", "议题已撤回"),
    "complete": ("resolve", "executed", "议事决议已落实"),
}
DEADLINES = (("response_due_at", "first_response_at"), ("start_due_at", "started_at"),
             ("resolution_due_at", "resolved_at"))


async def _move(session: AsyncSession, req: ServiceRequest, action: str, note: str, data: dict, now: datetime,
                changes: dict | None = None) -> None:
    await requests.apply(session, req, DELIBERATION, action, note=note, expected_version=req.version,
                         changes=changes or {}, clock=FrozenClock(now), data=data)


async def escalated(session: AsyncSession, topic: Topic, req: ServiceRequest, actor: Principal, now: datetime) -> None:
    """The request waits for the topic opened from it (create_topic checked the request and the caller)."""
    await _move(session, req, "deliberate", f"{actor.caller} 将诉求提交居民议事：{topic.title}",
                {"topic_id": topic.id, "by": actor.caller}, now)


async def topic_moved(session: AsyncSession, topic: Topic, action: str, note: str | None, now: datetime) -> None:
    if not topic.request_id or action not in OUTCOME:
        return
    req = await session.get(ServiceRequest, topic.request_id, with_for_update=True)
    step, outcome, text = OUTCOME[action]
    waiting = req is not None and req.state == "deliberating"
    # an outcome moves a waiting request; the execution, one that went on after a pass. Anything else was answered
    # otherwise meanwhile (cancelled by its resident, say): nothing to move
    if req is None or (req.state, step) not in MOVES or waiting == (action == "complete"):
        return
    data = {"topic_id": topic.id, "outcome": outcome}
    changes: dict = {}
    if step == "resume":
        since = (await session.execute(select(TimelineEntry.occurred_at).where(
            TimelineEntry.request_id == req.id, TimelineEntry.action == "deliberate")
            .order_by(TimelineEntry.seq.desc()).limit(1))).scalar_one()
        held = now - since
        # the time it waited for the residents is not counted against it
        changes = {due: getattr(req, due) + held for due, met in DEADLINES
                   if getattr(req, due) is not None and getattr(req, met) is None}
        data["held_seconds"] = int(held.total_seconds())
    else:
        changes = {"resolved_at": now}
    await _move(session, req, step, f"{text}：{note}" if note else text, data, now, changes)
