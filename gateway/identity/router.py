"""`POST /auth/v1/token` (OAuth2 client credentials and password grants) and the public JWKS."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from common.errors import Problem
from gateway.identity.tokens import verify_secret
from gateway.members.models import Member, User

router = APIRouter(tags=["auth 身份认证"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    role: str
    member: str
    scope: str


def _oauth_error(status: int, error: str, zh: str, en: str) -> Problem:
    # problem+json, with the OAuth2 `error` member too so standard clients understand it.
    return Problem(status, error, (zh, en), extra={"error": error},
                   headers={"WWW-Authenticate": "Basic"} if status == 401 else None)


def _certificate(request: Request, member: Member) -> None:
    """A member with a client certificate on file gets tokens only over a connection presenting it."""
    if member.client_cert_sha256:
        request.app.state.cert_pins.require(member.client_cert_sha256, request.scope, token_request=True)


@router.post("/auth/v1/token", response_model=TokenResponse, summary="获取访问令牌 Obtain an access token",
             description="grant_type=client_credentials（成员系统：client_id + client_secret）或 "
                         "grant_type=password（居民、工作人员演示账号：username + password，可带 client_id 指明来源应用）。")
async def token(
    request: Request,
    grant_type: Literal["client_credentials", "password"] = Form(...),
    client_id: str | None = Form(None),
    client_secret: str | None = Form(None),
    username: str | None = Form(None),
    password: str | None = Form(None),
):
    issuer = request.app.state.token_issuer
    async with request.app.state.db.session() as session:
        if grant_type == "client_credentials":
            if not client_id or not client_secret:
                raise _oauth_error(400, "invalid_request", "需要 client_id 与 client_secret",
                                   "client_id and client_secret are required")
            member = await session.get(Member, client_id)
            ok = await run_in_threadpool(verify_secret, member.secret_hash if member else None, client_secret)
            if member is None or not ok:
                raise _oauth_error(401, "invalid_client", "成员单位不存在或密钥错误", "Unknown member or wrong secret")
            if member.status != "active":
                raise _oauth_error(401, "invalid_client", "该成员单位已被停用", "This member has been revoked")
            _certificate(request, member)
            return issuer.issue(subject=member.code, member=member.code, role=member.role,
                                scopes=list(member.scopes or []), name=member.name)

        if not username or not password:
            raise _oauth_error(400, "invalid_request", "需要用户名与密码", "username and password are required")
        # counted before the password is checked; refused (429) while the account or the source backs off
        throttle, now = request.app.state.login_throttle, request.app.state.clock.now()
        attempt = await throttle.attempt(username, request.client.host if request.client else "-", now)
        user = await session.get(User, username)
        ok = await run_in_threadpool(verify_secret, user.password_hash if user else None, password)
        if user is None or not ok or user.status != "active":
            raise _oauth_error(401, "invalid_grant", "用户名或密码错误", "Wrong username or password")
        await throttle.succeeded(attempt, now)
        member_code = client_id or user.member_code or "portal"
        member = await session.get(Member, member_code)
        if member is None or member.status != "active":
            raise _oauth_error(401, "invalid_client", "来源应用未登记或已停用", "Unknown or revoked client app")
        _certificate(request, member)
        return issuer.issue(subject=user.username, member=member.code, role=user.role,
                            scopes=list(user.scopes or []), acting_for=user.acting_for, name=user.display_name)


@router.get("/.well-known/jwks.json", summary="公钥集 JSON Web Key Set")
async def jwks(request: Request) -> dict:
    return request.app.state.token_issuer.jwks()
