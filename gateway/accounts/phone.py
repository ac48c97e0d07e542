"""Residents sign in (and register, the first time) by phone with a one-time SMS code (issue 25).

- `POST /auth/v1/phone/codes` sends a 6-digit code through the SMS platform (common.sms, emulated in
  gateway/departments/sms.py). The answer is the same for a phone with an account and one without (no user
  enumeration), and so are the limits: a resend waits `sms_resend_seconds`, doubling with each code sent to the
  phone in the last hour; at most `sms_phone_per_hour` codes a phone and `sms_source_per_hour` a source address
  an hour (429 with Retry-After). A new code ends the phone's earlier ones.
- The code is stored only as a keyed digest (the platform's blind-index key, common.crypto, over the challenge id
  and the code), lives `sms_code_seconds` (5 minutes) and takes `sms_code_tries` (5) tries, each counted
  before the code is compared (one UPDATE, so parallel guesses cannot share a try); the fifth wrong try ends it.
- `POST /auth/v1/token` with `grant_type=urn:onenet:params:oauth:grant-type:sms` (`phone`, `code`) signs in:
  the first time it makes the resident's account (gateway/accounts/models.py ResidentAccount: the phone
  encrypted, bound to the row, and blind-indexed, one account per phone), then a session of the same machinery
  as staff's (gateway/accounts/sessions.py; `amr` ["sms"]). Every refusal is in the account audit, under the
  phone's masked form.
"""
from __future__ import annotations

import hmac
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from common.crypto import FieldProtection, mask_phone
from common.db import Database
from common.errors import Problem, field_error
from common.ids import new_id
from common.sms import SmsClient, SmsUnavailable
from common.validators import ValidationFailure, normalize_mobile
from gateway.accounts.audit import entry, record_refusal
from gateway.accounts.models import ResidentAccount, SmsChallenge
from gateway.accounts.own_calls import own_client, own_token
from gateway.members.models import Member, User

log = logging.getLogger("onenet.gateway.auth")
SMS_GRANT = "urn:onenet:params:oauth:grant-type:sms"
PHONE_DOMAIN = "account.phone"  # the blind index's domain for account phones
HOUR = timedelta(hours=1)
NO_PASSWORD = "!sms"  # not an argon2 hash: a phone account has no password, verify_secret says no


def phone_aad(username: str) -> str:
    return f"gateway:resident_accounts:{username}:phone"


def check_phone(value: str | None, field: str = "phone") -> str:
    try:
        return normalize_mobile(value or "")
    except ValidationFailure as exc:
        raise Problem(422, exc.code, (exc.message_zh, exc.message_en),
                      errors=[field_error(field, exc.code, exc.message_zh, exc.message_en)]) from None


def _grant_problem(status: int, code: str, zh: str, en: str, field: str = "code", **extra) -> Problem:
    return Problem(status, code, (zh, en), errors=[field_error(field, code, zh, en)],
                   extra={"error": "invalid_grant", **extra})


def limited(code: str, zh: str, en: str, retry_after: float) -> Problem:
    seconds = max(1, math.ceil(retry_after))
    return Problem(429, code, (zh, en), extra={"retry_after": seconds}, headers={"Retry-After": str(seconds)})


