"""KPI catalogue (loaded from catalogue.json), per-scope target overrides, and the observation rollup."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from common.models import BigIntPK
from svc_metrics.base import Base


class KpiDefinition(Base):
    __tablename__ = "kpi_definitions"

    code: Mapped[str] = mapped_column(String(48), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    name_zh: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(150))
    definition_zh: Mapped[str] = mapped_column(Text)
    definition_en: Mapped[str] = mapped_column(Text)
    unit: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(8))          # higher | lower
    calc: Mapped[str] = mapped_column(String(24))              # how observations aggregate (see measure.py)
    stat: Mapped[str] = mapped_column(String(8), default="mean")
    baseline: Mapped[dict[str, Any] | None] = mapped_column(JSON)   # {value, source}
    targets: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{value, source, note, group?}]
    warn_ratio: Mapped[float] = mapped_column(Float, default=0.1)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)


class TargetOverride(Base):
    """A target set for one place (district / street / community / grid) that beats the catalogue's."""

    __tablename__ = "kpi_target_overrides"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(48))
    scope: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(String(300))
    updated_by: Mapped[str] = mapped_column(String(160))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("code", "scope"),)


class Observation(Base):
    """One measured fact behind an indicator, derived from one entity's events (the incremental rollup).

    mode "flow": counted when `at` falls in the period. mode "stock": counted as of a moment when
    at <= moment < end_at (an open overdue request, a live exchange member, a registered resident).
    """

    __tablename__ = "kpi_observations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kpi: Mapped[str] = mapped_column(String(48))
    mode: Mapped[str] = mapped_column(String(8), default="flow")
    entity_kind: Mapped[str] = mapped_column(String(24))
    entity_id: Mapped[str] = mapped_column(String(96))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    place: Mapped[str] = mapped_column(String(32), default="")      # grid code, else community code, else ""
    category: Mapped[str | None] = mapped_column(String(48))
    channel: Mapped[str | None] = mapped_column(String(24))
    groups: Mapped[str] = mapped_column(String(200), default="")    # ",elderly,disabled," for LIKE filters
    num: Mapped[float] = mapped_column(Float, default=0)
    den: Mapped[float] = mapped_column(Float, default=0)
    value: Mapped[float | None] = mapped_column(Float)
    key: Mapped[str | None] = mapped_column(String(96))             # for distinct counts (a person)

    __table_args__ = (
        Index("ix_kpi_observations_entity", "entity_kind", "entity_id"),
        # Covering indexes for the KPI queries (every column they read without a channel or group filter), so a
        # period's aggregates are one index range scan with no table lookups: by time, and by place then time.
        Index("ix_kpi_observations_time", "kpi", "mode", "at", "end_at", "place", "category", "num", "den", "value",
              "key"),
        Index("ix_kpi_observations_place", "kpi", "mode", "place", "at", "end_at", "category", "num", "den", "value",
              "key"),
        # Stock observations that ended: the partial-month correction of a stock query (rollup.py) reads them by
        # end time.
        Index("ix_kpi_observations_end", "kpi", "end_at", "place", "category", "num", "den",
              sqlite_where=text("end_at IS NOT NULL"), postgresql_where=text("end_at IS NOT NULL")),
    )


class Rollup(Base):
    """Pre-aggregated observations per indicator input, calendar month (Asia/Shanghai), place and category:
    maintained incrementally at ingest (the difference between an entity's observations before and after),
    recomputed by the rebuild. KPI queries over whole months read these rows, never the observations.

    mode "flow": Σnum, Σden, n, Σvalue (integer millionths, so sums are exact and order-independent) and the
    number of values, of the observations whose `at` falls in the month. mode "stock": deltas, +1 at `at` and
    -1 at `end_at`, so the stock as of a month's start is the sum of every earlier month.

    Each observation counts once under dim "" and again under ("channel", its channel) and ("group", each of its
    special-group tags, and "*"), so a channel or group filter is also a plain range read. Those slices keep the
    category only for the inputs some indicator reads per category (rollup.category_inputs); for the others
    their rows have category "".
    """

    __tablename__ = "kpi_rollups"

    kpi: Mapped[str] = mapped_column(String(48), primary_key=True)
    mode: Mapped[str] = mapped_column(String(8), primary_key=True)
    dim: Mapped[str] = mapped_column(String(8), primary_key=True)
    # Key order: a query names one indicator, dim and (aggregated) place, then a range of months; the dim's
    # values (channels, groups, histogram bins) come after, so reading a histogram is one range.
    place: Mapped[str] = mapped_column(String(32), primary_key=True)        # "*" + district or street, or "*"
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)          # yyyymm, Asia/Shanghai
    dimval: Mapped[str] = mapped_column(String(48), primary_key=True)       # after the months: a channel or a bin
    category: Mapped[str] = mapped_column(String(48), primary_key=True)     # "" when the observation has none
    num: Mapped[float] = mapped_column(Float, default=0)
    den: Mapped[float] = mapped_column(Float, default=0)
    n: Mapped[int] = mapped_column(BigInteger, default=0)
    vsum: Mapped[int] = mapped_column(BigInteger, default=0)
    vn: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = ({"sqlite_with_rowid": False},)


class RollupTopPlace(Base):
    """The rollup places that together make up the whole platform: each district ("*" + its code) and "*" for
    the facts that have no district (catalogue items, members …). The platform has no rows of its own: a query
    for it adds up these places' rows (a city has a handful of districts), which spares ingest a third of its
    rollup upserts. A place is added the first time a row is written there and never removed (a place whose
    rows are all gone adds nothing)."""

    __tablename__ = "kpi_rollup_top_places"

    place: Mapped[str] = mapped_column(String(32), primary_key=True)
