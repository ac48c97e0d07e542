"""Residents' sign-in by phone: asking for a code (the token endpoint's SMS grant takes it: gateway/identity),
the real-name binding of the account, and, in tests and local runs only, reading the last code the SMS
platform's emulator sent."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from common.deps import AppClock, AppSettings, CurrentPrincipal, state
from common.errors import Problem
from common.validators import CommunityCode
from gateway.accounts import binding
from gateway.accounts.binding import CONSENT_TEXT
from gateway.accounts.deps import Accounts, Source
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


@router.post("/auth/v1/phone/codes", status_code=202, response_model=CodeSent,
             summary="获取短信验证码 Ask for a sign-in code by SMS",
             description="向手机号发送 6 位验证码（5 分钟内有效，最多试 5 次）；无论该手机号是否已注册，应答相同。"
                         "再次获取须等待（逐次加倍）；每个手机号、每个来源地址每小时有上限（429，Retry-After）。"
                         "随后以 grant_type=urn:onenet:params:oauth:grant-type:sms、phone、code 调用 /auth/v1/token："
                         "首次登录即注册居民账号。")
async def ask_code(body: CodeRequest, source: Source, phone: Phone, clock: AppClock):
    return await phone.send_code(body.phone, source=source, now=clock.now())


@router.get("/auth/v1/testing/sms", include_in_schema=False,
            summary="测试用：读取发往某手机号的最后一条短信 Tests and local runs only")
async def last_sms(phone: Phone, settings: AppSettings, number: str = Query(alias="phone")):
    if not settings.sms_test_reads or phone.sms is None:
        raise Problem(404, "not_found", ("没有这个资源", "Not found"))
    found = await phone.sms.last_message(check_phone(number))
    if found is None:
        raise Problem(404, "sms.not_found", ("没有发往该手机号的短信", "No text was sent to this phone"))
    return found


# ---- real-name binding (gateway/accounts/binding.py) ------------------------------------------------------------

class IdentityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=50, examples=["黄磊"], description="姓名（与身份证一致）")
    id_number: str = Field(min_length=1, max_length=32, examples=["110105197511300713"], description="居民身份证号")
    consent: bool = Field(description=f"同意：{CONSENT_TEXT}")
    community: CommunityCode | None = Field(default=None,
                                  description="尚无居民档案时：居住的社区代码（12 位），由该社区工作人员核实")


class IdentityOut(BaseModel):
    binding: Literal["none", "bound", "pending", "refused"] = Field(
        description="none 未认证 / bound 已绑定居民档案 / pending 待社区核实 / refused 社区未予确认")
    person_id: str | None
    registration_id: str | None
    name: str | None
    id_number: str | None = Field(description="身份证号（脱敏）")
    bound_at: datetime | None
    access_token: str | None = Field(default=None, description="绑定后本会话的新访问令牌（带居民档案范围）")
    token_type: Literal["Bearer"] | None = None
    expires_in: int | None = None


def _ctx(request: Request, parts: Accounts, source: Source, principal: CurrentPrincipal, clock: AppClock) -> binding.Ctx:
    return binding.Ctx(parts, principal, clock.now(), source, request.headers.get("accept-language"))


BindingCall = Annotated[binding.Ctx, Depends(_ctx)]


@router.post("/auth/v1/me/identity", response_model=IdentityOut, summary="实名认证 Real-name binding",
             responses={202: {"model": IdentityOut, "description": "尚无居民档案：待社区工作人员核实"}},
             description="居民（手机号登录）提交姓名、身份证号并同意公安核验；核验通过且已有居民档案即绑定（200，"
                         "返回带居民档案范围的新访问令牌），尚无档案则待所填社区核实（202）。")
async def bind_identity(body: IdentityIn, ctx: BindingCall):
    status, out = await binding.bind(ctx, name=body.name, id_number=body.id_number, consent=body.consent,
                                     community=body.community)
    return JSONResponse(IdentityOut(**out).model_dump(mode="json"), status_code=status)


@router.get("/auth/v1/me/identity", response_model=IdentityOut, summary="我的实名认证 My real-name binding")
async def my_identity(ctx: BindingCall):
    return IdentityOut(**await binding.read(ctx))
