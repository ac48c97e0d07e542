"""Proxy authorisations over HTTP (the rules: gateway/accounts/proxies.py)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from common.deps import AppClock, CurrentPrincipal
from gateway.accounts import proxies
from gateway.accounts.deps import Accounts, Source
from gateway.deps import Idempotent

router = APIRouter(prefix="/auth/v1/proxies", tags=["auth 身份认证"])


class ProxyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    helper: str = Field(min_length=1, max_length=64, examples=["proxy1"], description="代办员账号")
    person_id: str | None = Field(default=None, max_length=36,
                                  description="被代办的居民；居民本人授权时可省略（即本人）")
    actions: list[Literal[tuple(proxies.NAMES)]] = Field(min_length=1, description="代办事项（记录保存展开后的各项）：" + "；".join(
        f"{k} {v}" for k, v in proxies.NAMES.items()))
    starts_at: AwareDatetime | None = Field(default=None, description="开始时间（默认即时）")
    expires_at: AwareDatetime = Field(description="截止时间（最长一年）")
    consent_ref: str | None = Field(default=None, max_length=100,
                                    description="工作人员代为授权时：本人书面授权书编号（必填）")


class ProxyOut(BaseModel):
    id: str
    helper: str
    person_id: str
    actions: list[str]
    starts_at: datetime
    expires_at: datetime
    basis: Literal["self", "consent"] = Field(description="self 本人授权 / consent 工作人员凭书面授权登记")
    consent_ref: str | None
    granted_by: str
    granted_by_role: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    status: Literal["scheduled", "active", "expired", "revoked"]


class ProxyRevoked(ProxyOut):
    revoked_sessions: list[str] = Field(description="随之结束的代办员会话")


def _ctx(request: Request, parts: Accounts, source: Source, principal: CurrentPrincipal,
         clock: AppClock) -> proxies.Ctx:
    auth = request.headers.get("authorization") or ""
    return proxies.Ctx(parts, principal, clock.now(), source, auth[7:].strip() if auth[:7].lower() == "bearer " else None)


Call = Annotated[proxies.Ctx, Depends(_ctx)]


def _out(a, now, cls=ProxyOut, **extra):
    return cls(id=a.id, helper=a.helper, person_id=a.person_id, actions=list(a.actions), starts_at=a.starts_at,
               expires_at=a.expires_at, basis=a.basis, consent_ref=a.consent_ref, granted_by=a.granted_by,
               granted_by_role=a.granted_by_role, created_at=a.created_at, revoked_at=a.revoked_at,
               revoked_by=a.revoked_by, status=proxies.status_of(a, now), **extra)


@router.post("", status_code=201, response_model=ProxyOut, summary="授权代办员 Authorise a helper",
             description="居民本人为自己授权（basis=self），或社区、街道工作人员凭本人书面授权书（consent_ref）为辖区居民"
                         "授权辖区代办员（basis=consent）。代办员登录时（acting_for）令牌才带代办关系，到期或撤销即失效。"
                         "带 Idempotency-Key 重试只建一条（同一键、不同内容 422）。")
async def grant(body: ProxyIn, ctx: Call, idem: Idempotent):
    # a retried call (the same key and body) gets the first answer and makes no second record
    replayed = await idem.replay_stored(body)
    if replayed is not None:
        return replayed
    a = await proxies.prepare_grant(ctx, helper=body.helper, person_id=body.person_id, actions=list(body.actions),
                                    starts_at=body.starts_at, expires_at=body.expires_at, consent_ref=body.consent_ref)

    async def create(session):
        proxies.record_grant(session, ctx, a)
        return 201, _out(a, ctx.now)

    return await idem.run(body, create, now=ctx.now)


@router.get("", response_model=list[ProxyOut], summary="代办授权列表 Proxy authorisations I may see")
async def listing(ctx: Call, limit: int = Query(50, ge=1, le=200), after: str | None = None):
    return [_out(a, ctx.now) for a in await proxies.listing(ctx, limit=limit, after=after)]


@router.get("/{auth_id}", response_model=ProxyOut, summary="查看代办授权 Read a proxy authorisation")
async def read(auth_id: str, ctx: Call):
    return _out(await proxies.read(ctx, auth_id), ctx.now)


@router.post("/{auth_id}/revoke", response_model=ProxyRevoked, summary="撤销代办授权 Revoke a proxy authorisation",
             description="本人、代办员本人、辖区工作人员或运维撤销；代办员在该授权下的会话立即结束。")
async def revoke(auth_id: str, ctx: Call):
    a, ids = await proxies.revoke(ctx, auth_id)
    return _out(a, ctx.now, ProxyRevoked, revoked_sessions=ids)
