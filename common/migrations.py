"""Alembic per service: each service keeps its own history and its own version table.

`upgrade(package, url)` is what `onenet migrate` and the launcher call; `env.py` of every service delegates to
`run_env`. Migrations run on an async engine (asyncpg / aiosqlite) so no sync driver is needed.
"""
from __future__ import annotations

import asyncio
import functools
from importlib import import_module
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine

from common.db import create_engine, normalise_url


def version_table(package: str) -> str:
    return f"alembic_version_{package.removeprefix('svc_')}"


def alembic_config(package: str, url: str) -> Config:
    cfg = Config()
    pkg_dir = Path(import_module(package).__file__).parent
    cfg.set_main_option("script_location", str(pkg_dir / "migrations"))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    cfg.attributes["package"] = package
    return cfg


def upgrade(package: str, url: str, revision: str = "head") -> None:
    """Bring `url` to `revision`. Blocking; from async code use `await asyncio.to_thread(upgrade, ...)`."""
    command.upgrade(alembic_config(package, url), revision)


def make_revision(package: str, url: str, message: str) -> None:
    command.revision(alembic_config(package, url), message=message, autogenerate=True)


@functools.cache
def head_revisions(package: str) -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config(package, "sqlite://"))
    return frozenset(script.get_heads())


async def current_revisions(engine: AsyncEngine, package: str) -> set[str]:
    async with engine.connect() as conn:
        def _get(sync_conn):
            ctx = MigrationContext.configure(sync_conn, opts={"version_table": version_table(package)})
            return set(ctx.get_current_heads())
        return await conn.run_sync(_get)


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's migrations/env.py."""
    from alembic import context

    cfg = context.config
    package = cfg.attributes["package"]
    url = cfg.get_main_option("sqlalchemy.url")
    vt = version_table(package)

    def do_run(connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata, version_table=vt,
                          render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, version_table=vt, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    async def run_async() -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.run_sync(do_run)
                await conn.commit()
        finally:
            await engine.dispose()

    asyncio.run(run_async())


async def ping_and_check(engine: AsyncEngine, package: str) -> tuple[bool, str]:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        return False, f"database unreachable: {type(exc).__name__}"
    try:
        current = await current_revisions(engine, package)
    except Exception as exc:  # noqa: BLE001
        return False, f"cannot read migration state: {type(exc).__name__}"
    heads = head_revisions(package)
    if current != set(heads):
        return False, f"migrations not at head (db {sorted(current)}, code {sorted(heads)})"
    return True, "ok"


def import_metadata(package: str) -> MetaData:
    return import_module(f"{package}.models").Base.metadata
