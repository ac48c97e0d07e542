"""Staff accounts (administrators in scope), one's own sessions, password and second factor; OAuth 2.0 token
revocation (RFC 7009), OpenID Connect discovery and userinfo. The token endpoint itself is gateway/identity."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from common.auth import Principal, get_principal
from common.clock import Clock, get_clock
from common.deps import AppDb, AppSettings
from common.errors import Problem, invalid
from common.lookup import get_or_404
from gateway.accounts import service
from gateway.accounts.audit import entry, place_of
from gateway.accounts.deps import Accounts, Source
from gateway.accounts.mfa import (new_secret, provisioning_uri, replace_recovery_codes, use_totp)
from gateway.accounts.models import AuthSession, TotpFactor
from gateway.accounts.passwords import check_password
from gateway.accounts.phone_router import router as phone_router
from gateway.accounts.kiosk import router as kiosk_router
from gateway.accounts.proxies_router import router as proxies_router
from gateway.accounts.schemas import (AccountCreate, AccountOut, AccountUpdate, AuditOut, PasswordChange,
                                      RecoveryCodes, SessionOut, SignedOut, TotpActivate, TotpEnrolment)
from gateway.accounts.signin import read_enrolment_ticket
from gateway.deps import Issuer
from gateway.identity.tokens import hash_secret, verify_secret
from gateway.members.models import User

router = APIRouter(tags=["auth 身份认证"])
accounts = APIRouter(prefix="/auth/v1/accounts", tags=["auth 身份认证"])


async def _ctx(parts: Accounts, source: Source, principal: Principal = Depends(get_principal),
               clock: Clock = Depends(get_clock)) -> service.Ctx:
    return service.Ctx(parts, principal, clock.now(), source)


AdminCall = Annotated[service.Ctx, Depends(_ctx)]


def _person(principal: Principal) -> None:
    if not principal.claims.get("sid"):
        raise Problem(403, "session.required", ("此操作需要以用户身份登录（会话令牌）",
                                                "This needs a person's signed-in session token"))


# ---- administrators ---------------------------------------------------------------------------------------------

@accounts.post("", status_code=201, response_model=AccountOut, summary="创建工作人员账号 Create a staff account")
async def create_account(body: AccountCreate, ctx: AdminCall):
    return await service.create_account(ctx, body)


@accounts.get("", response_model=list[AccountOut], summary="管辖范围内的账号 Accounts in my scope")
async def list_accounts(ctx: AdminCall, limit: int = Query(50, ge=1, le=200), after: str | None = None):
    return (await service.list_accounts(ctx, limit=limit, after=after))[:limit]


@accounts.get("/audit", response_model=list[AuditOut], summary="账号审计记录 Account audit",
              description="管辖范围内账号的每次变更和每次拒绝（谁、做了什么、何时、变更前后）。")
async def audit(ctx: AdminCall, target: str | None = None, limit: int = Query(50, ge=1, le=200),
                before: str | None = None):
    rows = await service.audit_rows(ctx, target=target, limit=limit, before_id=before)
    return [AuditOut.model_validate(r) for r in rows[:limit]]


@accounts.get("/{username}", response_model=AccountOut, summary="查看账号 Read an account")
async def get_account(username: str, ctx: AdminCall):
    return await service.get_account(ctx, username)


@accounts.patch("/{username}", response_model=AccountOut, summary="修改、停用账号 Change or disable an account")
async def update_account(username: str, body: AccountUpdate, ctx: AdminCall):
    return await service.update_account(ctx, username, body)


@accounts.post("/{username}/unlock", response_model=AccountOut, summary="解除登录锁定 Unlock sign-in")
async def unlock(username: str, ctx: AdminCall):
    return await service.unlock(ctx, username)


@accounts.post("/{username}/reset-mfa", response_model=AccountOut, summary="重置动态验证码 Reset the second factor")
async def reset_mfa(username: str, ctx: AdminCall):
    return await service.reset_mfa(ctx, username)


# ---- one's own account ------------------------------------------------------------------------------------------

@router.get("/auth/v1/me/sessions", response_model=list[SessionOut], summary="我的登录会话 My active sessions")
async def my_sessions(parts: Accounts, principal: Principal = Depends(get_principal),
                      clock: Clock = Depends(get_clock)):
    _person(principal)
    now = clock.now()
    async with parts.db.session() as session:
        rows = (await session.execute(select(AuthSession).where(
            AuthSession.username == principal.user, AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now, AuthSession.idle_expires_at > now)
            .order_by(AuthSession.created_at.desc()))).scalars()
        out = []
        for r in rows:
            o = SessionOut.model_validate(r)
            o.current = r.id == principal.claims.get("sid")
            out.append(o)
        return out


async def _sign_out(parts: Accounts, source: str, principal: Principal, now, *, which: str | None,
                    everywhere: bool) -> SignedOut:
    _person(principal)
    sessions = parts.sessions
    async with parts.db.session() as session, session.begin():
        if everywhere:
            ids = await sessions.revoke_user(session, principal.user, now, "everywhere", actor=principal.user,
                                             actor_role=principal.role, source=source)
        else:
            row = await get_or_404(session, AuthSession, which,
                                   Problem(404, "session.not_found", ("会话不存在", "Unknown session")),
                                   visible=lambda r: r.username == principal.user)
            ids = await sessions.revoke(session, [row], now, "sign_out", actor=principal.user,
                                        actor_role=principal.role, source=source)
    await parts.edge_changed()
    return SignedOut(revoked_sessions=ids)


@router.post("/auth/v1/sign-out", response_model=SignedOut, summary="退出登录 Sign out (this session)")
async def sign_out(parts: Accounts, source: Source, principal: Principal = Depends(get_principal),
                   clock: Clock = Depends(get_clock)):
    return await _sign_out(parts, source, principal, clock.now(), which=principal.claims.get("sid"),
                           everywhere=False)


@router.post("/auth/v1/sign-out-everywhere", response_model=SignedOut, summary="在所有设备退出 Sign out everywhere")
async def sign_out_everywhere(parts: Accounts, source: Source, principal: Principal = Depends(get_principal),
                              clock: Clock = Depends(get_clock)):
    return await _sign_out(parts, source, principal, clock.now(), which=None, everywhere=True)


@router.delete("/auth/v1/me/sessions/{session_id}", response_model=SignedOut, summary="结束某个会话 End one session")
async def end_session(session_id: str, parts: Accounts, source: Source,
                      principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    return await _sign_out(parts, source, principal, clock.now(), which=session_id, everywhere=False)


@router.post("/auth/v1/me/password", response_model=SignedOut, summary="修改密码 Change my password",
             description="须提供当前密码；新密码须符合密码策略；其他会话全部结束。")
async def change_password(body: PasswordChange, parts: Accounts, source: Source,
                          principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    _person(principal)
    now, db = clock.now(), parts.db
    ctx = service.Ctx(parts, principal, now, source)
    async with db.session() as session:
        user = await session.get(User, principal.user)
    ok = await run_in_threadpool(verify_secret, user.password_hash if user else None, body.current_password)
    try:
        if not ok:
            raise invalid("current_password", "password.wrong", "当前密码不正确", "The current password is wrong",
                          status=400)
        check_password(body.new_password, username=principal.user, field="new_password")
        if body.new_password == body.current_password:
            raise invalid("new_password", "password.unchanged", "新密码不能与当前密码相同",
                          "The new password must differ from the current one")
    except Problem as p:
        raise await ctx.refused("account.password", p, principal.user, place_of(user.scopes if user else None)) \
            from None
    hashed = await run_in_threadpool(hash_secret, body.new_password)
    async with db.session() as session, session.begin():
        user = await session.get(User, principal.user)
        user.password_hash, user.updated_at = hashed, now
        session.add(entry(now=now, actor=user.username, actor_role=user.role, action="account.password",
                          target=user.username, place=place_of(user.scopes), source=source,
                          after={"password_changed": True}))
        ids = await parts.sessions.revoke_user(session, user.username, now, "password", actor=user.username,
                                               actor_role=user.role, source=source, keep=principal.claims.get("sid"))
    await parts.edge_changed()
    return SignedOut(revoked_sessions=ids)


# ---- second factor ------------------------------------------------------------------------------------------

async def _enrolling(request: Request, issuer: Issuer) -> str:
    """The user enrolling: an enrolment ticket from the token endpoint, or the user's own session token."""
    auth = request.headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        username = read_enrolment_ticket(issuer, auth[7:].strip())
        if username:
            return username
    principal = await get_principal(request)
    _person(principal)
    return principal.user


