"""The emulated automated voice-call platform (语音外呼) among the department emulators.

A member system places a call that reads a text to a mainland mobile number (`POST /departments/voice/v1/calls`),
then reads its result (`GET /departments/voice/v1/calls/{id}`: `answered` or `no_answer`; only the member that
placed it). Knobs and idempotency by `ref`: gateway/departments/outbound.py (`ONENET_VOICE_…`) and delivery.py.
"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from common.clock import Clock, get_clock
from common.crypto import mask_phone
from common.deps import state
from common.ids import new_id
from common.validators import MobileNumber  # the platform's rule and pattern (MOBILE_PATTERN), normalised to 11 digits
from gateway.departments.delivery import Sender, send_one
from gateway.departments.outbound import OutboundSettings, Platform, Sent


class VoiceSettings(OutboundSettings):
    model_config = SettingsConfigDict(env_prefix="ONENET_VOICE_", extra="ignore")


class CallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: MobileNumber = Field(examples=["13900001234"])
    text: str = Field(min_length=1, max_length=500, description="语音播报的内容")
    ref: str | None = Field(default=None, max_length=80, description="发送方的引用号：同一引用号只呼叫一次")


class CallOut(BaseModel):
    id: str
    status: str = Field(description="answered 已接听 / no_answer 无人接听")
    phone: str = Field(description="手机号（脱敏）")
    submitted_at: datetime


class CallRead(BaseModel):
    id: str
    phone: str
    text: str
    status: str
    submitted_at: datetime


router = APIRouter(prefix="/departments/voice/v1", tags=["departments 部门模拟"])
Voice = Annotated[Platform, state("voice")]


def _out(m: Sent) -> CallOut:
    return CallOut(id=m.id, status=m.status, phone=mask_phone(m.to), submitted_at=m.submitted_at)


@router.post("/calls", status_code=202, response_model=CallOut, summary="语音外呼 Place an automated call")
async def call(body: CallIn, voice: Voice, principal: Sender, clock: Clock = Depends(get_clock)):
    return _out(send_one(voice, principal.member, body.ref, lambda: Sent(
        id=new_id(), member=principal.member, to=body.phone, title=None, text=body.text, ref=body.ref,
        submitted_at=clock.now(), status="answered" if voice.answered() else "no_answer")))


@router.get("/calls/{call_id}", response_model=CallOut, summary="呼叫结果 Call result")
async def result(call_id: str, voice: Voice, principal: Sender):
    return _out(voice.own(principal.member, call_id))


@router.get("/testing/calls", response_model=list[CallRead], include_in_schema=False,
            summary="测试用：拨给某号码的呼叫 Tests only: the calls placed to a phone")
async def calls_to(voice: Voice, principal: Sender, to: MobileNumber = Query()):
    return [CallRead(id=m.id, phone=m.to, text=m.text, status=m.status, submitted_at=m.submitted_at)
            for m in voice.to(to)]


def install(app, settings: VoiceSettings | None = None) -> None:
    app.state.voice = Platform("voice", settings or VoiceSettings())
