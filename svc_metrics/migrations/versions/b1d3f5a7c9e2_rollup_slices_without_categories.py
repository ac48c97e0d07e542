"""channel and group slices of the rollup add up the categories, except for the inputs some indicator reads per
category (closure_time, resolution at this revision)

Revision ID: b1d3f5a7c9e2
Revises: a9c3e5f7b2d4
Create Date: 2026-11-29 16:30:00

Upgrade: the per-category rows of those slices are added up into category "" in SQL. Downgrade: they are
recomputed per category from the observations. The rollup is derived data; no rebuild is needed either way.
"""
from __future__ import annotations

from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

revision = 'b1d3f5a7c9e2'
down_revision = 'a9c3e5f7b2d4'
branch_labels = None
depends_on = None

KEY = ('kpi', 'mode', 'dim', 'place', 'bucket', 'dimval', 'category')
SUMS = ('num', 'den', 'n', 'vsum', 'vn')
PER_CATEGORY = ('closure_time', 'resolution')   # rollup.category_inputs() when this revision was written
SLICES = "dim IN ('channel', 'group') AND kpi NOT IN ('closure_time', 'resolution')"


def upgrade() -> None:
    sums = ', '.join(f'SUM({c})' for c in SUMS)
    adds = ', '.join(f'{c} = kpi_rollups.{c} + excluded.{c}' for c in SUMS)
    op.execute(f"INSERT INTO kpi_rollups ({', '.join(KEY + SUMS)}) "
               f"SELECT kpi, mode, dim, place, bucket, dimval, '', {sums} FROM kpi_rollups "
               f"WHERE {SLICES} AND category <> '' GROUP BY kpi, mode, dim, place, bucket, dimval "
               f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {adds}")
    op.execute(f"DELETE FROM kpi_rollups WHERE {SLICES} AND category <> ''")


def downgrade() -> None:
    from svc_metrics.kpis import rollup

    op.execute(f"DELETE FROM kpi_rollups WHERE {SLICES}")
    bind = op.get_bind()
    acc: dict = {}

    def add(key: tuple, *v) -> None:
        cur = acc.setdefault(key, [0, 0, 0, 0, 0])
        for i, x in enumerate(v):
            cur[i] += x

    for kpi, mode, at, end_at, place, category, channel, groups, num, den, value in bind.execute(sa.text(
            "SELECT kpi, mode, at, end_at, place, category, channel, groups, num, den, value FROM kpi_observations "
            f"WHERE kpi NOT IN {PER_CATEGORY!r}")):
        cat = (category or '')[:48]
        for d, dv in rollup.dims(channel, groups or ''):
            if not d:
                continue
            for p in rollup.levels_of(place or ''):
                if mode == 'flow':
                    vs = 0 if value is None else round(value * rollup.MICRO)
                    add((kpi, mode, d, p, rollup.bucket_of(_aware(at)), dv, cat), num, den, 1, vs,
                        0 if value is None else 1)
                else:
                    add((kpi, mode, d, p, rollup.bucket_of(_aware(at)), dv, cat), num, den, 1, 0, 0)
                    if end_at is not None:
                        add((kpi, mode, d, p, rollup.bucket_of(_aware(end_at)), dv, cat), -num, -den, -1, 0, 0)
    rows = [dict(zip(KEY + SUMS, (*k, *v))) for k, v in acc.items() if any(v)]
    insert = sa.text(f"INSERT INTO kpi_rollups ({', '.join(KEY + SUMS)}) "
                     f"VALUES ({', '.join(':' + c for c in KEY + SUMS)})")
    for i in range(0, len(rows), 5000):
        bind.execute(insert, rows[i:i + 5000])


def _aware(at):
    if isinstance(at, str):   # SQLite: naive UTC text
        at = datetime.fromisoformat(at)
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at
