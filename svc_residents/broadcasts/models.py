from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_residents.base import Base


class Broadcast(Base):
    __tablename__ = "broadcasts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    title: Mapped[str] = mapped_column(String(60))
    text: Mapped[str] = mapped_column(Text)
    place_code: Mapped[str] = mapped_column(String(24), index=True)
    place_level: Mapped[str] = mapped_column(String(16))
    group_code: Mapped[str | None] = mapped_column(String(32))
    sender: Mapped[str] = mapped_column(String(128))
    sender_role: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)     # queued | sending | sent
    audience: Mapped[int] = mapped_column(default=0)               # persons when it was sent for
    handed: Mapped[int] = mapped_column(default=0)                 # persons handed to the engine so far
    cursor: Mapped[str | None] = mapped_column(String(36))         # the last person handed over
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
