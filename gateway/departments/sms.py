"""The emulated SMS platform (短信平台) among the department emulators.

A member system sends a text to a mainland mobile number (`POST /departments/sms/v1/messages`, a machine token
and, as for every emulator, the gateway's assertion: ADR 0013) and reads its delivery receipt
(`GET /departments/sms/v1/messages/{id}`: only the member that sent it). Many at once, as real SMS gateways take
a list of numbers a call: `POST /departments/sms/v1/batches` (up to 500 numbers with the batch's one text, or
(number, text) pairs; per message its id or `failed`) and `POST /departments/sms/v1/receipts/query` (the receipts
of up to 500 messages). A message may carry the sender's `ref` (as a real gateway's out-id): the same ref from
the same member answers the first message and sends nothing twice.
Fault knobs, as for the departments: `ONENET_SMS_FAILURE_RATE` fails that fraction of sends (503; in a batch,
each message on its own), `ONENET_SMS_DOWN` fails them all; both can also be changed on `app.state.sms` by a test.
Messages are kept in memory (the last 50,000), as a real platform's short-lived delivery queue would be from the
sender's side; store, knobs and the batch's rules: gateway/departments/outbound.py and delivery.py.

`ONENET_SMS_TEST_READS=true` (set by the tests and by `onenet up` for local runs, never by default) adds
`GET /departments/sms/v1/testing/last-message?phone=…`: the last text sent to a phone and the 6-digit code in it,
so tests and the README tour can read a one-time code. Without the setting that path is an unknown one (404).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from common.clock import Clock, get_clock
from common.crypto import mask_phone
from common.deps import state
from common.errors import Problem
from common.ids import new_id
from common.validators import MobileNumber  # the platform's rule and pattern (MOBILE_PATTERN), normalised to 11 digits
from gateway.departments import delivery
from gateway.departments.delivery import Sender
from gateway.departments.outbound import BATCH_MAX, BatchOut, OutboundSettings, Platform, ReceiptsQuery, batch_texts

CODE = re.compile(r"(?<![0-9])([0-9]{6})(?![0-9])")  # the one-time code a text carries (ASCII digits)


class SmsSettings(OutboundSettings):
    model_config = SettingsConfigDict(env_prefix="ONENET_SMS_", extra="ignore")


@dataclass
class Message:
    id: str
    member: str
    phone: str
    text: str
    submitted_at: datetime
    ref: str | None = None
    status: str = "delivered"


class SmsPlatform(Platform):
    """The shared store and knobs, and the last message to each phone (the test-only read)."""

    def __init__(self, settings: SmsSettings) -> None:
        super().__init__("sms", settings)
        self.last_by_phone: dict[str, str] = {}

    def add(self, m: Message) -> None:
        self.last_by_phone[m.phone] = m.id
        super().add(m)

    def forget(self, old: Message) -> None:
        super().forget(old)
        if self.last_by_phone.get(old.phone) == old.id:
            del self.last_by_phone[old.phone]


class SmsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: MobileNumber = Field(examples=["13900001234"])
    text: str = Field(min_length=1, max_length=500, examples=["【一网通办】验证码 123456，5 分钟内有效。"])
    ref: str | None = Field(default=None, max_length=80, description="发送方的引用号：同一引用号只发送一次")


class SmsItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: MobileNumber = Field(examples=["13900001234"])
    text: str | None = Field(default=None, min_length=1, max_length=500, description="不填用整批的 text")
    ref: str | None = Field(default=None, max_length=80, description="发送方的引用号：同一引用号只发送一次")


class SmsBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1, max_length=500, description="整批的内容（各号码同一条）",
                             examples=["【一网通办】因管道检修，明日 9:00–17:00 停水，请提前储水。"])
    messages: list[SmsItem] = Field(min_length=1, max_length=BATCH_MAX, description="至多 500 个号码")


class SmsReceipt(BaseModel):
    id: str
    status: str = Field(description="delivered 已送达 / pending 待回执 / failed 未送达（回执）")
    phone: str = Field(description="手机号（脱敏）")
    submitted_at: datetime
    delivered_at: datetime | None


class LastMessage(BaseModel):
    id: str
    phone: str
    text: str
    code: str | None = Field(description="短信中的 6 位验证码（如有）")
    submitted_at: datetime


router = APIRouter(prefix="/departments/sms/v1", tags=["departments 部门模拟"])
Sms = Annotated[SmsPlatform, state("sms")]


def _receipt(m: Message) -> SmsReceipt:
    return SmsReceipt(id=m.id, status=m.status, phone=mask_phone(m.phone), submitted_at=m.submitted_at,
                      delivered_at=m.submitted_at)


@router.post("/messages", status_code=202, response_model=SmsReceipt, summary="发送短信 Send a text message")
async def send(body: SmsIn, sms: Sms, principal: Sender, clock: Clock = Depends(get_clock)):
    return _receipt(delivery.send_one(sms, principal.member, body.ref, lambda: Message(
        id=new_id(), member=principal.member, phone=body.phone, text=body.text, ref=body.ref,
        submitted_at=clock.now())))


@router.post("/batches", response_model=BatchOut, summary="批量发送短信 Send texts to many numbers in one call")
async def send_batch(body: SmsBatchIn, sms: Sms, principal: Sender, clock: Clock = Depends(get_clock)):
    texts = batch_texts([m.text for m in body.messages], body.text)
    now = clock.now()

    def message(item: SmsItem, text: str):
        return lambda: Message(id=new_id(), member=principal.member, phone=item.phone, text=text, ref=item.ref,
                               submitted_at=now)

    return delivery.send_batch(sms, principal.member, [(item.ref, message(item, text))
                                                       for item, text in zip(body.messages, texts)])


@router.post("/receipts/query", response_model=list[SmsReceipt], summary="批量查询送达回执 Receipts of many texts")
async def receipts(body: ReceiptsQuery, sms: Sms, principal: Sender):
    return [_receipt(m) for m in sms.known(principal.member, body.ids)]


@router.get("/messages/{message_id}", response_model=SmsReceipt, summary="送达回执 Delivery receipt")
async def receipt(message_id: str, sms: Sms, principal: Sender):
    return _receipt(sms.own(principal.member, message_id))


@router.get("/testing/last-message", response_model=LastMessage, include_in_schema=False,
            summary="测试用：某手机号收到的最后一条短信 Tests only: the last text sent to a phone")
async def last_message(sms: Sms, principal: Sender, phone: MobileNumber = Query()):
    m = sms.messages.get(sms.last_by_phone.get(phone, "")) if sms.test_reads else None
    if m is None:
        raise Problem(404, "not_found", ("没有这个资源", "Not found"))
    found = CODE.search(m.text)
    return LastMessage(id=m.id, phone=m.phone, text=m.text, code=found.group(1) if found else None,
                       submitted_at=m.submitted_at)


def install(app, settings: SmsSettings | None = None) -> None:
    app.state.sms = SmsPlatform(settings or SmsSettings())
