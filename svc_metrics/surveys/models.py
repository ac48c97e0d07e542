"""Surveys (满意度测评 · 需求调研): questionnaires, invitations, the one-time tokens, responses and their tallies.

Anonymity (docs/adr/0019-surveys.md): an anonymous survey's response row holds no person, no invitation, no token
and no time; the token's spent state sits in `survey_tokens`, which holds no person either; the only link from a
person to a token is the invitation's undelivered token, cleared when it is handed out. No table written when a
response is kept has a timestamp or an id shared with an invitation."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_metrics.base import Base


class Survey(Base):
    """One revision of a questionnaire with its distribution; `family_id` ties the revisions together."""

    __tablename__ = "surveys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    title: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))              # satisfaction | needs | general
    anonymous: Mapped[bool] = mapped_column(Boolean, default=True)
    scope: Mapped[str] = mapped_column(String(24), index=True)   # street / community / grid code
    period: Mapped[str | None] = mapped_column(String(16))       # the quarter it measures, e.g. 2026-Q4
    questionnaire: Mapped[dict[str, Any]] = mapped_column(JSON)
    sample: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    version: Mapped[int] = mapped_column(Integer, default=1)
    invited: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the one reminder, claimed once

    __table_args__ = (UniqueConstraint("family_id", "revision"),)


class Invitation(Base):
    """Who is invited (a recorded invitation, told through svc_residents' notification channels: notices.py).
    `token` is the person's one-time token until it is handed out (then NULL: nothing links them any more)."""

    __tablename__ = "survey_invitations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(36), ForeignKey("surveys.id"))
    person_id: Mapped[str] = mapped_column(String(64))
    grid: Mapped[str | None] = mapped_column(String(24))
    community: Mapped[str | None] = mapped_column(String(24))
    token: Mapped[str | None] = mapped_column(String(64))
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("survey_id", "person_id"),
                      Index("ix_survey_invitations_place", "survey_id", "grid"))


class SurveyToken(Base):
    """A valid token (by its SHA-256) and whether it is spent. Inserted in random order at invitation; the
    place, age band and groups are generalised until at least `min_group` invitees share them (k-anonymity);
    `person_id` only for a named survey."""

    __tablename__ = "survey_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(36), ForeignKey("surveys.id"))
    place: Mapped[str] = mapped_column(String(24))
    age_band: Mapped[str] = mapped_column(String(8), default="")
    groups: Mapped[str] = mapped_column(String(200), default="")     # ",elderly,disabled,"
    person_id: Mapped[str | None] = mapped_column(String(64))
    spent: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_survey_tokens_survey", "survey_id", "place", "spent"),)


class SurveyResponse(Base):
    """One response. Anonymous: a random id, the token's generalised attributes and the channel, nothing else."""

    __tablename__ = "survey_responses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)     # UUIDv4: no time in it
    survey_id: Mapped[str] = mapped_column(String(36), ForeignKey("surveys.id"), index=True)
    channel: Mapped[str] = mapped_column(String(8))                   # app | kiosk | visit
    place: Mapped[str] = mapped_column(String(24))
    age_band: Mapped[str] = mapped_column(String(8), default="")
    groups: Mapped[str] = mapped_column(String(200), default="")
    answers: Mapped[dict[str, Any]] = mapped_column(JSON)
    # named surveys only
    person_id: Mapped[str | None] = mapped_column(String(64))
    entered_by: Mapped[str | None] = mapped_column(String(160))       # 入户: the staff member who entered it


class SurveyTally(Base):
    """Running sums per question, answer value and sub-group, kept with each response (results read these, not
    the responses). dim: "" (all) | age_band | group | channel; value: an option key, a Likert value, or "" for
    a number question's n / Σ / Σ²."""

    __tablename__ = "survey_tallies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    survey_id: Mapped[str] = mapped_column(String(36), ForeignKey("surveys.id"))
    place: Mapped[str] = mapped_column(String(24))
    question: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(48))
    dim: Mapped[str] = mapped_column(String(12))
    dim_value: Mapped[str] = mapped_column(String(48))
    n: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[float] = mapped_column(Float, default=0)
    total_sq: Mapped[float] = mapped_column(Float, default=0)

    __table_args__ = (UniqueConstraint("survey_id", "place", "question", "value", "dim", "dim_value",
                                       name="uq_survey_tallies_key"),)
