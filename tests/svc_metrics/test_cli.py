"""`onenet metrics rebuild`: recomputes the observations and the month rollup from the event store, giving the
same rows and numbers as the incremental path."""
from __future__ import annotations

import asyncio
from datetime import timedelta

from svc_metrics.kpis import rollup
from tests.svc_metrics.conftest import T0, request_flow
from tests.svc_metrics.test_rollup import events_over_months, rollup_rows, tables

H = timedelta(hours=1)


async def test_onenet_metrics_rebuild_command_gives_the_same_numbers(client, ops, post, monkeypatch):
    from typer.testing import CliRunner

    from deploy.cli import app, register_service_commands

    events = events_over_months(seed=8)
    for i in range(0, len(events), 31):
        await post(events[i:i + 31])
    before, rows = await tables(client, ops), await rollup_rows(client.app.state.db)
    # Wreck the rollup, so the command has to recompute it.
    async with client.app.state.db.session() as session, session.begin():
        await rollup.rebuild(session)
    assert await rollup_rows(client.app.state.db) == set()
    monkeypatch.setenv("ONENET_SVC_METRICS_DATABASE_URL", client.app.state.settings.database_url)
    if not any(g.name == "metrics" for g in app.registered_groups):
        register_service_commands()
    result = await asyncio.to_thread(CliRunner().invoke, app, ["metrics", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "Rebuilt" in result.output
    assert await rollup_rows(client.app.state.db) == rows
    assert await tables(client, ops) == before


async def test_rebuild_database_helper_on_its_own_engine(client, post):
    from svc_metrics.cli import rebuild_database

    await post(request_flow("x", T0, steps={"accepted": H, "resolved": 2 * H}))
    r = await rebuild_database(client.app.state.settings.database_url)
    assert r["entities"] == 1 and r["observations"] >= 3
