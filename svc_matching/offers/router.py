from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from sqlalchemy import select

from common.deps import AppSettings, DbSession
from common.auth import Principal, get_principal, require_roles
from common.clock import Clock, get_clock
from common.errors import Problem
from common.pagination import Page, PageParams
from common.periodic import run_periodically
from svc_matching.access import place_condition
from svc_matching.offers import service
from svc_matching.offers.models import Offer
from svc_matching.offers.notices import remind_expiring
from svc_matching.offers.schemas import BatchRequest, CompleteBody, DeclineBody, OfferOut
from svc_matching.people.models import Need
from svc_matching.people.service import NEED_STAFF, get_need

log = logging.getLogger("onenet.matching")
router = APIRouter(prefix="/matching/v1", tags=["matching 匹配与派单"])
MATCH_ROLES = service.STAFF  # within the need's place; no department or member system (svc_matching/access.py)


def _offer_body(offer: Offer | None) -> dict | None:
    return OfferOut.model_validate(offer).model_dump(mode="json") if offer else None


@router.post("/needs/{need_id}/candidates", summary="候选服务方（前 k 名及理由） Top-k candidates with reasons")
async def need_candidates(session: DbSession, need_id: str, settings: AppSettings, k: int = Query(5, ge=1, le=50),
                          principal: Principal = Depends(require_roles(*NEED_STAFF))):
    need = await get_need(session, principal, need_id)
    return await service.candidates(session, need, settings, k)


@router.post("/needs/{need_id}/match", status_code=201, summary="匹配并派单 Match one need and offer it")
async def match_need(session: DbSession, need_id: str, settings: AppSettings, principal: Principal = Depends(require_roles(*MATCH_ROLES)),
                     clock: Clock = Depends(get_clock)):
    async with session.begin():
        need = await get_need(session, principal, need_id)
        proposal, offer, found = await service.match_one(session, need, clock.now(), settings)
        return {"proposal_id": proposal.id, "need_status": need.status, "offer": _offer_body(offer), **found}


@router.post("/match/batch", summary="批量最优匹配 Batch-optimal matching of open needs")
async def match_batch(session: DbSession, body: BatchRequest, settings: AppSettings,
                      principal: Principal = Depends(require_roles(*MATCH_ROLES)),
                      clock: Clock = Depends(get_clock)):
    async with session.begin():
        out = await service.match_batch(session, principal, body.need_ids, body.place_code, clock.now(),
                                        settings)
        return {**out, "offers": [_offer_body(o) for o in out["offers"]]}


@router.get("/offers/{offer_id}", response_model=OfferOut, summary="派单详情 Get an offer")
async def get_offer(session: DbSession, offer_id: str, request: Request, principal: Principal = Depends(get_principal)):
    return OfferOut.model_validate(await service.get_offer(session, principal, offer_id))


@router.get("/offers", response_model=Page[OfferOut], summary="派单列表 List offers")
async def list_offers(session: DbSession, request: Request, need_id: str | None = None, provider_id: str | None = None,
                      status: str | None = None, page: PageParams = Depends(),
                      principal: Principal = Depends(require_roles(*MATCH_ROLES))):
    # the offers of needs in the caller's places (ops: all)
    stmt = select(Offer).join(Need, Need.id == Offer.need_id).where(place_condition(principal, Need.place_code))
    if need_id:
        stmt = stmt.where(Offer.need_id == need_id)
    if provider_id:
        stmt = stmt.where(Offer.provider_id == provider_id)
    if status:
        stmt = stmt.where(Offer.status == status)
    rows = list((await session.execute(page.keyset(stmt, Offer.id))).scalars())
    return page.page(rows, key=lambda r: r.id, item=OfferOut.model_validate)


@router.post("/offers/{offer_id}/accept", response_model=OfferOut, summary="接单 Accept an offer")
async def accept(session: DbSession, offer_id: str, settings: AppSettings, principal: Principal = Depends(get_principal),
                 if_match: str | None = Header(None, alias="If-Match"), clock: Clock = Depends(get_clock)):
    async with session.begin():
        offer = await service.get_offer(session, principal, offer_id)
        accepted = await service.accept(session, offer, clock.now(), settings, if_match)
    if not accepted:  # the expiry (and the move to the next candidate) is committed; the answer is too late
        raise Problem(409, "offer.expired", ("该派单已超时，已转派下一位服务方", "The offer expired and moved on"))
    return OfferOut.model_validate(offer)


@router.post("/offers/{offer_id}/decline", summary="退单 Decline an offer (moves to the next candidate)")
async def decline(session: DbSession, offer_id: str, settings: AppSettings, body: DeclineBody | None = None,
                  principal: Principal = Depends(get_principal), if_match: str | None = Header(None, alias="If-Match"),
                  clock: Clock = Depends(get_clock)):
    async with session.begin():
        offer = await service.get_offer(session, principal, offer_id)
        nxt = await service.decline(session, offer, body.reason if body else None, clock.now(),
                                    settings, if_match)
        return {"offer": _offer_body(offer), "next_offer": _offer_body(nxt)}


@router.post("/offers/{offer_id}/complete", response_model=OfferOut, summary="确认服务完成 Confirm completion")
async def complete(session: DbSession, offer_id: str, body: CompleteBody, request: Request,
                   principal: Principal = Depends(get_principal), if_match: str | None = Header(None, alias="If-Match"),
                   clock: Clock = Depends(get_clock)):
    async with session.begin():
        offer = await service.get_offer(session, principal, offer_id)
        await service.complete(session, principal, offer, body.hours, body.rating, clock.now(), if_match)
        return OfferOut.model_validate(offer)


@router.post("/offers/expire", summary="处理超时派单 Expire overdue offers now")
async def expire(session: DbSession, settings: AppSettings, principal: Principal = Depends(require_roles("ops", "system")),
                 clock: Clock = Depends(get_clock)):
    async with session.begin():
        return {"expired": await service.expire_due(session, clock.now(), settings)}


async def offer_sweeper(app: FastAPI, stop: asyncio.Event) -> None:
    """Background job: expire overdue offers and move them on, and remind providers of offers about to expire
    (offers/notices.py), every `offer_sweep_seconds`."""
    settings = app.state.settings

    async def sweep() -> None:
        async with app.state.db.session() as session, session.begin():
            await service.expire_due(session, app.state.clock.now(), settings)
            await remind_expiring(session, app.state.clock.now())

    await run_periodically("svc_matching/offer-sweep", sweep, stop, interval=settings.offer_sweep_seconds)
