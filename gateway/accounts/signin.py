"""The password grant for people (with the second factor where required) and the refresh_token grant, as
`POST /auth/v1/token` calls them.

Sign-in order: the attempt is counted by the back-off (gateway/identity/throttle.py: one rule for passwords,
second-factor codes and recovery codes alike, per account and per source) before anything is checked; then the
password, the account's state, the app, then the second factor for administrators and ops, and for anyone who
enrolled one. Only a complete
sign-in gives the count back; a missing or wrong code counts as a failure, so codes cannot be guessed beyond the
back-off either. An administrator without an enrolled factor gets no token but a 10-minute enrolment ticket
good only at `/auth/v1/mfa/totp/*`.
"""
from __future__ import annotations

import logging

import jwt
from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from common.errors import Problem, field_error
from gateway.accounts.audit import place_of, record_refusal
from gateway.accounts.deps import AccountParts
from gateway.accounts.mfa import mfa_required, use_recovery_code, use_totp
from gateway.accounts.models import TotpFactor
from gateway.accounts.proxies import for_sign_in
from gateway.identity.tokens import verify_secret
from gateway.members.models import Member, User

log = logging.getLogger("onenet.gateway.auth")
ENROLMENT_SECONDS = 600


def _oauth(status: int, error: str, code: str, zh: str, en: str, field: str | None = None, **extra) -> Problem:
    return Problem(status, code, (zh, en), errors=[field_error(field, code, zh, en)] if field else None,
                   extra={"error": error, **extra},
                   headers={"WWW-Authenticate": "Basic"} if status == 401 and error == "invalid_client" else None)


def enrolment_audience(issuer) -> str:
    return f"{issuer.audience}:mfa-enrolment"


def enrolment_ticket(issuer, username: str) -> str:
    now = int(issuer.clock.timestamp())
    return jwt.encode({"iss": issuer.issuer, "aud": enrolment_audience(issuer), "sub": username, "iat": now,
                       "exp": now + ENROLMENT_SECONDS, "typ": "mfa-enrolment"},
                      issuer.active.private_key, algorithm="RS256", headers={"kid": issuer.active.kid})


def read_enrolment_ticket(issuer, token: str) -> str | None:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = next(k for k in issuer.keys if k.kid == kid)
        claims = jwt.decode(token, key.private_key.public_key(), algorithms=["RS256"],
                            audience=enrolment_audience(issuer), issuer=issuer.issuer,
                            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
    except (jwt.InvalidTokenError, StopIteration, AttributeError):
        return None
    if claims.get("typ") != "mfa-enrolment" or not isinstance(claims.get("exp"), (int, float)) \
            or claims["exp"] <= issuer.clock.timestamp():
        return None
    return str(claims["sub"])


async def password_grant(parts: AccountParts, request: Request, now, *, username: str, password: str,
                         client_id: str | None, otp: str | None, recovery_code: str | None,
                         acting_for: str | None = None) -> dict:
    state = parts
    db, throttle = state.db, state.throttle
    source = request.client.host if request.client else "-"

    async def refuse(problem: Problem, user: tuple | None) -> Problem:
        # user: (username, role, scopes) as read before the rollback
        await record_refusal(db, now=now, actor=username[:64], actor_role=user[1] if user else "-",
                             action="session.sign_in", target=user[0] if user else None,
                             place=place_of(user[2]) if user else None, code=problem.code, source=source)
        return problem

    try:
        attempt = await throttle.attempt(username, source, now)
    except Problem as p:
        raise await refuse(p, None) from None
    problem, seen = None, {}
    try:
        async with db.session() as session, session.begin():
            user, member, used_mfa = await _check(parts, request, session, attempt, seen, username=username,
                                                  password=password, client_id=client_id, otp=otp,
                                                  recovery_code=recovery_code, now=now)
    except Problem as p:  # recorded once the transaction is over (its locks released)
        problem = p
    if problem is not None:
        raise await refuse(problem, seen.get("user"))
    await throttle.succeeded(attempt, now)
    try:  # a helper acts for a person only under a valid authorisation (proxies.py)
        proxy = await for_sign_in(parts, user, acting_for, now, source=source)
    except Problem as p:
        raise await refuse(p, seen.get("user")) from None
    return await state.sessions.start(user, member.code, now, source=source,
                                      user_agent=request.headers.get("user-agent"), mfa=used_mfa, proxy=proxy)


async def refresh_grant(parts: AccountParts, request: Request, now, *, refresh_token: str | None,
                        client_id: str | None) -> dict:
    state = parts
    source = request.client.host if request.client else "-"
    if not refresh_token:
        raise _oauth(400, "invalid_request", "invalid_request", "需要 refresh_token", "refresh_token is required",
                     field="refresh_token")
    try:
        out = await state.sessions.refresh(refresh_token, now, client_id=client_id, source=source)
    except Problem as p:
        await record_refusal(state.db, now=now, actor=refresh_token.partition(".")[0][:64] or "-", actor_role="-",
                             action="session.refresh", code=p.code, source=source)
        if p.code in ("refresh_token.reused", "account.disabled"):
            await parts.edge_changed()
        raise
    return out


async def _check(parts: AccountParts, request: Request, session, attempt, seen: dict, *, username: str, password: str,
                 client_id: str | None, otp: str | None, recovery_code: str | None, now):
    state = parts
    user = await session.get(User, username)
    ok = await run_in_threadpool(verify_secret, user.password_hash if user else None, password)
    if user is None or not ok:
        raise _oauth(401, "invalid_grant", "invalid_grant", "用户名或密码错误", "Wrong username or password")
    seen["user"] = (user.username, user.role, list(user.scopes or []))
    if user.status != "active":  # said only to whoever knows the password
        raise _oauth(401, "invalid_grant", "account.disabled", "账号已停用，请联系管理员",
                     "The account is disabled; ask an administrator", field="username")
    member = await session.get(Member, client_id or user.member_code or "portal")
    if member is None or member.status != "active":
        raise _oauth(401, "invalid_client", "invalid_client", "来源应用未登记或已停用", "Unknown or revoked client app")
    if member.client_cert_sha256:
        state.cert_pins.require(member.client_cert_sha256, request.scope, token_request=True)
    factor = await session.get(TotpFactor, user.username)
    enrolled = factor is not None and factor.enabled_at is not None
    if not enrolled and not mfa_required(user, state.settings.mfa_required_roles):
        return user, member, False  # (a factor someone enrolled of their own accord is asked for too)
    if not enrolled:
        await state.throttle.succeeded(attempt, now)  # the password was right; no token until enrolled
        raise _oauth(403, "mfa_enrolment_required", "mfa.enrolment_required",
                     "管理员和运维账号须先绑定动态验证码（TOTP）：请用 enrolment_token 调用 /auth/v1/mfa/totp/enrol",
                     "Administrators and ops must enrol a TOTP authenticator first: call /auth/v1/mfa/totp/enrol "
                     "with the enrolment_token", field="otp",
                     enrolment_token=enrolment_ticket(state.issuer, user.username))
    if otp:
        await use_totp(session, factor, otp.strip(), now)
    elif recovery_code:
        await use_recovery_code(session, user.username, recovery_code, now)
    else:
        raise _oauth(401, "invalid_grant", "mfa.required", "该账号须输入动态验证码（otp）或恢复码",
                     "This account needs its one-time code (otp) or a recovery code", field="otp")
    return user, member, True
