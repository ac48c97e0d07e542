"""`onenet metrics …` commands (registered by deploy.cli through `register(app)`)."""
from __future__ import annotations

import asyncio
import time

import typer

metrics = typer.Typer(help="考核评估 svc_metrics", no_args_is_help=True)


async def rebuild_database(url: str) -> dict[str, int]:
    """Recompute the observations and the month rollup of the database at `url` from its event store, in one
    transaction (readers keep seeing the old numbers until it commits)."""
    from common.db import Database
    from svc_metrics.events.service import rebuild

    db = Database(url)
    try:
        async with db.session() as session, session.begin():
            return await rebuild(session)
    finally:
        await db.dispose()


@metrics.command("rebuild")
def rebuild_cmd(migrate: bool = typer.Option(True, help="先把数据库迁移到最新版本 Bring the schema to head first")) -> None:
    """从事件库重建指标汇总（观测值与月度汇总），结果与增量维护一致。Rebuild the rollups from the event store."""
    from common.migrations import upgrade
    from deploy.cli import database_url_for

    url = database_url_for("svc_metrics")
    if migrate:
        upgrade("svc_metrics", url)
    t0 = time.perf_counter()
    r = asyncio.run(rebuild_database(url))
    typer.echo(f"已重建：{r['entities']} 个对象，{r['observations']} 条观测值，用时 {time.perf_counter() - t0:.1f} 秒。"
               f" Rebuilt {r['entities']} entities, {r['observations']} observations.")


def register(app: typer.Typer) -> None:
    app.add_typer(metrics, name="metrics")
