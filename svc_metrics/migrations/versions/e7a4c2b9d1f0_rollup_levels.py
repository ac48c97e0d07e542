"""rollup rows for the platform, districts and streets only (key: kpi, mode, dim, place, bucket, dimval,
category); value histograms

Revision ID: e7a4c2b9d1f0
Revises: d5e8b2c4f1a7
Create Date: 2026-11-29 11:20:00

The rollup is derived data: the new table is filled from the old one in SQL (the old per-place rows added up per
level), and the value histograms from the observations through the code that maintains them at ingest, so no
rebuild is needed after upgrading.
"""
from __future__ import annotations

from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

revision = 'e7a4c2b9d1f0'
down_revision = 'd5e8b2c4f1a7'
branch_labels = None
depends_on = None

KEY = ('kpi', 'mode', 'dim', 'place', 'bucket', 'dimval', 'category')
OLD_KEY = ('kpi', 'mode', 'dim', 'dimval', 'bucket', 'place', 'category')
SUMS = ('num', 'den', 'n', 'vsum', 'vn')
LEVELS = (6, 9)


def _create(name: str, key: tuple[str, ...]) -> None:
    op.create_table(
        name,
        sa.Column('kpi', sa.String(length=48), nullable=False),
        sa.Column('mode', sa.String(length=8), nullable=False),
        sa.Column('dim', sa.String(length=8), nullable=False),
        sa.Column('place', sa.String(length=32), nullable=False),
        sa.Column('bucket', sa.Integer(), nullable=False),
        sa.Column('dimval', sa.String(length=48), nullable=False),
        sa.Column('category', sa.String(length=48), nullable=False),
        sa.Column('num', sa.Float(), nullable=False),
        sa.Column('den', sa.Float(), nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.Column('vsum', sa.BigInteger(), nullable=False),
        sa.Column('vn', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*key, name=op.f('pk_kpi_rollups')),
        sqlite_with_rowid=False,
    )


def _move_aside() -> None:
    op.rename_table('kpi_rollups', 'kpi_rollups_old')
    if op.get_bind().dialect.name == 'postgresql':   # constraint names are schema-wide there
        op.execute('ALTER TABLE kpi_rollups_old RENAME CONSTRAINT pk_kpi_rollups TO pk_kpi_rollups_old')


def upgrade() -> None:
    _move_aside()
    _create('kpi_rollups', KEY)
    cols = ', '.join((*KEY, *SUMS))
    sums = ', '.join(f'SUM({c})' for c in SUMS)
    op.execute(f"INSERT INTO kpi_rollups ({cols}) SELECT kpi, mode, dim, '*', bucket, dimval, category, {sums} "
               "FROM kpi_rollups_old GROUP BY kpi, mode, dim, dimval, bucket, category")
    for n in LEVELS:
        op.execute(f"INSERT INTO kpi_rollups ({cols}) SELECT kpi, mode, dim, '*' || substr(place, 1, {n}), "
                   f"bucket, dimval, category, {sums} FROM kpi_rollups_old WHERE length(place) >= {n} "
                   f"GROUP BY kpi, mode, dim, dimval, substr(place, 1, {n}), bucket, category")
    op.drop_table('kpi_rollups_old')
    _histograms()


def _histograms() -> None:
    from svc_metrics.kpis import rollup
    from svc_metrics.kpis.observations import Obs

    bind = op.get_bind()
    acc: dict = {}
    for kpi, at, place, category, value in bind.execute(sa.text(
            "SELECT kpi, at, place, category, value FROM kpi_observations WHERE mode = 'flow' AND value IS NOT NULL")):
        rollup.add_to_histogram(acc, Obs(kpi, _aware(at), place=place or "", category=category, value=float(value)))
    rows = [dict(zip(rollup.COLUMNS, r)) for r in rollup.nonzero(acc)]
    insert = sa.text(f"INSERT INTO kpi_rollups ({', '.join(rollup.COLUMNS)}) "
                     f"VALUES ({', '.join(':' + c for c in rollup.COLUMNS)})")
    for i in range(0, len(rows), 5000):
        bind.execute(insert, rows[i:i + 5000])


def downgrade() -> None:
    """Back to one row per exact place, recomputed from the observations as that revision kept them."""
    from svc_metrics.kpis import rollup

    _move_aside()
    op.drop_table('kpi_rollups_old')
    _create('kpi_rollups', OLD_KEY)
    bind = op.get_bind()
    acc: dict = {}

    def add(key: tuple, *v) -> None:
        cur = acc.setdefault(key, [0, 0, 0, 0, 0])
        for i, x in enumerate(v):
            cur[i] += x

    for kpi, mode, at, end_at, place, category, channel, groups, num, den, value in bind.execute(sa.text(
            "SELECT kpi, mode, at, end_at, place, category, channel, groups, num, den, value FROM kpi_observations")):
        cat = (category or '')[:48]
        for d, dv in rollup.dims(channel, groups or ''):
            if mode == 'flow':
                vs = 0 if value is None else round(value * rollup.MICRO)
                add((kpi, mode, d, dv, rollup.bucket_of(_aware(at)), place or '', cat), num, den, 1, vs,
                    0 if value is None else 1)
            else:
                add((kpi, mode, d, dv, rollup.bucket_of(_aware(at)), place or '', cat), num, den, 1, 0, 0)
                if end_at is not None:
                    add((kpi, mode, d, dv, rollup.bucket_of(_aware(end_at)), place or '', cat), -num, -den, -1, 0, 0)
    names = (*OLD_KEY, *SUMS)
    rows = [dict(zip(names, (*k, *v))) for k, v in acc.items() if any(v)]
    insert = sa.text(f"INSERT INTO kpi_rollups ({', '.join(names)}) VALUES ({', '.join(':' + c for c in names)})")
    for i in range(0, len(rows), 5000):
        bind.execute(insert, rows[i:i + 5000])


def _aware(at):
    if isinstance(at, str):   # SQLite: naive UTC text
        at = datetime.fromisoformat(at)
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at
