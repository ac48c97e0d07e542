"""Exchange tables: the resource catalogue (政务信息资源目录), grants (申请-审批) and the hash-chained message log."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from gateway.base import Base

SHARING_CLASSES = ("unconditional", "conditional", "not_shared")  # 无条件 / 有条件 / 不予共享
GRADES = ("core", "important", "general")  # 核心 / 重要 / 一般
GRANT_STATES = ("pending", "approved", "refused", "revoked")


class Resource(Base):
    """A data resource a member provides through the exchange, with its sharing class and graded fields.

    `fields` is a list of `{"path", "label", "grade", "personal", "sensitive", "mask"}`; `path` is dotted
    (`data.dibao`) and applies to every element of a list response (`items[]` or a top-level array).
    """

    __tablename__ = "exchange_resources"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)  # member code
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), default="")
    sharing_class: Mapped[str] = mapped_column(String(16))
    service: Mapped[str] = mapped_column(String(32))  # upstream (first path segment)
    path_prefix: Mapped[str] = mapped_column(String(200))
    methods: Mapped[list[str]] = mapped_column(JSON, default=list)
    fields: Mapped[list[dict]] = mapped_column(JSON, default=list)
    # X-Road addressing: /r1/{instance}/{member_class}/{member_code}/{subsystem}/{service_code}
    xroad_member_class: Mapped[str] = mapped_column(String(16), default="GOV")
    xroad_subsystem: Mapped[str] = mapped_column(String(64), default="")
    xroad_service: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Grant(Base):
    """A member's application for a resource and its outcome (申请 → 审批 / 不予批准 → 撤销)."""

    __tablename__ = "exchange_grants"
    __table_args__ = (Index("ix_exchange_grants_consumer_resource", "consumer", "resource"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    consumer: Mapped[str] = mapped_column(String(64))
    applicant_user: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(500))
    requested_fields: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    requested_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    fields: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # granted scope; None = every field
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime())
    check_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reply_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


class MessageLog(Base):
    """One forwarded exchange (全程留痕). `hash` = SHA-256 over the canonical content including `prev_hash`."""

    __tablename__ = "exchange_message_log"
    __table_args__ = (Index("ix_exchange_message_log_resource_seq", "resource", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                     autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    member: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str | None] = mapped_column(String(64), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    purpose: Mapped[str | None] = mapped_column(String(500), nullable=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column()
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
