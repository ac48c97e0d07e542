from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from common.acting import acts
from common.auth import Principal, get_principal
from common.clock import Clock, get_clock
from common.deps import AppDb, DbSession
from common.errors import Problem, invalid
from common.pagination import Page, PageParams
from common.validators import AreaCode
from svc_matching.clients import ServicesClient
from svc_matching.deps import Idempotent
from svc_matching.bookings import appointments, resources, service
from svc_matching.bookings.models import BookableResource, Booking
from svc_matching.bookings.schemas import (
    BookingCreate, BookingDetail, BookingEntryOut, BookingOut, ResourceCreate, BookableResourceOut, SlotOut, TransitionBody,
)

router = APIRouter(prefix="/matching/v1", tags=["bookings 场地与服务预约"])


def _out(principal: Principal, b: Booking) -> BookingOut:
    return BookingOut.model_validate(b).model_copy(update={"allowed_actions": service.actions_for(principal, b)})


@router.post("/bookable_resources", status_code=201, response_model=BookableResourceOut,
             summary="设置可预约资源（活动室、食堂座位、窗口号） Set up a bookable resource")
async def create_resource(idem: Idempotent, body: ResourceCreate,
                          principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, BookableResourceOut.model_validate(await resources.create_resource(session, principal, body, now=now))

    return await idem.run(body, create, now=now)


@router.get("/bookable_resources", response_model=Page[BookableResourceOut], summary="可预约资源 Bookable resources")
async def list_resources(session: DbSession, page: PageParams = Depends(),
                         place_code: AreaCode | None = Query(None),
                         kind: str | None = Query(None, max_length=32),
                         item_code: str | None = Query(None, max_length=32, description="服务预约：事项编码"),
                         principal: Principal = Depends(get_principal)):
    stmt = resources.list_stmt(place_code=place_code, kind=kind, item_code=item_code)
    rows = (await session.execute(page.keyset(stmt, BookableResource.id))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=BookableResourceOut.model_validate)


@router.get("/bookable_resources/{resource_id}", response_model=BookableResourceOut, summary="可预约资源详情")
async def get_resource(session: DbSession, resource_id: str, principal: Principal = Depends(get_principal)):
    return BookableResourceOut.model_validate(await resources.get_resource(session, resource_id))


@router.get("/bookable_resources/{resource_id}/slots", response_model=list[SlotOut],
            summary="时段与余量 Slots and free places")
async def list_slots(session: DbSession, resource_id: str, on: date | None = Query(None, alias="date"),
                     days: int = Query(1, ge=1, le=14),
                     available: bool = Query(False, description="只列出尚未开始且有余量的时段"),
                     principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    res = await resources.get_resource(session, resource_id)
    return await resources.free_slots(session, res, on or clock.today(), days,
                                      after=clock.now() if available else None)


@router.post("/bookings", status_code=201, response_model=BookingOut, summary="预约 Book a slot",
             dependencies=[acts("bookings.book")],
             description="时段已满：409 `booking.slot_full`，`next_free_slots` 给出其后有余量的时段；"
                         "`waitlist: true` 则排队候补（state `waitlisted`），有人取消时按先后转正。"
                         "服务预约（`request_id`）：经网关以调用者身份向 svc_services 核实诉求（本人的或辖区内的、"
                         "事项与资源的 `catalogue_item_code` 相同、尚未办结），每个诉求只有一个有效预约。")
async def create_booking(db: AppDb, idem: Idempotent, body: BookingCreate, services: ServicesClient,
                         principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    now = clock.now()
    # 服务预约: whose request it is and for which item, asked of svc_services before anything is written (not for
    # a retried Idempotency-Key: that replays the answer given then, whatever the request's state now)
    facts = None
    if body.request_id is not None and not await idem.stored():
        facts = await appointments.look_up(services, body.request_id)

    async def create(session):
        return 201, _out(principal, await service.create_booking(session, principal, body, now=now, request=facts))

    try:
        return await idem.run(body, create, now=now)
    except Problem as p:
        if p.code == "booking.slot_full":
            await service.record_conflict(db, principal, body, now)
        raise


@router.get("/bookings", response_model=Page[BookingOut], summary="预约列表（本人的；工作人员：辖区内资源的）")
async def list_bookings(session: DbSession, page: PageParams = Depends(),
                        resource_id: str | None = Query(None, max_length=36),
                        state: str | None = Query(None, max_length=24),
                        request_id: str | None = Query(None, max_length=64),
                        principal: Principal = Depends(get_principal)):
    service.require_lister(principal)
    stmt = select(Booking).where(service.visibility(principal))
    if resource_id:
        stmt = stmt.where(Booking.resource_id == resource_id)
    if state:
        stmt = stmt.where(Booking.state == state)
    if request_id:
        stmt = stmt.where(Booking.request_id == request_id)
    rows = (await session.execute(page.keyset(stmt, Booking.id, descending=True))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=lambda b: _out(principal, b))


@router.get("/bookings/{booking_id}", response_model=BookingDetail, summary="预约详情与记录（含改约历史）")
async def get_booking(session: DbSession, booking_id: str, principal: Principal = Depends(get_principal)):
    b = await service.get_booking(session, principal, booking_id)
    entries = await service.timeline(session, b.id)
    return BookingDetail(**_out(principal, b).model_dump(),
                         timeline=[BookingEntryOut.model_validate(e) for e in entries])


@router.post("/bookings/{booking_id}/transitions", response_model=BookingOut,
             dependencies=[acts("bookings.book")],
             summary="审批、签到、完成、取消、爽约、改约 Move a booking",
             description="`version` 为所见版本，过期则 409。取消或爽约空出的名额按候补先后转正。")
async def transition(session: DbSession, booking_id: str, body: TransitionBody,
                     principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    if body.action != "reschedule" and body.starts_at is not None:
        raise invalid("starts_at", "booking.starts_at_unexpected", "只有改约可给出新时段",
                      "Only a reschedule takes a new start")
    async with session.begin():
        b = await service.transition(session, principal, booking_id, body, now=clock.now())
        return _out(principal, b)
