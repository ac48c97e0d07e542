"""The call-out scheduler: every call-out whose wait for an acknowledgement is over gets its next step.

Rows are claimed as svc_services' SLA scheduler claims requests: on PostgreSQL `FOR UPDATE SKIP LOCKED` holds the
call-out until commit, so a second replica scanning at the same moment skips it, and after the commit reads a
`next_step_at` in the future and does nothing: each step is made once, whatever the number of replicas."""
from __future__ import annotations

from sqlalchemy import select

from common.clock import Clock
from common.db import Database
from svc_residents.callout.models import Callout
from svc_residents.callout.service import advance

BATCH = 200


async def _step_one(db: Database, request_id: str, clock: Clock, step_seconds: float) -> bool:
    async with db.session() as session, session.begin():
        stmt = select(Callout).where(Callout.request_id == request_id).execution_options(populate_existing=True)
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        c = (await session.execute(stmt)).scalar_one_or_none()
        now = clock.now()
        if c is None or c.state != "calling" or c.next_step_at is None or c.next_step_at > now:
            return False
        await advance(session, c, now, step_seconds)
        return True


async def run_callout_scan(db: Database, clock: Clock, step_seconds: float) -> int:
    """Steps made in this pass."""
    now = clock.now()
    async with db.session() as session:
        due = list((await session.execute(
            select(Callout.request_id).where(Callout.state == "calling", Callout.next_step_at <= now)
            .order_by(Callout.next_step_at).limit(BATCH))).scalars())
    made = 0
    for request_id in due:
        made += await _step_one(db, request_id, clock, step_seconds)
    return made
