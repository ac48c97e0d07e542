from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from gateway.base import Base

MEMBER_KINDS = ("department", "community", "app", "service", "emulator")


class Member(Base):
    """A member of the exchange (成员单位): a department, community, client app or internal service."""

    __tablename__ = "members"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    # Role and scopes granted to this member's own (client-credentials) tokens.
    role: Mapped[str] = mapped_column(String(32), default="system")
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret_hash: Mapped[str | None] = mapped_column(String(200))
    secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Optional mutual-TLS identity: SHA-256 of the member's client certificate (DER), lower-case hex. When set,
    # the member's token requests and calls must present that certificate (gateway.identity.mtls).
    client_cert_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)


class User(Base):
    """A person who logs in (demo residents and staff); their tokens name the app member they came through."""

    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    acting_for: Mapped[str | None] = mapped_column(String(64))
    member_code: Mapped[str | None] = mapped_column(ForeignKey("members.code"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # the administrator of its scope (community / street staff, ops for the platform): manages accounts there
    # (gateway/accounts/policy.py); administrators and ops sign in with a second factor
    admin: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
