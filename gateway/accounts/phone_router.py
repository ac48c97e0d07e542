"""Residents' sign-in by phone: asking for a code (the token endpoint's SMS grant takes it: gateway/identity),
and, in tests and local runs only, reading the last code the SMS platform's emulator sent."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from common.deps import AppClock, AppSettings, state
from common.errors import Problem
from gateway.accounts.phone import PhoneSignIn, check_phone

router = APIRouter(tags=["auth 身份认证"])
Phone = Annotated[PhoneSignIn, state("phone_signin")]


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=1, max_length=20, examples=["13900001234"], description="手机号（11 位）")


class CodeSent(BaseModel):
    sent: bool
    phone: str = Field(description="手机号（脱敏）")
    expires_in: int = Field(description="验证码有效秒数")
    resend_after: int = Field(description="再次获取前须等待的秒数")
    detail: str


def _source(request: Request) -> str:
    return request.client.host if request.client else "-"


@router.post("/auth/v1/phone/codes", status_code=202, response_model=CodeSent,
             summary="获取短信验证码 Ask for a sign-in code by SMS",
             description="向手机号发送 6 位验证码（5 分钟内有效，最多试 5 次）；无论该手机号是否已注册，应答相同。"
                         "再次获取须等待（逐次加倍）；每个手机号、每个来源地址每小时有上限（429，Retry-After）。"
                         "随后以 grant_type=urn:onenet:params:oauth:grant-type:sms、phone、code 调用 /auth/v1/token："
                         "首次登录即注册居民账号。")
async def ask_code(body: CodeRequest, request: Request, phone: Phone, clock: AppClock):
    return await phone.send_code(body.phone, source=_source(request), now=clock.now())


@router.get("/auth/v1/testing/sms", include_in_schema=False,
            summary="测试用：读取发往某手机号的最后一条短信 Tests and local runs only")
async def last_sms(request: Request, phone: Phone, settings: AppSettings, number: str = Query(alias="phone")):
    if not settings.sms_test_reads or phone.sms is None:
        raise Problem(404, "not_found", ("没有这个资源", "Not found"))
    found = await phone.sms.last_message(check_phone(number))
    if found is None:
        raise Problem(404, "sms.not_found", ("没有发往该手机号的短信", "No text was sent to this phone"))
    return found
