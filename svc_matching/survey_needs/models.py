"""Demand from anonymous surveys (需求调研): how many answers asked for a category in a place, per survey; no person.
Named survey answers become needs (people.models.Need, source `survey`) instead."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_matching.base import Base


class SurveyDemand(Base):
    __tablename__ = "survey_demand"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    survey_id: Mapped[str] = mapped_column(String(36), index=True)
    title: Mapped[str] = mapped_column(String(200))
    place_code: Mapped[str] = mapped_column(String(24), index=True)
    category: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("survey_id", "place_code", "category"),)
