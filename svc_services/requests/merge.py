"""Merging duplicates keeps both timelines: the merged request gets its `merge` entry (→ merged, `data.into` names
the target), and the target gets an `absorb` entry naming the merged request. `absorb` is an annotation, not a
move: its from and to state are the target's current state, it advances the target's version like every timeline
entry (so the version still counts the entries and a stale editor of the target gets 409), and `replay()` treats
it as a no-op."""
from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import Clock
from common.errors import Problem
from common.ids import new_id
from svc_services.requests.models import ServiceRequest, TimelineEntry


async def absorb(session: AsyncSession, target: ServiceRequest, merged: ServiceRequest, principal: Principal,
                 note: str | None, clock: Clock) -> None:
    now = clock.now()
    res = await session.execute(
        update(ServiceRequest)
        .where(ServiceRequest.id == target.id, ServiceRequest.version == target.version,
               ServiceRequest.state == target.state)
        .values(version=ServiceRequest.version + 1, updated_at=now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise Problem(409, "version_conflict", ("要合并到的诉求刚被他人更新，请重试",
                                                "The target request was just changed; retry"))
    session.add(TimelineEntry(id=new_id(), request_id=target.id, seq=target.version + 1, action="absorb",
                              from_state=target.state, to_state=target.state, actor=principal.caller,
                              role=principal.role,
                              acting_for=principal.acting_for if principal.role == "proxy" else None,
                              note=note, data={"merged": merged.id, "merged_item_code": merged.item_code},
                              occurred_at=now))
