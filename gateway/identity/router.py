"""`POST /auth/v1/token` (OAuth2 client credentials, password, refresh_token and the SMS-code extension grant) and
the public JWKS. People's grants (password with the second factor, refresh) are gateway/accounts/signin.py; the
SMS grant is gateway/accounts/phone.py."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from common.deps import AppClock, DbSession, state
from gateway.accounts.deps import Accounts
from common.errors import Problem
from gateway.accounts.phone import SMS_GRANT, sms_grant
from gateway.accounts.signin import password_grant, refresh_grant
from gateway.identity.mtls import CertificatePins
from gateway.identity.tokens import TokenIssuer, verify_secret
from gateway.members.models import Member

router = APIRouter(tags=["auth 身份认证"])
Issuer = Annotated[TokenIssuer, state("token_issuer")]
Pins = Annotated[CertificatePins, state("cert_pins")]


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    role: str
    member: str
    scope: str
    refresh_token: str | None = None
    session_id: str | None = None


def _oauth_error(status: int, error: str, zh: str, en: str) -> Problem:
    # problem+json, with the OAuth2 `error` member too so standard clients understand it.
    return Problem(status, error, (zh, en), extra={"error": error},
                   headers={"WWW-Authenticate": "Basic"} if status == 401 else None)


@router.post("/auth/v1/token", response_model=TokenResponse, summary="获取访问令牌 Obtain an access token",
             description="grant_type=client_credentials（成员系统：client_id + client_secret）或 "
                         "grant_type=password（居民、工作人员：username + password，可带 client_id 指明来源应用；"
                         "管理员和运维另需 otp（动态验证码）或 recovery_code）或 grant_type=refresh_token"
                         "（refresh_token，每次使用后轮换；重复使用将注销整个会话）或 "
                         f"grant_type={SMS_GRANT}（居民：phone + code，短信验证码由 /auth/v1/phone/codes 发送；"
                         "首次登录即注册）。")
async def token(
    request: Request,
    session: DbSession,
    issuer: Issuer,
    pins: Pins,
    parts: Accounts,
    clock: AppClock,
    grant_type: Literal["client_credentials", "password", "refresh_token",
                        "urn:onenet:params:oauth:grant-type:sms"] = Form(...),
    client_id: str | None = Form(None),
    client_secret: str | None = Form(None),
    username: str | None = Form(None),
    password: str | None = Form(None),
    otp: str | None = Form(None, description="动态验证码（TOTP，6 位） one-time code"),
    recovery_code: str | None = Form(None, description="恢复码 recovery code"),
    refresh_token: str | None = Form(None),
    phone: str | None = Form(None, description="手机号（短信验证码登录） mobile number, SMS grant"),
    code: str | None = Form(None, description="短信验证码（6 位） the SMS code"),
    acting_for: str | None = Form(None, description="代办员：代办的居民（须有有效代办授权） a helper: the person acted for"),
):
    if grant_type == "client_credentials":
        if not client_id or not client_secret:
            raise _oauth_error(400, "invalid_request", "需要 client_id 与 client_secret",
                               "client_id and client_secret are required")
        member = await session.get(Member, client_id)
        await session.close()  # the password check below runs for a while: no connection held meanwhile
        ok = await run_in_threadpool(verify_secret, member.secret_hash if member else None, client_secret)
        if member is None or not ok:
            raise _oauth_error(401, "invalid_client", "成员单位不存在或密钥错误", "Unknown member or wrong secret")
        if member.status != "active":
            raise _oauth_error(401, "invalid_client", "该成员单位已被停用", "This member has been revoked")
        if member.client_cert_sha256:  # a member with a certificate on file gets tokens only presenting it
            pins.require(member.client_cert_sha256, request.scope, token_request=True)
        return issuer.issue(subject=member.code, member=member.code, role=member.role,
                            scopes=list(member.scopes or []), name=member.name)
    await session.close()
    if grant_type == "refresh_token":
        return await refresh_grant(parts, request, clock.now(), refresh_token=refresh_token, client_id=client_id)
    if grant_type == SMS_GRANT:
        return await sms_grant(parts, request, clock.now(), phone=phone, code=code, client_id=client_id)
    if not username or not password:
        raise _oauth_error(400, "invalid_request", "需要用户名与密码", "username and password are required")
    return await password_grant(parts, request, clock.now(), username=username, password=password,
                                client_id=client_id, otp=otp, acting_for=acting_for,
                                recovery_code=recovery_code)


@router.get("/.well-known/jwks.json", summary="公钥集 JSON Web Key Set")
async def jwks(issuer: Issuer) -> dict:
    return issuer.jwks()