@router.post("/auth/v1/mfa/totp/enrol", response_model=TotpEnrolment, summary="绑定动态验证码 Enrol TOTP",
             description="以 enrolment_token（登录时返回）或本人会话令牌调用；返回密钥与 otpauth:// 地址（扫码）。"
                         "已启用的动态验证码须由管理员重置后才能重新绑定。")
async def enrol(db: AppDb, username: str = Depends(_enrolling), clock: Clock = Depends(get_clock)):
    now = clock.now()
    async with db.session() as session, session.begin():
        factor = await session.get(TotpFactor, username)
        if factor is not None and factor.enabled_at is not None:
            raise Problem(409, "mfa.already_enrolled", ("动态验证码已启用；如设备丢失请使用恢复码或请管理员重置",
                                                       "A TOTP factor is active; use a recovery code or ask an "
                                                       "administrator to reset it"))
        secret = new_secret()
        if factor is None:
            session.add(TotpFactor(username=username, secret=secret, created_at=now))
        else:
            factor.secret, factor.created_at, factor.last_step = secret, now, None
    return TotpEnrolment(secret=secret, otpauth_uri=provisioning_uri(secret, username))


@router.post("/auth/v1/mfa/totp/activate", response_model=RecoveryCodes, summary="启用动态验证码 Activate TOTP",
             description="提交验证器显示的 6 位验证码；成功后返回 10 个一次性恢复码（只显示这一次）。")
