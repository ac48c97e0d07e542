"""The inbox (list, unread count, mark read, live stream), settings, staff sends, delivery records, the notice
feed and staff contacts. Thin: rules in service.py, rules.py, contacts.py; who may do what in access.py."""
from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select

from common.acting import checked_by_handler
from common.app import problem_responses
from common.auth import Principal, TokenVerifier, get_principal
from common.clock import Clock, get_clock
from common.deps import AppDb, AppSettings, DbSession, state
from common.errors import Problem, invalid
from common.idempotency import request_fingerprint, run_idempotent
from common.lookup import get_or_404
from common.pagination import Page, PageParams
from svc_residents.base import IdempotencyRecord
from svc_residents.notifications import access, contacts, rules
from svc_residents.notifications.models import Attempt, Delivery, Notification, RecipientSettings
from svc_residents.notifications.schemas import (AttemptOut, DeliveryOut, NoticeIn, NoticeOut, NotificationOut, SendIn,
                                                 SettingsIn, SettingsOut, StaffContactIn, StaffContactOut, UnreadOut)
from svc_residents.notifications.service import notify
from svc_residents.notifications.stream import Hub, Plan, events
from svc_residents.persons.models import Person
from svc_residents.access import staff_covers
from svc_residents.protection import AppProtection

router = APIRouter(prefix="/residents/v1", tags=["notifications 消息通知"])
# declared by hand: the header is required as the document says, yet an absent or other one is answered 406 (not 422)
STREAM_ACCEPT = {"name": "accept", "in": "header", "required": True, "description": "须含 text/event-stream（否则 406）",
                 "schema": {"type": "string", "maxLength": 500, "pattern": "text/event-stream", "title": "Accept"}}
AppHub = Annotated[Hub, state("notification_hub")]
AppVerifier = Annotated[TokenVerifier, state("verifier")]
Id = Path(min_length=1, max_length=36)


@router.get("/notifications", response_model=Page[NotificationOut], summary="我的消息 My inbox (newest first)")
async def list_inbox(session: DbSession, page: PageParams = Depends(), unread: bool = Query(False, description="只看未读"),
                     principal: Principal = Depends(get_principal)):
    stmt = select(Notification).where(Notification.recipient == access.inbox_of(principal))
    if unread:
        stmt = stmt.where(Notification.read_at.is_(None))
    rows = (await session.execute(page.keyset(stmt, Notification.id, descending=True))).scalars().all()
    return page.page(rows, key=lambda r: r.id, item=NotificationOut.model_validate)


@router.get("/notifications/unread_count", response_model=UnreadOut, summary="未读消息数 Unread count")
async def unread_count(session: DbSession, principal: Principal = Depends(get_principal)):
    n = (await session.execute(select(func.count()).select_from(Notification).where(
        Notification.recipient == access.inbox_of(principal), Notification.read_at.is_(None)))).scalar_one()
    return UnreadOut(unread=n)


async def _own(session, principal: Principal, notification_id: str) -> Notification:
    inbox = access.inbox_of(principal)
    return await get_or_404(session, Notification, notification_id, access.MESSAGE_NOT_FOUND,
                            visible=lambda n: n.recipient == inbox)


@router.post("/notifications/{notification_id}/read", response_model=NotificationOut,
             dependencies=[checked_by_handler("notifications.inbox")], summary="标为已读 Mark a message read")
async def mark_read(session: DbSession, notification_id: str = Id, principal: Principal = Depends(get_principal),
                    clock: Clock = Depends(get_clock)):
    async with session.begin():
        note = await _own(session, principal, notification_id)
        note.read_at = note.read_at or clock.now()  # read once: the first time stays
    return NotificationOut.model_validate(note)


@router.get("/notifications/stream", summary="消息实时推送（SSE）Live stream of new messages",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": "event: notification, data: the message (JSON), id: its id"},
                       **problem_responses(406)},
            openapi_extra={"parameters": [STREAM_ACCEPT]})
