"""TOTP (RFC 6238, pyotp) and recovery codes for staff; the rule of who needs a second factor."""
from __future__ import annotations

import secrets
from datetime import datetime

import pyotp
from sqlalchemy import select, update

from common.errors import Problem, field_error
from common.ids import new_id
from gateway.accounts.models import RecoveryCode, TotpFactor
from gateway.identity.tokens import hash_secret, verify_secret

ISSUER_NAME = "OneNet"
RECOVERY_CODES = 10
DRIFT_STEPS = 1  # a code of the step before or after is taken too (clock drift, RFC 6238 §5.2)


def mfa_required(user, required_roles) -> bool:
    """Administrators of every level and the roles named in settings (ops by default) need a second factor."""
    return bool(user.admin) or user.role in required_roles


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER_NAME)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code `code` is (within the drift), else None."""
    if not code or not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    for offset in (0, -1, 1)[: 1 + 2 * DRIFT_STEPS]:
        if secrets.compare_digest(totp.generate_otp(step + offset), code):
            return step + offset
    return None


def _problem(status: int, code: str, field: str, zh: str, en: str, error: str = "invalid_grant") -> Problem:
    return Problem(status, code, (zh, en), errors=[field_error(field, code, zh, en)], extra={"error": error})


def wrong_code(field: str = "otp") -> Problem:
    return _problem(401, "mfa.invalid_code", field, "动态验证码错误或已过期", "Wrong or expired one-time code")


def reused_code(field: str = "otp") -> Problem:
    return _problem(401, "mfa.code_reused", field, "该动态验证码已使用过，请等待下一个验证码",
                    "This one-time code was used already; wait for the next one")


async def use_totp(session, factor: TotpFactor, code: str, now: datetime, field: str = "otp") -> None:
    """Accept a TOTP code once: a code of a step already used (or older) is refused (replay)."""
    step = matching_step(factor.secret, code, now)
    if step is None:
        raise wrong_code(field)
    # compare-and-set on last_step: two parallel uses of one code, one wins
    done = await session.execute(update(TotpFactor).where(
        TotpFactor.username == factor.username,
        (TotpFactor.last_step.is_(None)) | (TotpFactor.last_step < step)).values(last_step=step))
    if done.rowcount != 1:
        raise reused_code(field)


async def use_recovery_code(session, username: str, code: str, now: datetime) -> None:
    rows = (await session.execute(select(RecoveryCode).where(
        RecoveryCode.username == username, RecoveryCode.used_at.is_(None)))).scalars().all()
    normalised = code.strip().replace("-", "").lower()
    for row in rows:
        if verify_secret(row.code_hash, normalised):
            done = await session.execute(update(RecoveryCode).where(
                RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None)).values(used_at=now))
            if done.rowcount == 1:
                return
    raise _problem(401, "mfa.invalid_recovery_code", "recovery_code", "恢复码错误或已使用",
                   "Wrong or already used recovery code")


def make_recovery_codes() -> list[str]:
    out = []
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(5)  # 40 bits each, shown as xxxxx-xxxxx
        out.append(f"{raw[:5]}-{raw[5:]}")
    return out


async def replace_recovery_codes(session, username: str, now: datetime) -> list[str]:
    from sqlalchemy import delete

    await session.execute(delete(RecoveryCode).where(RecoveryCode.username == username))
    codes = make_recovery_codes()
    for c in codes:
        session.add(RecoveryCode(id=new_id(), username=username, code_hash=hash_secret(c.replace("-", "")),
                                 created_at=now))
    return codes
