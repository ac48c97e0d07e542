"""`onenet deliberation verify TOPIC_ID`: the tally of a closed vote against its ballots; `onenet attachments
rewrap-keys`: material files' data keys re-wrapped under the active field key; deploy.cli calls `register(app)`."""
from __future__ import annotations

import asyncio

import typer

deliberation = typer.Typer(help="居民议事 resident deliberation", no_args_is_help=True)
attachments = typer.Typer(help="诉求照片与材料文件 request photos and material files", no_args_is_help=True)


async def _verify(url: str, topic_id: str):
    from sqlalchemy import select

    from common.db import Database
    from svc_services.deliberation.models import Vote
    from svc_services.deliberation.votes import verify_tally

    db = Database(url)
    try:
        async with db.session() as session:
            vote = (await session.execute(select(Vote).where(Vote.topic_id == topic_id))).scalar_one_or_none()
            return None if vote is None else await verify_tally(session, vote)
    finally:
        await db.dispose()


@deliberation.command("verify")
def verify(topic_id: str, database_url: str = typer.Option(None, "--database-url",
                                                           help="svc_services 数据库；默认本地 var/svc_services.db")) -> None:
    """重算每张选票的哈希与结果哈希链，指出被改动的选票。Recompute every ballot's hash and the tally chain."""
    if not database_url:
        from deploy.cli import database_url_for

        database_url = database_url_for("svc_services")
    r = asyncio.run(_verify(database_url, topic_id))
    if r is None:
        typer.echo("该议题没有表决 no vote for this topic", err=True)
        raise typer.Exit(2)
    if r.tally_hash is None:
        typer.echo(f"表决尚未计票 the vote is not counted yet: {r.reason}", err=True)
        raise typer.Exit(2)
    if r.ok:
        typer.echo(f"计票完整 tally intact: {r.ballots} 张选票 ballots, 结果哈希 tally hash {r.tally_hash}")
        return
    typer.echo(f"计票被破坏 tally broken: {r.reason}", err=True)
    raise typer.Exit(1)


@attachments.command("rewrap-keys")
def rewrap_keys(batch: int = typer.Option(500, "--batch", min=1, max=10000, help="每批行数（每批一个事务）"),
                database_url: str = typer.Option(None, "--database-url",
                                                 help="svc_services 数据库；默认本地 var/svc_services.db")) -> None:
    """用当前启用的字段密钥重新包裹材料文件的数据密钥（文件本身不重写），之后可删除旧密钥；可重复执行。"""
    from common.crypto import FieldProtection
    from common.db import Database
    from svc_services.attachments.rotation import remaining, rewrap_keys as run
    from svc_services.settings import ServicesSettings

    if not database_url:
        from deploy.cli import database_url_for

        database_url = database_url_for("svc_services")
    keys = FieldProtection.from_file(ServicesSettings().field_keys_file, create=False)

    async def go():
        db = Database(database_url)
        try:
            return await run(db, keys, batch_size=batch), await remaining(db, keys)
        finally:
            await db.dispose()

    r, left = asyncio.run(go())
    typer.echo(f"当前密钥 {r.active_key_id}：重新包裹 {r.rewrapped} 个数据密钥（检查 {r.scanned} 个）；剩余 {left} 个。")
    for aid, reason in r.failures[:20]:
        typer.echo(f"无法解开 attachment {aid}: {reason}", err=True)
    if r.failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(deliberation, name="deliberation")
    app.add_typer(attachments, name="attachments")