async def stream(db: AppDb, hub: AppHub, settings: AppSettings, verifier: AppVerifier,
                 principal: Principal = Depends(get_principal),
                 accept: str = Header("", max_length=500, include_in_schema=False),
                 last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=36),
                 max_events: int | None = Query(None, ge=1, le=1000, description="发送这么多条后结束"),
                 max_seconds: float | None = Query(None, gt=0, le=3600,
                                                   description="这么多秒后结束（默认 30 分钟，不超过令牌有效期）")):
    """One held connection (stream.events): every new message as it is committed, a comment heartbeat when quiet,
    the end after the configured lifetime or at the token's expiry, whichever is first; the EventSource then
    reconnects with Last-Event-ID and is sent what it missed first."""
    inbox = access.inbox_of(principal)
    if "text/event-stream" not in accept:
        # an EventSource always asks for it; anything else would hold a connection it cannot read
        raise Problem(406, "notification.stream_accept", ("实时推送须以 Accept: text/event-stream 请求",
                                                          "The stream needs Accept: text/event-stream"))
    seconds = min(settings.notify_stream_lifetime_seconds, max_seconds or math.inf)
    exp = principal.claims.get("exp")
    if isinstance(exp, (int, float)):  # a signed-out or expired session receives nothing past its token
        seconds = max(0.0, min(seconds, exp - verifier.clock.timestamp()))  # token time is real time
    heartbeat = settings.notify_stream_heartbeat_seconds
    plan = Plan(heartbeat=heartbeat, poll=heartbeat if hub.shared else settings.notify_stream_poll_seconds,
                seconds=seconds, retry=settings.notify_stream_retry_ms, max_events=max_events)
    return StreamingResponse(events(hub, db.session, inbox, last_event_id, plan), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/notifications/settings", response_model=SettingsOut, summary="我的消息设置 My message settings")
async def get_settings(session: DbSession, principal: Principal = Depends(get_principal)):
    row = await session.get(RecipientSettings, access.inbox_of(principal))
    return SettingsOut(language=row.language, opted_out=row.opted_out, version=row.version) if row else \
        SettingsOut(language="zh", opted_out=[], version=0)


@router.put("/notifications/settings", response_model=SettingsOut,
            dependencies=[checked_by_handler("notifications.inbox")],
            summary="设置语言与退订类别 Set language and opt-outs (PIPL; safety messages always reach you)")
async def put_settings(session: DbSession, body: SettingsIn, principal: Principal = Depends(get_principal),
                       clock: Clock = Depends(get_clock)):
    inbox = access.inbox_of(principal)
    async with session.begin():
        row = await session.get(RecipientSettings, inbox, with_for_update=True)
        if row is None:
            row = RecipientSettings(recipient=inbox, version=0)
            session.add(row)
        row.language, row.opted_out = body.language, sorted(set(body.opted_out))
        row.updated_at, row.updated_by, row.version = clock.now(), principal.caller, row.version + 1
    return SettingsOut(language=row.language, opted_out=row.opted_out, version=row.version)


@router.post("/notifications", status_code=201, response_model=NotificationOut,
             responses=problem_responses(422), summary="给居民发送模板消息 Send a templated message to a person")
async def send(db: AppDb, body: SendIn, request: Request, principal: Principal = Depends(get_principal),
               idempotency_key: str | None = Header(None, alias="Idempotency-Key"), clock: Clock = Depends(get_clock)):
    access.require_sender(principal)
    now = clock.now()

    async def create(session):
        person = await session.get(Person, body.recipient.partition(":")[2])
        if person is None or person.merged_into or not staff_covers(principal, person.grid_code):
            raise invalid("recipient", "notification.unknown_recipient", "没有这个收件人", "Unknown recipient")
        key = f"api:{principal.caller}:{idempotency_key or now.isoformat()}"
        result = await notify(session, recipient=body.recipient, template=body.template, variables=body.variables,
                              event_key=key[:120], now=now, urgency=body.urgency)
        return 201, NotificationOut.model_validate(result.notification)

    return await run_idempotent(db, IdempotencyRecord, key=idempotency_key, caller=principal.caller, now=now,
                                create=create, fingerprint=request_fingerprint("POST", request.url.path,
                                                                               body.model_dump()))


@router.get("/notifications/{notification_id}/deliveries", response_model=list[DeliveryOut],
            summary="消息的投递记录 A message's deliveries and every attempt")
async def deliveries(session: DbSession, notification_id: str = Id, principal: Principal = Depends(get_principal)):
    note = await get_or_404(session, Notification, notification_id, access.MESSAGE_NOT_FOUND,
                            visible=lambda n: access.may_see_deliveries(principal, n))
    rows = (await session.execute(select(Delivery).where(Delivery.notification_id == note.id)
                                  .order_by(Delivery.id))).scalars().all()
    tries = (await session.execute(select(Attempt).where(Attempt.notification_id == note.id)
                                   .order_by(Attempt.at, Attempt.id))).scalars().all()
    return [DeliveryOut.model_validate(d).model_copy(update={"attempts": [
        AttemptOut.model_validate(a) for a in tries if a.delivery_id == d.id]}) for d in rows]


def notice_source(settings: AppSettings, principal: Principal = Depends(get_principal)) -> Principal:
    if principal.role == "ops" or (principal.role == "system" and principal.member in settings.notice_sources):
        return principal
    raise Problem(403, "notice.not_a_source", ("只有平台各服务可以投递通知事件",
                                               "Only the platform's services deliver notice events"))


@router.put("/notices/{event_id}", response_model=NoticeOut,
            summary="通知事件（outbox 订阅）A notice event from another service's outbox feed")
async def put_notice(session: DbSession, body: NoticeIn, event_id: str = Path(min_length=1, max_length=64),
                     principal: Principal = Depends(notice_source), clock: Clock = Depends(get_clock)):
    async with session.begin():
        stored = await rules.handle(session, body.event, event_id, body.model_dump(), now=clock.now())
    return NoticeOut(event_id=event_id, stored=stored)


@router.get("/staff_contacts/{user_id}", response_model=StaffContactOut,
            summary="工作人员联系方式 A staff member's contact (masked)")
async def get_contact(session: DbSession, user_id: str = Path(min_length=1, max_length=64),
                      principal: Principal = Depends(get_principal)):
    return StaffContactOut.model_validate(await contacts.get_contact(session, principal, user_id))


@router.put("/staff_contacts/{user_id}", response_model=StaffContactOut,
            responses={201: {"model": StaffContactOut, "description": "新登记 Registered (the first PUT for the user)"}},
            summary="登记或修改工作人员联系方式 Register or change a staff member's contact")
async def put_contact(session: DbSession, body: StaffContactIn, response: Response, protection: AppProtection,
                      user_id: str = Path(min_length=1, max_length=64, pattern=r"^[\w.@-]+$"),
                      principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    async with session.begin():
        row, created = await contacts.put_contact(session, principal, protection, user_id, body, now=clock.now())
    if created:
        response.status_code = 201
    return StaffContactOut.model_validate(row)