@dataclass
class PhoneSignIn:
    settings: object
    db: Database
    sms: SmsClient | None
    _protection: FieldProtection | None = None

    @property
    def protection(self) -> FieldProtection:
        # read on first use: a gateway that never signs a resident in touches no key file
        if self._protection is None:
            self._protection = FieldProtection.from_file(self.settings.field_keys_file, create=True)
        return self._protection

    async def aclose(self) -> None:
        if self.sms is not None:
            await self.sms.aclose()

    def index(self, phone: str) -> str:
        return self.protection.blind_index.digest(phone, domain=PHONE_DOMAIN)

    def _digest(self, challenge_id: str, code: str) -> str:
        return self.protection.blind_index.digest(f"{challenge_id}:{code}", domain="account.sms_code")

    # ---- sending a code ----------------------------------------------------------------------------------------

    async def send_code(self, phone_raw: str, *, source: str, now: datetime) -> dict:
        s = self.settings
        code = f"{secrets.randbelow(10**6):06d}"
        try:
            phone = check_phone(phone_raw)
        except Problem as p:
            await record_refusal(self.db, now=now, actor="-", actor_role="-", action="phone.code",
                                 code=p.code, source=source)
            raise
        bidx, masked = self.index(phone), mask_phone(phone)
        challenge_id = new_id()
        problem = None
        async with self.db.session() as session, session.begin():
            since = now - HOUR
            recent = (await session.execute(select(SmsChallenge.created_at).where(
                SmsChallenge.phone_bidx == bidx, SmsChallenge.created_at > since,
                func.coalesce(SmsChallenge.ended_reason, "") != "unsent")  # a code never sent is no resend
                .order_by(SmsChallenge.created_at.desc()))).scalars().all()
            from_source = (await session.execute(select(func.count()).select_from(SmsChallenge).where(
                SmsChallenge.source == source, SmsChallenge.created_at > since))).scalar_one()
            wait = self.resend_wait(len(recent))
            if recent and now < recent[0] + timedelta(seconds=wait):
                problem = limited("phone.resend_too_soon", "验证码已发送，请稍后再试", "A code was sent; wait before "
                                  "asking for another", (recent[0] + timedelta(seconds=wait) - now).total_seconds())
            elif len(recent) >= s.sms_phone_per_hour:
                problem = limited("phone.too_many_codes", "该手机号一小时内获取验证码次数过多，请稍后再试",
                                  "Too many codes for this phone in an hour; try later",
                                  (recent[-1] + HOUR - now).total_seconds())
            elif from_source >= s.sms_source_per_hour:
                problem = limited("phone.too_many_from_source", "该网络地址获取验证码次数过多，请稍后再试",
                                  "Too many codes asked from this address; try later", 3600)
            else:
                await session.execute(update(SmsChallenge).where(
                    SmsChallenge.phone_bidx == bidx, SmsChallenge.ended_at.is_(None))
                    .values(ended_at=now, ended_reason="superseded"))
                session.add(SmsChallenge(id=challenge_id, phone_bidx=bidx, code_digest=self._digest(challenge_id, code),
                                         source=source[:64], created_at=now,
                                         expires_at=now + timedelta(seconds=s.sms_code_seconds)))
        if problem is not None:
            await record_refusal(self.db, now=now, actor=masked, actor_role="-", action="phone.code", target=masked,
                                 code=problem.code, source=source)
            raise problem
        minutes = max(1, s.sms_code_seconds // 60)
        text = f"【一网通办】您的验证码是 {code}，{minutes} 分钟内有效。请勿告诉他人。"
        try:
            if self.sms is None:
                raise SmsUnavailable("no SMS platform configured")
            message_id = await self.sms.send(phone, text)
        except SmsUnavailable as exc:
            log.warning("SMS not sent: %s", exc, extra={"event": "auth.sms_unsent"})
            async with self.db.session() as session, session.begin():
                await session.execute(update(SmsChallenge).where(SmsChallenge.id == challenge_id)
                                      .values(ended_at=now, ended_reason="unsent"))
            p = Problem(503, "sms.unavailable", ("短信暂时无法发送，请稍后再试", "The text could not be sent; try again"),
                        headers={"Retry-After": "5"})
            await record_refusal(self.db, now=now, actor=masked, actor_role="-", action="phone.code", target=masked,
                                 code=p.code, source=source)
            raise p from None
        async with self.db.session() as session, session.begin():
            await session.execute(update(SmsChallenge).where(SmsChallenge.id == challenge_id)
                                  .values(message_id=message_id))
        return {"sent": True, "phone": masked, "expires_in": s.sms_code_seconds,
                "resend_after": math.ceil(self.resend_wait(len(recent) + 1)),
                "detail": "如该手机号可以接收短信，验证码已发送 A code was sent if the phone can receive texts"}

    def resend_wait(self, sent_in_hour: int) -> float:
        """Seconds to wait after the last code, when `sent_in_hour` codes went to the phone in the last hour."""
        return self.settings.sms_resend_seconds * (2 ** max(0, sent_in_hour - 1)) if sent_in_hour else 0.0

    # ---- checking a code ---------------------------------------------------------------------------------------

    async def check_code(self, phone: str, code: str | None, *, now: datetime) -> None:
        """The phone's live code is `code`, else a problem; the try counted first, the code used once."""
        bidx = self.index(phone)
        code = (code or "").strip()
        tries = self.settings.sms_code_tries
        async with self.db.session() as session, session.begin():
            row = (await session.execute(select(SmsChallenge).where(SmsChallenge.phone_bidx == bidx)
                                         .order_by(SmsChallenge.created_at.desc()).limit(1))).scalar_one_or_none()
            if row is None or row.ended_reason in ("used", "superseded", "unsent"):
                raise _grant_problem(400, "sms_code.invalid", "验证码错误，请重新获取", "Wrong code; ask for a new one")
            if row.ended_reason == "tries" or row.attempts >= tries:
                raise _grant_problem(400, "sms_code.too_many_tries", "验证码错误次数过多，请重新获取",
                                     "Too many wrong tries; ask for a new code")
            if now >= row.expires_at:
                raise _grant_problem(400, "sms_code.expired", "验证码已过期，请重新获取",
                                     "The code expired; ask for a new one")
            tried = row.attempts + 1  # this try (the UPDATE refreshes `row` too)
            counted = await session.execute(update(SmsChallenge).where(
                SmsChallenge.id == row.id, SmsChallenge.ended_at.is_(None), SmsChallenge.attempts < tries)
                .values(attempts=SmsChallenge.attempts + 1))
            if counted.rowcount != 1:
                raise _grant_problem(400, "sms_code.too_many_tries", "验证码错误次数过多，请重新获取",
                                     "Too many wrong tries; ask for a new code")
            right = len(code) == 6 and code.isdigit() and hmac.compare_digest(
                self._digest(row.id, code), row.code_digest)
            if right:
                used = await session.execute(update(SmsChallenge).where(
                    SmsChallenge.id == row.id, SmsChallenge.ended_at.is_(None))
                    .values(ended_at=now, ended_reason="used"))
                if used.rowcount == 1:
                    return
            elif tried >= tries:
                await session.execute(update(SmsChallenge).where(SmsChallenge.id == row.id)
                                      .values(ended_at=now, ended_reason="tries"))
        # the counted try commits with the refusal
        if tried >= tries and not right:
            raise _grant_problem(400, "sms_code.too_many_tries", "验证码错误次数过多，请重新获取",
                                 "Too many wrong tries; ask for a new code")
        raise _grant_problem(400, "sms_code.invalid", "验证码错误", "Wrong code",
                             tries_left=max(0, tries - tried))

    # ---- the resident's account ------------------------------------------------------------------------------

    async def account(self, phone: str, *, now: datetime, member: str, source: str) -> tuple[User, bool]:
        """The phone's resident account, made on its first sign-in; (user, made now)."""
        bidx = self.index(phone)
        for _ in range(2):  # a parallel first sign-in of the same phone made it: read that one
            async with self.db.session() as session:
                acc = (await session.execute(select(ResidentAccount).where(
                    ResidentAccount.phone_bidx == bidx))).scalar_one_or_none()
                if acc is not None:
                    return await session.get(User, acc.username), False
            username = f"r{new_id().replace('-', '')[:20]}"
            masked = mask_phone(phone)
            try:
                async with self.db.session() as session, session.begin():
                    user = User(username=username, display_name=f"居民 {masked}", password_hash=NO_PASSWORD,
                                role="resident", scopes=[], member_code=member, status="active", created_at=now,
                                admin=False, version=1)
                    session.add(user)
                    await session.flush()
                    session.add(ResidentAccount(
                        username=username, phone_enc=self.protection.cipher.encrypt(phone, aad=phone_aad(username)),
                        phone_bidx=bidx, phone_masked=masked, created_at=now, binding="none"))
                    session.add(entry(now=now, actor=username, actor_role="resident", action="account.register",
                                      target=username, source=source, after={"phone": masked, "via": "sms"}))
                return user, True
            except IntegrityError:
                continue
        raise Problem(409, "account.conflict", ("账号正在创建，请重试", "The account is being made; try again"))


async def sms_grant(parts, request, now: datetime, *, phone: str | None, code: str | None,
                    client_id: str | None) -> dict:
    """`POST /auth/v1/token` with the SMS grant: check the code, make or find the account, start a session."""
    state = parts  # gateway.accounts.deps.AccountParts
    flow: PhoneSignIn = state.phone
    source = request.client.host if request.client else "-"
    masked = "-"
    try:
        p = check_phone(phone)
        masked = mask_phone(p)
        await flow.check_code(p, code, now=now)
        async with state.db.session() as session:
            member = await session.get(Member, client_id or "portal")
        if member is None or member.status != "active":
            raise Problem(401, "invalid_client", ("来源应用未登记或已停用", "Unknown or revoked client app"),
                          extra={"error": "invalid_client"})
        user, _made = await flow.account(p, now=now, member=member.code, source=source)
        if user.status != "active":
            raise _grant_problem(401, "account.disabled", "账号已停用，请联系社区", "The account is disabled",
                                 field="phone")
    except Problem as problem:
        await record_refusal(state.db, now=now, actor=masked, actor_role="resident", action="session.sign_in",
                             target=masked, code=problem.code, source=source)
        raise
    return await state.sessions.start(user, member.code, now, source=source,
                                      user_agent=request.headers.get("user-agent"), mfa=False, amr=["sms"])


def build_phone_signin(settings, db: Database, issuer, departments_upstream) -> PhoneSignIn:
    """The flow with its SMS client: straight at the emulators' upstream with the gateway's assertion (ADR 0013)
    and a machine token of the gateway's own."""
    sms = SmsClient(own_client(departments_upstream, 5.0), own_token(issuer)) if departments_upstream else None
    return PhoneSignIn(settings, db, sms)
