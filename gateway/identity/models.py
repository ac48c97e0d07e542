from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from gateway.base import Base


class LoginCount(Base):
    """Failed sign-in attempts of one account or one source address, and its back-off
    (gateway/identity/throttle.py; the database's copy when the gateway has no Redis)."""

    __tablename__ = "login_counts"

    key: Mapped[str] = mapped_column(String(80), primary_key=True)  # account:<username> | source:<address>
    failures: Mapped[int] = mapped_column(default=0)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # when the count is forgotten: a window after its last failure or the end of its back-off
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
