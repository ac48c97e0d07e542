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


def register(app: typer.Typer) -> None:
    app.add_typer(residents, name="residents")
