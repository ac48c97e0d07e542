"""The SLA scheduler: marks overdue work, escalates it up the ladder (grid → community → street → department),
recording each step on the timeline, and closes resolved requests nobody rated in time."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import Clock
from common.db import Database
from common.errors import Problem
from common.outbox import record_event
from svc_services.base import OutboxEvent
from svc_services.codes import LEVEL_ZH
from svc_services.notices.feed import record_notice
from svc_services.requests import service
from svc_services.requests.payloads import event_data
from svc_services.requests.lifecycle import OPEN
from svc_services.requests.models import ServiceRequest
from svc_services.settings import ServicesSettings

log = logging.getLogger("onenet.sla")

SCHEDULER = Principal(member="svc_services", user="sla-scheduler", role="system")
BREACH_ZH = {"response": "超过响应时限", "start": "超过处置时限（紧急事项须 3 分钟内开始处置）",
             "resolution": "超过办结时限", "still_overdue": "逾期仍未办结"}


@dataclass
class ScanReport:
    overdue: list[str] = field(default_factory=list)       # request ids newly marked overdue
    escalated: list[str] = field(default_factory=list)     # one entry per escalation step
    closed: list[str] = field(default_factory=list)
    conflicts: int = 0


def _breaches(req: ServiceRequest, now: datetime) -> list[str]:
    out = []
    responded = req.accepted_at if req.priority == "emergency" else req.first_response_at
    if req.response_due_at and responded is None and req.response_breached_at is None and req.response_due_at <= now:
        out.append("response")
    if req.start_due_at and req.started_at is None and req.start_breached_at is None and req.start_due_at <= now:
        out.append("start")
    if (req.resolution_due_at and req.resolved_at is None and req.resolution_breached_at is None
            and req.resolution_due_at <= now):
        out.append("resolution")
    return out


async def _claim(session: AsyncSession, db: Database, req_id: str) -> ServiceRequest | None:
    """Load a request for this transaction only if no other scheduler holds it.

    On PostgreSQL the row is locked (`FOR UPDATE SKIP LOCKED`) until commit: a second replica scanning at the
    same moment skips it, and once the first commits it reads the updated row (breach already recorded, next
    escalation not due) and does nothing. Staff transitions wait for the lock and then fail their version
    check, as with any concurrent change. SQLite serialises writers itself and runs one scheduler."""
    stmt = select(ServiceRequest).where(ServiceRequest.id == req_id).execution_options(populate_existing=True)
    if db.dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def _scan_one(db: Database, req_id: str, clock: Clock, settings: ServicesSettings, report: ScanReport) -> None:
    async with db.session() as session, session.begin():
        req = await _claim(session, db, req_id)
        if req is None or req.state not in OPEN:
            return
        now = clock.now()
        breaches = _breaches(req, now)
        again = (not breaches and req.overdue and req.next_escalation_at is not None
                 and req.next_escalation_at <= now)
        if not breaches and not again:
            return
        changes: dict = {f"{b}_breached_at": now for b in breaches}
        changes["overdue"] = True
        step = (timedelta(seconds=settings.emergency_escalation_seconds) if req.priority == "emergency"
                else timedelta(hours=settings.escalation_interval_hours))
        up = service.next_level(req.escalation_level)
        changes["next_escalation_at"] = now + step if up and service.next_level(up) else None
        if breaches:
            record_event(session, OutboxEvent, "request.overdue", subject=req.id, community=req.community,
                         grid=req.grid, now=now,
                         data=event_data(req, "overdue", req.state, SCHEDULER, now, {"breaches": breaches}))
            await record_notice(session, req, "overdue", now, extra={"breaches": breaches})
        newly_overdue = bool(breaches) and not req.overdue
        reasons = breaches or ["still_overdue"]
        if up is None:
            # Already at the top of the ladder: record the breach on the row, nothing left to escalate to.
            res = await session.execute(update(ServiceRequest).where(ServiceRequest.id == req.id,
                                                                     ServiceRequest.version == req.version)
                                        .values(**changes).execution_options(synchronize_session=False))
            if res.rowcount != 1:  # changed under us: roll back the event too, the next pass looks again
                raise service._stale(409)
            if newly_overdue:
                report.overdue.append(req.id)
            return
        note = f"{'、'.join(BREACH_ZH[r] for r in reasons)}，自动升级至{LEVEL_ZH[up]}"
        changes["escalation_level"] = up
        await service.apply(session, req, SCHEDULER, "escalate", note=note, expected_version=req.version,
                            changes=changes, clock=clock,
                            data={"level_from": req.escalation_level, "level_to": up, "reasons": reasons,
                                  "automatic": True})
        if newly_overdue:
            report.overdue.append(req.id)
        report.escalated.append(req.id)


async def _close_one(db: Database, req_id: str, clock: Clock, settings: ServicesSettings,
                     report: ScanReport) -> None:
    async with db.session() as session, session.begin():
        req = await _claim(session, db, req_id)
        if req is None or req.state not in ("resolved", "rated"):
            return
        now = clock.now()
        since = req.rated_at or req.resolved_at
        if since is None or since + timedelta(days=settings.auto_close_days) > now:
            return
        note = (f"办结后 {settings.auto_close_days} 天未评价，自动关闭" if req.state == "resolved"
                else f"评价后 {settings.auto_close_days} 天无异议，自动关闭")
        await service.apply(session, req, SCHEDULER, "close", note=note, expected_version=req.version,
                            changes={"closed_at": now}, clock=clock, data={"automatic": True})
        report.closed.append(req.id)


async def run_sla_scan(db: Database, clock: Clock | None = None, settings: ServicesSettings | None = None,
                       *, batch: int = 500) -> ScanReport:
    """One pass of the scheduler. Each request is handled in its own short transaction with the same version
    check as the API, so a scan racing a staff action loses cleanly (counted in `conflicts`) and retries next pass."""
    clock = clock or Clock()
    settings = settings or ServicesSettings()
    report = ScanReport()
    now = clock.now()
    R = ServiceRequest
    async with db.session() as session:
        due = list((await session.execute(
            select(R.id).where(R.state.in_(sorted(OPEN)), or_(
                (R.response_due_at <= now) & R.response_breached_at.is_(None),
                (R.start_due_at <= now) & R.start_breached_at.is_(None),
                (R.resolution_due_at <= now) & R.resolution_breached_at.is_(None) & R.resolved_at.is_(None),
                R.overdue.is_(True) & (R.next_escalation_at <= now),
            )).order_by(R.id).limit(batch))).scalars())
        cutoff = now - timedelta(days=settings.auto_close_days)
        closable = list((await session.execute(
            select(R.id).where(or_((R.state == "resolved") & (R.resolved_at <= cutoff),
                                   (R.state == "rated") & (R.rated_at <= cutoff)))
            .order_by(R.id).limit(batch))).scalars())
    # the due first, then the closable; a request another writer changed meanwhile is counted, not failed
    for step, rid in [(_scan_one, rid) for rid in due] + [(_close_one, rid) for rid in closable]:
        try:
            await step(db, rid, clock, settings, report)
        except Problem as exc:
            if exc.status in (409, 412):
                report.conflicts += 1
            else:
                raise
    if report.escalated or report.closed:
        log.info("SLA scan", extra={"overdue": len(report.overdue), "escalated": len(report.escalated),
                                    "closed": len(report.closed)})
    return report
