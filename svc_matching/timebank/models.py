"""Time bank and points (时间银行 / 积分): a double-entry ledger.

Every posting's entries sum to zero. Member accounts (a person's hours or points) may never go below zero;
each community has an issuance account (the source of credited hours, the only kind allowed below zero, its
balance is minus what has been issued) and a redemption account (where redeemed hours go).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from common.models import BigIntPK
from svc_matching.base import Base

UNITS = ("minute", "point")
ACCOUNT_KINDS = ("member", "issuance", "redemption")


class Account(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (UniqueConstraint("owner_kind", "owner_id", "unit", "kind"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(16))       # person | community
    owner_id: Mapped[str] = mapped_column(String(36), index=True)
    unit: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    allow_negative: Mapped[bool] = mapped_column(Boolean, default=False)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Posting(Base):
    __tablename__ = "ledger_postings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_posting_id: Mapped[str] = mapped_column(String(200), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))             # credit | redemption | transfer
    unit: Mapped[str] = mapped_column(String(16))
    memo: Mapped[str | None] = mapped_column(String(300))
    reference: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Entry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    posting_id: Mapped[str] = mapped_column(ForeignKey("ledger_postings.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
