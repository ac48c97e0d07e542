"""Tables of resident deliberation: the electorate replica, topics with their timeline, co-signs, comments,
meetings, votes with ballots, resolutions with tasks and progress reports."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_services.base import Base


class DeliberationPolicy(Base):
    """Per community: how many co-signers (besides the proposer) turn a resident's proposal into a topic."""

    __tablename__ = "deliberation_policies"

    community_code: Mapped[str] = mapped_column(String(24), primary_key=True)
    cosign_threshold: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Elector(Base):
    """Where a person lives and in which household, copied from svc_residents (the record of truth) by its feed,
    as the requester profiles are (ADR 0007, 0018): scope and eligibility are decided here without a call."""

    __tablename__ = "deliberation_electors"

    person_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    building_code: Mapped[str] = mapped_column(String(24), index=True)
    household_id: Mapped[str] = mapped_column(String(36))
    household_head: Mapped[bool] = mapped_column(Boolean, default=False)
    birth_date: Mapped[date | None] = mapped_column(Date)
    version: Mapped[int | None] = mapped_column(Integer)
    removed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Topic(Base):
    __tablename__ = "deliberation_topics"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(32))
    scope_kind: Mapped[str] = mapped_column(String(16))           # building | grid | community
    scope_code: Mapped[str] = mapped_column(String(24), index=True)
    community_code: Mapped[str] = mapped_column(String(24), index=True)
    source: Mapped[str] = mapped_column(String(16))               # proposal | request | staff
    stage: Mapped[str] = mapped_column(String(16), index=True)
    proposer_person_id: Mapped[str | None] = mapped_column(String(36))
    request_id: Mapped[str | None] = mapped_column(String(36), unique=True)  # a 大事 escalated request
    cosign_threshold: Mapped[int] = mapped_column(Integer, default=0)
    cosigns: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)


class TopicEntry(Base):
    """The topic's timeline: every stage change (from, to, who, note), as a request's."""

    __tablename__ = "deliberation_topic_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic_id: Mapped[str] = mapped_column(ForeignKey("deliberation_topics.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(120))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Cosign(Base):
    __tablename__ = "deliberation_cosigns"
    __table_args__ = (UniqueConstraint("topic_id", "person_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic_id: Mapped[str] = mapped_column(ForeignKey("deliberation_topics.id"), index=True)
    person_id: Mapped[str] = mapped_column(String(36))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Comment(Base):
    __tablename__ = "deliberation_comments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    topic_id: Mapped[str] = mapped_column(ForeignKey("deliberation_topics.id"), index=True)
    person_id: Mapped[str | None] = mapped_column(String(36))     # the resident (a proxy's person)
    author: Mapped[str] = mapped_column(String(120))              # who typed it (member/user)
    author_role: Mapped[str] = mapped_column(String(24))
    text: Mapped[str] = mapped_column(Text)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)  # moderated: hidden with a reason, never deleted
    hidden_reason: Mapped[str | None] = mapped_column(Text)
    hidden_by: Mapped[str | None] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Meeting(Base):
    __tablename__ = "deliberation_meetings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    topic_id: Mapped[str] = mapped_column(ForeignKey("deliberation_topics.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    place: Mapped[str | None] = mapped_column(String(200))
    online_url: Mapped[str | None] = mapped_column(String(500))
    # [{"kind": "resident_rep"|"grid_worker"|"property"|"department", "ref": person id / user / org / dept code,
    #   "name": ..., "attended": bool | null}]
    members: Mapped[list[dict]] = mapped_column(JSON, default=list)
    minutes: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Vote(Base):
    __tablename__ = "deliberation_votes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    topic_id: Mapped[str] = mapped_column(ForeignKey("deliberation_topics.id"), unique=True)
    options: Mapped[list[str]] = mapped_column(JSON)
    eligibility: Mapped[str] = mapped_column(String(16))          # household_head | household | adult
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime())
    secret: Mapped[bool] = mapped_column(Boolean, default=True)
    rule: Mapped[str] = mapped_column(String(16))                 # simple | two_thirds | three_quarters (rules.py)
    quorum_rule: Mapped[str] = mapped_column(String(16), default="percent", server_default="percent")
    quorum_percent: Mapped[int | None] = mapped_column(Integer)    # percent quorums only; two_thirds is exact
    changeable: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(8), default="open")  # open | closed
    result: Mapped[dict | None] = mapped_column(JSON)             # frozen at close
    tally_hash: Mapped[str | None] = mapped_column(String(64))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Ballot(Base):
    """One per eligible voter: the unique (vote, voter_key) decides concurrent submissions, not a prior read."""

    __tablename__ = "deliberation_ballots"
    __table_args__ = (UniqueConstraint("vote_id", "voter_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    vote_id: Mapped[str] = mapped_column(ForeignKey("deliberation_votes.id"), index=True)
    voter_key: Mapped[str] = mapped_column(String(48))  # person, or household for one-per-household
    person_id: Mapped[str] = mapped_column(String(36))
    option: Mapped[str] = mapped_column(String(100))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    cast_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Resolution(Base):
    __tablename__ = "deliberation_resolutions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    topic_id: Mapped[str] = mapped_column(ForeignKey("deliberation_topics.id"), unique=True)
    text: Mapped[str] = mapped_column(Text)
    owners: Mapped[list[dict]] = mapped_column(JSON)  # [{"kind": community|department|provider, "ref": ...}]
    status: Mapped[str] = mapped_column(String(16), default="executing")  # executing | executed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ResolutionTask(Base):
    __tablename__ = "deliberation_tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    resolution_id: Mapped[str] = mapped_column(ForeignKey("deliberation_resolutions.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    owner_kind: Mapped[str] = mapped_column(String(16))
    owner_ref: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    overdue_warned: Mapped[bool] = mapped_column(Boolean, default=False)


class TaskReport(Base):
    __tablename__ = "deliberation_task_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("deliberation_tasks.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    percent: Mapped[int] = mapped_column(Integer)
    author: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
