"""The emulated SMS platform (短信平台) among the department emulators.

A member system sends a text to a mainland mobile number (`POST /departments/sms/v1/messages`, a machine token
and, as for every emulator, the gateway's assertion: ADR 0013) and reads its delivery receipt
(`GET /departments/sms/v1/messages/{id}`: only the member that sent it). Fault knobs, as for the departments:
`ONENET_SMS_FAILURE_RATE` fails that fraction of sends (503), `ONENET_SMS_DOWN` fails them all; both can also be
changed on `app.state.sms` by a test. Messages are kept in memory (the last 10,000), as a real platform's
short-lived delivery queue would be from the sender's side.

`ONENET_SMS_TEST_READS=true` (set by the tests and by `onenet up` for local runs, never by default) adds
`GET /departments/sms/v1/testing/last-message?phone=…`: the last text sent to a phone and the 6-digit code in it,
so tests and the README tour can read a one-time code. Without the setting that path is an unknown one (404).
"""
from __future__ import annotations

import random
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.auth import Principal, require_roles
from common.clock import Clock, get_clock
from common.crypto import mask_phone
from common.errors import Problem
from common.ids import new_id
from common.validators import MobileNumber  # the platform's rule and pattern (MOBILE_PATTERN), normalised to 11 digits

KEEP = 10_000
CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


class SmsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONENET_SMS_", extra="ignore")

    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    down: bool = False
    # the test-only read of the last message sent to a phone: off unless a test or a local run turns it on
    test_reads: bool = False
    seed: int = 0


@dataclass
class Message:
    id: str
    member: str
    phone: str
    text: str
    submitted_at: datetime
    status: str = "delivered"


class SmsPlatform:
    def __init__(self, settings: SmsSettings) -> None:
        self.failure_rate, self.down, self.test_reads = settings.failure_rate, settings.down, settings.test_reads
        self.rng = random.Random(settings.seed)
        self.messages: OrderedDict[str, Message] = OrderedDict()
        self.last_by_phone: dict[str, str] = {}
        self.sent = 0

    def fails(self) -> bool:
        return self.down or (self.failure_rate > 0 and self.rng.random() < self.failure_rate)

    def add(self, m: Message) -> None:
        self.messages[m.id] = m
        self.last_by_phone[m.phone] = m.id
        self.sent += 1
        while len(self.messages) > KEEP:
            old_id, old = self.messages.popitem(last=False)
            if self.last_by_phone.get(old.phone) == old_id:
                del self.last_by_phone[old.phone]


class SmsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: MobileNumber = Field(examples=["13900001234"])
    text: str = Field(min_length=1, max_length=500, examples=["【一网通办】验证码 123456，5 分钟内有效。"])


class SmsReceipt(BaseModel):
    id: str
    status: str = Field(description="delivered 已送达")
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
SENDERS = ("system", "ops")


def platform(request: Request) -> SmsPlatform:
    return request.app.state.sms


def _receipt(m: Message) -> SmsReceipt:
    return SmsReceipt(id=m.id, status=m.status, phone=mask_phone(m.phone), submitted_at=m.submitted_at,
                      delivered_at=m.submitted_at)


@router.post("/messages", status_code=202, response_model=SmsReceipt, summary="发送短信 Send a text message")
async def send(body: SmsIn, sms: SmsPlatform = Depends(platform),
               principal: Principal = Depends(require_roles(*SENDERS)), clock: Clock = Depends(get_clock)):
    if sms.fails():
        raise Problem(503, "sms.unavailable", ("短信平台暂时无法发送", "The SMS platform cannot send right now"),
                      headers={"Retry-After": "1"})
    m = Message(id=new_id(), member=principal.member, phone=body.phone, text=body.text, submitted_at=clock.now())
    sms.add(m)
    return _receipt(m)


@router.get("/messages/{message_id}", response_model=SmsReceipt, summary="送达回执 Delivery receipt")
async def receipt(message_id: str, sms: SmsPlatform = Depends(platform),
                  principal: Principal = Depends(require_roles(*SENDERS))):
    m = sms.messages.get(message_id)
    if m is None or m.member != principal.member:
        raise Problem(404, "sms.not_found", ("没有这条短信", "Unknown message"))
    return _receipt(m)


@router.get("/testing/last-message", response_model=LastMessage, include_in_schema=False,
            summary="测试用：某手机号收到的最后一条短信 Tests only: the last text sent to a phone")
async def last_message(phone: MobileNumber = Query(), sms: SmsPlatform = Depends(platform),
                       principal: Principal = Depends(require_roles(*SENDERS))):
    m = sms.messages.get(sms.last_by_phone.get(phone, "")) if sms.test_reads else None
    if m is None:
        raise Problem(404, "not_found", ("没有这个资源", "Not found"))
    found = CODE.search(m.text)
    return LastMessage(id=m.id, phone=m.phone, text=m.text, code=found.group(1) if found else None,
                       submitted_at=m.submitted_at)


def install(app, settings: SmsSettings | None = None) -> None:
    app.state.sms = SmsPlatform(settings or SmsSettings())
