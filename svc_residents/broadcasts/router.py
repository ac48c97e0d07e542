from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Path, Request

from common.deps import AppClock, AppDb, CurrentPrincipal, DbSession
from common.errors import Forbidden
from common.idempotency import request_fingerprint, run_idempotent
from common.pagination import Page, PageParams
from svc_residents.base import IdempotencyRecord
from svc_residents.broadcasts import service
from svc_residents.broadcasts.models import Broadcast
from svc_residents.broadcasts.schemas import BroadcastCreate, BroadcastOut, BroadcastReport

router = APIRouter(prefix="/residents/v1/broadcasts", tags=["broadcasts 通知公告"])


@router.post("", status_code=202, response_model=BroadcastOut,
             summary="发布通知（停水通知等）：排队发送 Send a notice to a place or group")
async def create(db: AppDb, body: BroadcastCreate, request: Request, principal: CurrentPrincipal, clock: AppClock,
                 idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
    now = clock.now()

    async def make(session):
        return 202, BroadcastOut.model_validate(await service.create(session, principal, body, now=now))

    return await run_idempotent(db, IdempotencyRecord, key=idempotency_key, caller=principal.caller, now=now,
                                create=make, fingerprint=request_fingerprint("POST", request.url.path,
                                                                             body.model_dump()))


@router.get("", response_model=Page[BroadcastOut], summary="已发布的通知 Broadcasts sent in my scope")
async def list_broadcasts(session: DbSession, principal: CurrentPrincipal, page: PageParams = Depends()):
    from sqlalchemy import false, or_, select

    if principal.role not in (*service.SENDERS, "ops"):
        raise Forbidden(("只有本辖区工作人员可以查看通知", "Only place staff see broadcasts"))
    stmt = select(Broadcast)
    if principal.role != "ops":
        places = [v for k in ("grid", "community", "street", "district") for v in principal.scope_values(k)]
        stmt = stmt.where(or_(false(), *(Broadcast.place_code.startswith(p) for p in places)))
    rows = (await session.execute(page.keyset(stmt, Broadcast.id, descending=True))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=BroadcastOut.model_validate)


@router.get("/{broadcast_id}", response_model=BroadcastReport, summary="通知与送达报告 A broadcast's delivery report")
async def get_report(session: DbSession, principal: CurrentPrincipal,
                     broadcast_id: str = Path(min_length=1, max_length=36)):
    return await service.report(session, await service.get_broadcast(session, principal, broadcast_id))
