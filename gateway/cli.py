"""`onenet audit …` commands; deploy.cli calls `register(app)`."""
from __future__ import annotations

import asyncio

import typer

audit = typer.Typer(help="交换日志 message log (全程留痕)", no_args_is_help=True)


async def _verify(url: str):
    from common.db import Database
    from gateway.exchange.audit import verify_chain
    from gateway.exchange.models import MessageLog

    db = Database(url)
    try:
        return await verify_chain(db, MessageLog)
    finally:
        await db.dispose()


@audit.command("verify")
def verify(database_url: str = typer.Option(None, "--database-url",
                                            help="网关数据库；默认 ONENET_GATEWAY_DATABASE_URL 或本地 var/gateway.db")
           ) -> None:
    """逐条核对交换日志哈希链，指出第一条被篡改的记录。Walk the hash chain; name the first tampered record."""
    if not database_url:
        from deploy.cli import database_url_for

        database_url = database_url_for("gateway")
    r = asyncio.run(_verify(database_url))
    if r.ok:
        typer.echo(f"哈希链完整 chain intact: {r.count} 条记录 records, 末条哈希 tail hash {r.tail_hash}")
        return
    typer.echo(f"哈希链被破坏 chain broken at record seq={r.first_bad_seq} id={r.first_bad_id}: {r.reason} "
               f"（此前 {r.count} 条完好 {r.count} records before it are intact）", err=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit, name="audit")