async def activate(body: TotpActivate, db: AppDb, source: Source, username: str = Depends(_enrolling),
                   clock: Clock = Depends(get_clock)):
    now = clock.now()
    problem = None
    try:
        async with db.session() as session, session.begin():
            factor = await session.get(TotpFactor, username)
            if factor is None or factor.enabled_at is not None:
                raise invalid("code", "mfa.not_enrolling", "请先调用 /auth/v1/mfa/totp/enrol",
                              "Call /auth/v1/mfa/totp/enrol first", status=409)
            await use_totp(session, factor, body.code.strip(), now, field="code")
            factor.enabled_at = now
            codes = await replace_recovery_codes(session, username, now)
            user = await session.get(User, username)
            session.add(entry(now=now, actor=username, actor_role=user.role if user else "-",
                              action="account.mfa_enrol", target=username,
                              place=place_of(user.scopes if user else None), source=source,
                              after={"mfa_enrolled": True}))
    except Problem as p:
        problem = p
    if problem is not None:
        from gateway.accounts.audit import record_refusal

        await record_refusal(db, now=now, actor=username, actor_role="-", action="account.mfa_enrol",
                             target=username, code=problem.code, source=source)
        raise problem
    return RecoveryCodes(recovery_codes=codes)


@router.post("/auth/v1/mfa/recovery-codes", response_model=RecoveryCodes, summary="重新生成恢复码 New recovery codes",
             description="须以经过动态验证码登录的会话调用；旧恢复码全部作废。")
async def new_recovery_codes(db: AppDb, source: Source, principal: Principal = Depends(get_principal),
                             clock: Clock = Depends(get_clock)):
    _person(principal)
    if "otp" not in (principal.claims.get("amr") or []):
        raise Problem(403, "mfa.session_required", ("须以动态验证码登录后操作", "Sign in with your one-time code first"))
    now = clock.now()
    async with db.session() as session, session.begin():
        codes = await replace_recovery_codes(session, principal.user, now)
        session.add(entry(now=now, actor=principal.user, actor_role=principal.role, action="account.recovery_codes",
                          target=principal.user, source=source))
    return RecoveryCodes(recovery_codes=codes)


# ---- standards --------------------------------------------------------------------------------------------------

@router.post("/auth/v1/revoke", status_code=200, summary="撤销令牌 Token revocation (RFC 7009)",
             description="token=刷新令牌（或本会话的访问令牌），token_type_hint 可选。无论令牌是否有效都返回 200（RFC 7009 §2.2）；"
                         "缺 token（或为空）是请求本身不全：422 指明 token。")
async def revoke(parts: Accounts, source: Source, token: str = Form(..., min_length=1), token_type_hint: str | None = Form(None),
                 client_id: str | None = Form(None), clock: Clock = Depends(get_clock)) -> dict:
    state, now = parts, clock.now()
    sid = None
    async with state.db.session() as session, session.begin():
        sess = await state.sessions.by_refresh_token(session, token)
        if sess is None and token.count(".") == 2:  # an access token: its session
            try:
                claims = await state.verifier.verify(token)
                sid = claims.get("sid")
            except Problem:
                sid = None
            sess = await session.get(AuthSession, sid) if sid else None
        if sess is not None and (client_id is None or client_id == sess.member):
            await state.sessions.revoke(session, [sess], now, "revoked", actor=sess.username, actor_role="-",
                                        source=source)
            sid = sess.id
        else:
            sid = None
    if sid:
        await parts.edge_changed()
    return {}


@router.get("/auth/v1/userinfo", summary="用户信息 OpenID Connect userinfo")
async def userinfo(db: AppDb, principal: Principal = Depends(get_principal)) -> dict:
    out = {"sub": principal.user, "role": principal.role, "scopes": list(principal.scopes),
           "member": principal.member}
    async with db.session() as session:
        user = await session.get(User, principal.user) if principal.claims.get("sid") else None
    if user is not None:
        out.update(name=user.display_name, preferred_username=user.username, admin=bool(user.admin))
    elif principal.claims.get("name"):
        out["name"] = principal.claims["name"]
    if principal.acting_for:
        out["acting_for"] = principal.acting_for
    return out


@router.get("/.well-known/openid-configuration", summary="OpenID Connect 发现文档 Discovery")
async def discovery(settings: AppSettings, issuer: Issuer) -> dict:
    # the configured address, never the Host a call came with
    base = (settings.public_url or settings.gateway_url).rstrip("/")
    return {
        "issuer": issuer.issuer,
        "token_endpoint": f"{base}/auth/v1/token",
        "revocation_endpoint": f"{base}/auth/v1/revoke",
        "userinfo_endpoint": f"{base}/auth/v1/userinfo",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials", "password", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_post"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["sub", "name", "role", "scopes", "member", "acting_for", "acting_actions",
                           "proxy_authorisation", "kiosk_device", "sid", "amr"],
        "amr_values_supported": ["pwd", "otp", "sms", "sc"],
    }


router.include_router(accounts)
router.include_router(phone_router)
router.include_router(proxies_router)
router.include_router(kiosk_router)
