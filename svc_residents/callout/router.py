from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import false, or_, select

from common.auth import Principal, require_roles
from common.deps import AppClock, AppDb, AppSettings, CurrentPrincipal, DbSession
from common.errors import Problem
from common.pagination import Page, PageParams
from svc_residents.access import PLACE_STAFF
from svc_residents.callout import service
from svc_residents.callout.models import Callout
from svc_residents.callout.schemas import AcknowledgeIn, AttemptOut, CalloutOut, EmergencyIn

router = APIRouter(tags=["emergency call-out 紧急呼叫"])
RequestId = Path(min_length=1, max_length=36)


def emergency_source(settings: AppSettings, principal: Principal = Depends(require_roles("system", "ops"))):
    """Only the request service (ONENET_EMERGENCY_SOURCES, svc_services) and ops start a call-out: an alarm from
    anyone else becomes a request there first (and is checked there)."""
    if principal.role == "system" and principal.member not in settings.emergency_sources:
        raise Problem(403, "callout.not_a_source", ("只有诉求工单系统（svc_services）可发起紧急呼叫",
                                                    "Only svc_services starts call-outs"))
    return principal


async def _out(session, c: Callout) -> CalloutOut:
    out = CalloutOut.model_validate(c)
    out.attempts = [AttemptOut.model_validate(a) for a in await service.attempts(session, c.request_id)]
    return out


@router.put("/residents/v1/emergencies/{request_id}", response_model=CalloutOut,
            responses={204: {"description": "快照不需要呼叫（非紧急或尚无呼叫） Nothing to call: no call-out started or held"}},
            summary="紧急诉求（svc_services 推送）：开始或停止呼叫 An emergency request's snapshot")
async def put_emergency(body: EmergencyIn, db: AppDb, session: DbSession, clock: AppClock, settings: AppSettings,
                        request_id: str = RequestId, principal: Principal = Depends(emergency_source)):
    # urgent at SQLite's write gate: the first call is written ahead of a broadcast's or the dispatcher's queue
    async with db.write_gate(urgent=True), session.begin():
        c = await service.receive(session, request_id, body, now=clock.now(),
                                  step_seconds=settings.callout_step_seconds)
        if c is None:
            return Response(status_code=204)
        return await _out(session, c)


@router.get("/residents/v1/callouts", response_model=Page[CalloutOut], summary="紧急呼叫列表 Call-outs in scope")
async def list_callouts(session: DbSession, principal: CurrentPrincipal, page: PageParams = Depends(),
                        state: Literal["calling", "acknowledged", "stopped"] | None = Query(None)):
    if principal.role not in (*PLACE_STAFF, "ops"):
        raise Problem(403, "forbidden", ("只有本辖区工作人员可以查看紧急呼叫", "Only place staff see call-outs"))
    stmt = select(Callout)
    if principal.role != "ops":
        places = [v for k in ("grid", "community", "street", "district") for v in principal.scope_values(k)]
        stmt = stmt.where(or_(false(), *(Callout.grid_code.startswith(p) for p in places)))
    if state:
        stmt = stmt.where(Callout.state == state)
    rows = (await session.execute(page.keyset(stmt, Callout.request_id, descending=True))).scalars().all()
    return page.page(rows, key=lambda r: r.request_id, item=CalloutOut.model_validate)


@router.get("/residents/v1/callouts/{request_id}", response_model=CalloutOut, summary="紧急呼叫详情 A call-out")
async def get_callout(session: DbSession, principal: CurrentPrincipal, request_id: str = RequestId):
    return await _out(session, await service.get_callout(session, principal, request_id))


@router.post("/residents/v1/callouts/{request_id}/acknowledge", response_model=CalloutOut,
             summary="应答紧急呼叫 Acknowledge a call-out")
async def acknowledge(body: AcknowledgeIn, db: AppDb, session: DbSession, principal: CurrentPrincipal,
                      clock: AppClock, request_id: str = RequestId):
    async with db.write_gate(urgent=True), session.begin():  # the chain stops ahead of bulk writers
        c = await service.acknowledge(session, principal, request_id, body, now=clock.now())
        return await _out(session, c)
