"""Public notices (公示): staff publish and withdraw, residents object, staff answer; the public pages (kiosk, the
app before sign-in) read published notices WITHOUT a token (the gateway forwards `/services/v1/public/` GETs
anonymously, as Open311's reads): these routes do not depend on `get_principal`."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from common.acting import acts
from common.auth import Principal, get_principal
from common.deps import AppClock, DbSession
from common.pagination import Page, PageParams
from common.validators import ReachCode
from svc_services.deps import Idempotent
from svc_services.disclosure import service
from svc_services.disclosure.models import PublicNotice
from svc_services.disclosure.schemas import AnswerIn, NoticeIn, NoticeOut, ObjectionIn, ObjectionOut, WithdrawIn

router = APIRouter(prefix="/services/v1", tags=["public notices 公示"])
PathId = Annotated[str, Path(min_length=1, max_length=36)]
Scope = Query(None, description="只看该社区、网格或楼栋的公示")


@router.post("/notices", status_code=201, response_model=NoticeOut, summary="发布公示 Publish a notice")
async def publish(idem: Idempotent, clock: AppClock, body: NoticeIn, principal: Principal = Depends(get_principal)):
    now = clock.now()

    async def create(session):
        n = await service.publish(session, principal, body, now)
        await session.flush()
        return 201, NoticeOut.model_validate(n)

    return await idem.run(body, create, now=now)


@router.get("/notices", response_model=Page[NoticeOut], summary="公示管理（含未开始、已撤回） Notices, all states")
async def list_notices(session: DbSession, clock: AppClock, page: PageParams = Depends(), scope: ReachCode | None = Scope,
                       principal: Principal = Depends(get_principal)):
    stmt = service.public_stmt(clock.now(), scope, True, principal)
    rows = (await session.execute(page.keyset(stmt, PublicNotice.id, descending=True))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=NoticeOut.model_validate)


@router.get("/notices/{notice_id}", response_model=NoticeOut, summary="公示详情 A notice")
async def read_notice(session: DbSession, clock: AppClock, notice_id: PathId,
                      principal: Principal = Depends(get_principal)):
    return NoticeOut.model_validate(await service.get_notice(session, principal, notice_id, clock.now()))


@router.post("/notices/{notice_id}/withdraw", response_model=NoticeOut,
             summary="撤回公示（留存历史） Withdraw a notice (it stays on record)")
async def withdraw(session: DbSession, clock: AppClock, body: WithdrawIn, notice_id: PathId,
                   principal: Principal = Depends(get_principal)):
    async with session.begin():
        n = await service.get_notice(session, principal, notice_id, clock.now())
        await service.withdraw(session, principal, n, body.reason, clock.now())
    return NoticeOut.model_validate(n)


@router.post("/notices/{notice_id}/objections", status_code=201, response_model=ObjectionOut,
             dependencies=[acts("notices.object")],
             summary="提出异议（异议期内） File an objection")
async def object_to(session: DbSession, clock: AppClock, body: ObjectionIn, notice_id: PathId,
                    principal: Principal = Depends(get_principal)):
    async with session.begin():
        n = await service.get_notice(session, principal, notice_id, clock.now())
        o = await service.file_objection(session, principal, n, body.text, clock.now())
    return ObjectionOut.model_validate(o)


@router.get("/notices/{notice_id}/objections", response_model=list[ObjectionOut],
            summary="异议与答复 Objections and answers")
async def list_objections(session: DbSession, clock: AppClock, notice_id: PathId,
                          principal: Principal = Depends(get_principal)):
    n = await service.get_notice(session, principal, notice_id, clock.now())
    return [ObjectionOut.model_validate(o) for o in await service.objections(session, principal, n)]


@router.post("/notices/{notice_id}/objections/{objection_id}/answer", response_model=ObjectionOut,
             summary="答复异议 Answer an objection")
async def answer(session: DbSession, clock: AppClock, body: AnswerIn, notice_id: PathId, objection_id: PathId,
                 principal: Principal = Depends(get_principal)):
    async with session.begin():
        n = await service.get_notice(session, principal, notice_id, clock.now())
        o = await service.answer(session, principal, n, objection_id, body.answer, clock.now())
    return ObjectionOut.model_validate(o)


@router.get("/public/notices", response_model=Page[NoticeOut],
            summary="公开公示（免登录，一体机与 App 公开页） Published notices, no sign-in")
async def public_notices(session: DbSession, clock: AppClock, page: PageParams = Depends(), scope: ReachCode | None = Scope,
                         history: bool = Query(False, description="含已撤回与已过期的公示（历史留存）")):
    stmt = service.public_stmt(clock.now(), scope, history)
    rows = (await session.execute(page.keyset(stmt, PublicNotice.id, descending=True))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=NoticeOut.model_validate)


@router.get("/public/notices/{notice_id}", response_model=NoticeOut,
            summary="公开公示详情（免登录） A published notice, no sign-in")
async def public_notice(session: DbSession, clock: AppClock, notice_id: PathId):
    return NoticeOut.model_validate(await service.public_notice(session, notice_id, clock.now()))
