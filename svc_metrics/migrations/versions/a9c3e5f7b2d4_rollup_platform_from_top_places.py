"""the platform's rollup rows are no longer kept: a platform query adds up its districts and "*" (the facts with
no district), listed in kpi_rollup_top_places

Revision ID: a9c3e5f7b2d4
Revises: e7a4c2b9d1f0
Create Date: 2026-11-29 16:10:00

Upgrade: the "*" rows are recomputed from the observations that have no district (through the code that
maintains them at ingest), and the top places are listed. Downgrade: "*" becomes again the sum of every
district and of the facts with no district. The rollup is derived data; no rebuild is needed either way.
"""
from __future__ import annotations

from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

revision = 'a9c3e5f7b2d4'
down_revision = 'e7a4c2b9d1f0'
branch_labels = None
depends_on = None

KEY = ('kpi', 'mode', 'dim', 'place', 'bucket', 'dimval', 'category')
SUMS = ('num', 'den', 'n', 'vsum', 'vn')
TOP = "place = '*' OR (substr(place, 1, 1) = '*' AND length(place) = 7)"   # "*" and "*" + a district's 6 digits


def upgrade() -> None:
    from svc_metrics.kpis import rollup
    from svc_metrics.kpis.observations import Obs

    op.create_table(
        'kpi_rollup_top_places',
        sa.Column('place', sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint('place', name=op.f('pk_kpi_rollup_top_places')),
    )
    bind = op.get_bind()
    op.execute("DELETE FROM kpi_rollups WHERE place = '*'")
    acc: dict = {}
    for kpi, mode, at, end_at, place, category, channel, groups, num, den, value in bind.execute(sa.text(
            "SELECT kpi, mode, at, end_at, place, category, channel, groups, num, den, value FROM kpi_observations "
            "WHERE length(place) < 6")):
        rollup.contribute(acc, [Obs(kpi, _aware(at), mode=mode, end_at=_aware(end_at) if end_at else None,
                                    place=place or '', category=category, channel=channel, groups=groups or '',
                                    num=num, den=den, value=value)])
    rows = [dict(zip(rollup.COLUMNS, r)) for r in rollup.nonzero(acc)]
    insert = sa.text(f"INSERT INTO kpi_rollups ({', '.join(rollup.COLUMNS)}) "
                     f"VALUES ({', '.join(':' + c for c in rollup.COLUMNS)})")
    for i in range(0, len(rows), 5000):
        bind.execute(insert, rows[i:i + 5000])
    op.execute(f"INSERT INTO kpi_rollup_top_places (place) SELECT DISTINCT place FROM kpi_rollups WHERE {TOP}")


def downgrade() -> None:
    sums = ', '.join(f'SUM({c})' for c in SUMS)
    adds = ', '.join(f'{c} = kpi_rollups.{c} + excluded.{c}' for c in SUMS)
    op.execute(f"INSERT INTO kpi_rollups ({', '.join(KEY + SUMS)}) "
               f"SELECT kpi, mode, dim, '*', bucket, dimval, category, {sums} FROM kpi_rollups "
               f"WHERE substr(place, 1, 1) = '*' AND length(place) = 7 "
               f"GROUP BY kpi, mode, dim, bucket, dimval, category "
               f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {adds}")
    op.drop_table('kpi_rollup_top_places')


def _aware(at):
    if isinstance(at, str):   # SQLite: naive UTC text
        at = datetime.fromisoformat(at)
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at
