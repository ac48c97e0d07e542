"""svc_services' schema as its migrations build it: the indexes the models declare, no more (every submission
writes each index of service_requests, ADR 0011), and the partial ones serving the queries they are there for."""
from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, select, text

from common.auth import Principal
from common.writer_threads import blocking_url
from svc_services.base import Base
from svc_services.requests.models import ServiceRequest
from tests.conftest import migrate_database


def _index_differences(url: str) -> list:
    engine = create_engine(blocking_url(url))
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    return [d for d in diffs if d[0] in ("add_index", "remove_index")]


async def test_migrations_build_the_indexes_the_models_declare(db_url):
    await migrate_database("svc_services", db_url)
    assert await asyncio.to_thread(_index_differences, db_url) == []


def _sqlite_plan(url: str, stmt) -> str:
    engine = create_engine(blocking_url(url))
    try:
        with engine.connect() as conn:
            compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
            return " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    finally:
        engine.dispose()


async def test_partial_indexes_hold_only_overdue_and_assigned_requests_and_lists_use_them(db_url, backend):
    from svc_services.requests import service

    if backend != "sqlite":
        pytest.skip("the plans below are SQLite's; PostgreSQL's depend on its statistics")
    await migrate_database("svc_services", db_url)
    R = ServiceRequest
    seen = []

    class Capture:
        async def execute(self, stmt):
            seen.append(stmt)

            class Rows:
                def scalars(self):
                    return []
            return Rows()

    ops = Principal(member="portal", user="ops1", role="ops")
    await service.list_requests(Capture(), ops, mine=False, states=None, overdue=True, priority=None,
                                channel=None, item_code=None, grid=None, community=None, after=None, limit=20)
    assert "ix_service_requests_overdue" in await asyncio.to_thread(_sqlite_plan, db_url, seen[0])
    by_assignee = select(R.id).where(R.assignee_kind == "provider", R.assignee_id.in_(["p1", "p2"]))
    assert "ix_service_requests_assignee_id" in await asyncio.to_thread(_sqlite_plan, db_url, by_assignee)
    # the partial indexes hold no new request: only overdue and assigned ones
    engine = create_engine(blocking_url(db_url))
    try:
        with engine.connect() as conn:
            where = {r[0]: r[1] for r in conn.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'service_requests'"))}
    finally:
        engine.dispose()
    assert where["ix_service_requests_overdue"].endswith("WHERE overdue = 1")
    assert where["ix_service_requests_assignee_id"].endswith("WHERE assignee_id IS NOT NULL")
    assert not {"ix_service_requests_state", "ix_service_requests_channel",
                "ix_service_requests_priority"} & set(where)
