"""`onenet residents …` commands (registered by deploy.cli through `register(app)`)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import typer

residents = typer.Typer(help="居民档案 svc_residents", no_args_is_help=True)


@residents.command("import")
def import_ledger(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV 或 XLSX 台账"),
                  dry_run: bool = typer.Option(False, "--dry-run", help="只校验，不写入"),
                  batch_size: int = typer.Option(1000, min=1, max=10000, help="每批行数（整批成功或整批不写入）")) -> None:
    """导入纸质台账：校验每一行，错误写入 <文件>.errors.csv；可重复执行（已登记的身份证号跳过）。"""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from common.db import Database
    from common.migrations import upgrade
    from deploy.cli import database_url_for
    from svc_residents import protection
    from svc_residents.importer import import_file, read_rows
    from svc_residents.settings import ResidentsSettings

    url = database_url_for("svc_residents")
    try:
        total = sum(1 for _ in read_rows(file))
    except ValueError as exc:
        typer.echo(f"无法读取 {file}：{exc}", err=True)
        raise typer.Exit(2) from None
    upgrade("svc_residents", url)
    keys = protection.load(ResidentsSettings().field_keys_file)

    async def run():
        db = Database(url)
        try:
            with Progress(TextColumn("导入中"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
                task = bar.add_task("import", total=total)
                return await import_file(db, keys, file, dry_run=dry_run, batch_size=batch_size,
                                         on_progress=lambda n: bar.advance(task, n))
        finally:
            await db.dispose()

    r = asyncio.run(run())
    verb = "可导入（试运行，未写入）" if dry_run else "已导入"
    typer.echo(f"共 {r.rows} 行：{verb} {r.imported} 人，新建 {r.households_created} 户，"
               f"已存在跳过 {r.skipped_existing} 人；错误 {len(r.errors)} 处，"
               f"{r.rejected_batches} 批因错误未写入（其中 {r.not_written} 行本身无误）。")
    if r.errors:
        typer.echo(f"错误明细：{r.report}")
        raise typer.Exit(1)


@residents.command("reencrypt")
def reencrypt(batch: int = typer.Option(500, "--batch", min=1, max=10000,
                                        help="每批人数（每批一个事务；中断后重跑从剩余处继续）")) -> None:
    """用密钥环中当前启用的（最新）密钥重新加密全部加密字段（身份证号、手机号）；盲索引不变，可重复执行。"""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from common.db import Database
    from common.migrations import upgrade
    from deploy.cli import database_url_for
    from svc_residents import protection
    from svc_residents.rotation import reencrypt as run_reencrypt, remaining
    from svc_residents.settings import ResidentsSettings

    url = database_url_for("svc_residents")
    upgrade("svc_residents", url)
    keys = protection.load(ResidentsSettings().field_keys_file)

    async def run():
        db = Database(url)
        try:
            todo = await remaining(db, keys)
            with Progress(TextColumn("重新加密"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
                task = bar.add_task("reencrypt", total=None)
                r = await run_reencrypt(db, keys, batch_size=batch, on_batch=lambda n: bar.advance(task, n))
            return todo, r, await remaining(db, keys)
        finally:
            await db.dispose()

    todo, r, left = asyncio.run(run())
    typer.echo(f"当前密钥 {r.active_key_id}：旧密钥加密的字段 {todo} 个，已重新加密 {r.reencrypted} 个"
               f"（{r.batches} 批，检查 {r.scanned} 人）；剩余 {left} 个。")
    if r.failures:
        for pid, name, reason in r.failures[:20]:
            typer.echo(f"无法解密 person {pid} {name}: {reason}", err=True)
        typer.echo(f"{len(r.failures)} 个字段无法解密（密钥环缺少其密钥或数据被篡改），未改动；旧密钥暂不可删除。",
                   err=True)
        raise typer.Exit(1)
    if left == 0:
        typer.echo("全部字段已使用当前密钥，可以从密钥环中删除旧密钥。")


def _feed_backfill(run) -> int:
    """A feed's backfill on svc_residents' migrated database: `run(db)` writes the outbox rows, the count back."""
    from common.db import Database
    from common.migrations import upgrade
    from deploy.cli import database_url_for

    url = database_url_for("svc_residents")
    upgrade("svc_residents", url)

    async def go() -> int:
        db = Database(url)
        try:
            return await run(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


@residents.command("feed-profiles")
def feed_profiles(resend: bool = typer.Option(False, "--resend", help="为所有居民重新发送（重建副本时用）"),
                  batch: int = typer.Option(500, "--batch", min=1, max=10000, help="每批人数（每批一个事务）")) -> None:
    """把尚未发送过的居民画像（出生日期、特殊群体标签）写入发件箱，由 svc_residents 的订阅投递送往 svc_services。"""
    from svc_residents.persons.profile_feed import backfill

    n = _feed_backfill(lambda db: backfill(db, batch_size=batch, resend=resend))
    typer.echo(f"已写入 {n} 条诉求人画像更新，svc_residents 运行时投递至 svc_services。")


@residents.command("feed-places")
def feed_places(batch: int = typer.Option(500, "--batch", min=1, max=10000, help="每批人数（每批一个事务）")) -> None:
    """把每位居民的所在网格与社区写入发件箱，由 svc_residents 的订阅投递送往 svc_matching（升级后或重建副本时用；
    可重复运行）。"""
    from common.clock import Clock
    from svc_residents.persons.place_feed import backfill

    n = _feed_backfill(lambda db: backfill(db, Clock().now(), batch_size=batch))
    typer.echo(f"已写入 {n} 条居民所在地更新，svc_residents 运行时投递至 svc_matching。")


@residents.command("feed-electors")
def feed_electors(resend: bool = typer.Option(False, "--resend", help="为所有居民重新发送（重建副本时用）"),
                  batch: int = typer.Option(500, "--batch", min=1, max=10000, help="每批人数（每批一个事务）")) -> None:
    """把尚未发送过的居民议事选民信息（楼栋、户、是否户主、出生日期）写入发件箱，由 svc_residents 的订阅投递送往
    svc_services（升级后或重建副本时用；可重复运行）。"""
    from svc_residents.persons.elector_feed import backfill

    n = _feed_backfill(lambda db: backfill(db, batch_size=batch, resend=resend))
    typer.echo(f"已写入 {n} 条议事选民更新，svc_residents 运行时投递至 svc_services。")


def register(app: typer.Typer) -> None:
    app.add_typer(residents, name="residents")
