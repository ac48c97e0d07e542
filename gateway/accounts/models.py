"""Tables of staff accounts' security: sessions and their rotating refresh tokens, TOTP factors, recovery codes,
and the account audit (who changed what, when, before/after; every refusal too)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from gateway.base import Base


class AuthSession(Base):
    """One sign-in: a family of refresh tokens (each used once, rotating); its access tokens carry `sid`."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username"), index=True)
    member: Mapped[str] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime())
    idle_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())  # absolute end, whatever the rotations
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))  # sign_out | everywhere | reuse | admin | ...
    mfa: Mapped[bool] = mapped_column(default=False)
    # how the session was opened (RFC 8176 values: ["pwd"], ["pwd", "otp"], ["sms"]); unset on older rows
    amr: Mapped[list[str] | None] = mapped_column(JSON)
    # a helper's session acting for a person: from its proxy authorisation, ending with it (proxies.py)
    proxy_id: Mapped[str | None] = mapped_column(String(36), index=True)
    acting_for: Mapped[str | None] = mapped_column(String(64))
    acting_actions: Mapped[list[str] | None] = mapped_column(JSON)
    # a kiosk session (an ID card read at the kiosk's reader, kiosk.py)
    kiosk_device: Mapped[str | None] = mapped_column(String(64))


class RefreshToken(Base):
    """A refresh token of a session, by the SHA-256 of its secret part; `used_at` set once it was rotated."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TotpFactor(Base):
    """A user's TOTP (RFC 6238) secret; active once `enabled_at` is set; `last_step` refuses a code's reuse."""

    __tablename__ = "totp_factors"

    username: Mapped[str] = mapped_column(ForeignKey("users.username"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_step: Mapped[int | None] = mapped_column()


class RecoveryCode(Base):
    """A one-time recovery code (argon2id hash), used in place of a TOTP code when the device is lost."""

    __tablename__ = "recovery_codes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(ForeignKey("users.username"), index=True)
    code_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AccountAudit(Base):
    """Every change to an account, and every refusal: who (actor and role), what (action, target), when, the
    place it concerns (for administrators' reads in scope), before and after (no secrets)."""

    __tablename__ = "account_audit"
    __table_args__ = (Index("ix_account_audit_target_at", "target", "at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str | None] = mapped_column(String(64))
    place: Mapped[str | None] = mapped_column(String(18), index=True)  # the target's place code (scope)
    outcome: Mapped[str] = mapped_column(String(16))  # done | refused
    code: Mapped[str | None] = mapped_column(String(64))  # the refusal's problem code
    source: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)


class SmsChallenge(Base):
    """A one-time code sent by SMS to a phone (by its blind index): the code only as a keyed digest, its tries
    counted before each check, ended by its use, its fifth wrong try, a newer code or its expiry."""

    __tablename__ = "sms_challenges"
    __table_args__ = (Index("ix_sms_challenges_phone_at", "phone_bidx", "created_at"),
                      Index("ix_sms_challenges_source_at", "source", "created_at"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    phone_bidx: Mapped[str] = mapped_column(String(64))
    code_digest: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(default=0)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_reason: Mapped[str | None] = mapped_column(String(16))  # used | tries | superseded | unsent
    message_id: Mapped[str | None] = mapped_column(String(36))


class ResidentAccount(Base):
    """A resident's own account, made at the first sign-in by phone: the phone encrypted (bound to this row),
    its blind index unique (one account per phone), and once real-name bound the svc_residents person it is
    (or the pending registration waiting for staff)."""

    __tablename__ = "resident_accounts"

    username: Mapped[str] = mapped_column(ForeignKey("users.username"), primary_key=True)
    phone_enc: Mapped[str] = mapped_column(String(400))
    phone_bidx: Mapped[str] = mapped_column(String(64), unique=True)
    phone_masked: Mapped[str] = mapped_column(String(11))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    binding: Mapped[str] = mapped_column(String(16), default="none")  # none | bound | pending
    person_id: Mapped[str | None] = mapped_column(String(36))
    registration_id: Mapped[str | None] = mapped_column(String(36))
    name: Mapped[str | None] = mapped_column(String(50))
    id_number_masked: Mapped[str | None] = mapped_column(String(18))
    id_number_bidx: Mapped[str | None] = mapped_column(String(64), unique=True)
    bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ProxyAuthorisation(Base):
    """A helper (代办员, a user of role proxy) authorised to act for a person: by the person, or by staff on the
    person's written consent (`consent_ref`), for a set of actions, from `starts_at` until `expires_at` or
    revocation. A helper's session carries `acting_for` only from such a record (gateway/accounts/proxies.py)."""

    __tablename__ = "proxy_authorisations"
    __table_args__ = (Index("ix_proxy_authorisations_helper", "helper", "expires_at"),
                      Index("ix_proxy_authorisations_person", "person_id"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    helper: Mapped[str] = mapped_column(ForeignKey("users.username"))
    person_id: Mapped[str] = mapped_column(String(36))
    actions: Mapped[list[str]] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    basis: Mapped[str] = mapped_column(String(16))  # self (the person) | consent (staff, on written consent)
    consent_ref: Mapped[str | None] = mapped_column(String(100))
    place: Mapped[str | None] = mapped_column(String(20))  # the helper's place: whose staff see and revoke it
    granted_by: Mapped[str] = mapped_column(String(64))
    granted_by_role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_by: Mapped[str | None] = mapped_column(String(64))


class KioskDevice(Base):
    """An ID-card reader of a kiosk (a member system): the Ed25519 public key its readings are signed with."""

    __tablename__ = "kiosk_devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    member: Mapped[str] = mapped_column(ForeignKey("members.code"), index=True)
    public_key: Mapped[str] = mapped_column(String(100))  # raw 32 bytes, base64url
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    registered_by: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime())


class KioskReading(Base):
    """A card reading already exchanged for a session, by its nonce per device: a replay is refused."""

    __tablename__ = "kiosk_readings"

    device_id: Mapped[str] = mapped_column(ForeignKey("kiosk_devices.id"), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    read_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
