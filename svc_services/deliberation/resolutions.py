"""Resolutions and follow-up (落实监督): a passed topic's resolution, tasks with owners and deadlines, progress
reports, overdue warnings (an event svc_metrics turns into a warning), execution on time."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.db import Database
from common.errors import Conflict, Forbidden, NotFound, invalid
from common.lookup import get_or_404
from common.ids import new_id
from svc_services.deliberation.access import manages, require_manager
from svc_services.deliberation.models import Resolution, ResolutionTask, TaskReport, Topic
from svc_services.deliberation.schemas import ResolutionIn, ReportIn
from svc_services.deliberation.topics import event, move

OWNER_SCOPE = {"department": "dept", "provider": "provider"}


async def create_resolution(session: AsyncSession, principal: Principal, topic: Topic, body: ResolutionIn,
                            now: datetime) -> Resolution:
    require_manager(principal, topic)
    if topic.stage != "passed":
        raise Conflict("resolution.not_passed", ("只有表决通过的议题才能形成决议", "Only a passed topic becomes a resolution"))
    for i, t in enumerate(body.tasks):
        if t.due_at <= now:
            raise invalid(f"tasks.{i}.due_at", "task.due_in_past", "任务期限须晚于现在", "A task's deadline is in the future")
    owners = list({(t.owner_kind, t.owner_ref): {"kind": t.owner_kind, "ref": t.owner_ref} for t in body.tasks}.values())
    r = Resolution(id=new_id(), topic_id=topic.id, text=body.text, owners=owners, status="executing", created_at=now)
    session.add(r)
    for t in body.tasks:
        session.add(ResolutionTask(id=new_id(), resolution_id=r.id, done_at=None, overdue_warned=False,
                                   **t.model_dump()))
    await move(session, topic, "resolve", principal, now)
    event(session, "deliberation.resolution_created", topic, now, resolution_id=r.id, tasks=len(body.tasks),
          due_at=max(t.due_at for t in body.tasks).isoformat())
    return r


async def tasks_of(session: AsyncSession, resolution_id: str) -> list[ResolutionTask]:
    return list((await session.execute(select(ResolutionTask).where(ResolutionTask.resolution_id == resolution_id)
                                       .order_by(ResolutionTask.due_at, ResolutionTask.id))).scalars())


async def resolution_of(session: AsyncSession, topic: Topic) -> Resolution:
    r = (await session.execute(select(Resolution).where(Resolution.topic_id == topic.id))).scalar_one_or_none()
    if r is None:
        raise NotFound("resolution.not_found", ("该议题尚无决议", "This topic has no resolution"))
    return r


def _owns(principal: Principal, task: ResolutionTask) -> bool:
    kind = OWNER_SCOPE.get(task.owner_kind)
    return kind is not None and principal.role in ("dept_staff", "provider") and \
        task.owner_ref in principal.scope_values(kind)


async def report(session: AsyncSession, principal: Principal, topic: Topic, task_id: str, body: ReportIn,
                 now: datetime) -> ResolutionTask:
    """A progress report by the task's owner (its department or provider) or staff over the topic; 100 % is done."""
    r = await resolution_of(session, topic)
    task = await get_or_404(session, ResolutionTask, task_id, NotFound("task.not_found", ("没有这项任务", "No such task")),
                            visible=lambda t: t.resolution_id == r.id, for_update=True)
    if not (manages(principal, topic) or _owns(principal, task)):
        raise Forbidden(("只有任务责任单位或负责该范围的工作人员可以报告进展", "Only the task's owner or the scope's staff report"),
                        code="task.not_owner")
    if task.done_at is not None:
        raise Conflict("task.done", ("任务已办结", "The task is done"))
    session.add(TaskReport(task_id=task.id, text=body.text, percent=body.percent, author=principal.caller, at=now))
    if body.percent == 100:
        task.done_at = now
        event(session, "deliberation.task_done", topic, now, task_id=task.id, on_time=now <= task.due_at)
        tasks = await tasks_of(session, r.id)
        if all(t.done_at is not None for t in tasks):
            r.status, r.executed_at = "executed", now
            await move(session, topic, "complete", "system:tasks_done", now)
            event(session, "deliberation.resolution_executed", topic, now, resolution_id=r.id,
                  on_time=all(t.done_at <= t.due_at for t in tasks))
    return task


async def warn_overdue(db: Database, now: datetime) -> int:
    """Once per task past its deadline and not done: an overdue event (svc_metrics raises the warning)."""
    async with db.session() as session, session.begin():
        rows = (await session.execute(
            select(ResolutionTask, Topic).join(Resolution, Resolution.id == ResolutionTask.resolution_id)
            .join(Topic, Topic.id == Resolution.topic_id)
            .where(ResolutionTask.done_at.is_(None), ResolutionTask.due_at < now,
                   ResolutionTask.overdue_warned.is_(False)).limit(500).with_for_update(skip_locked=True, of=ResolutionTask))).all()
        for task, topic in rows:
            task.overdue_warned = True
            event(session, "deliberation.task_overdue", topic, now, task_id=task.id, title=task.title,
                  owner_kind=task.owner_kind, owner_ref=task.owner_ref, due_at=task.due_at.isoformat())
        return len(rows)
