"""Seed the demo district into every service's database on the platform's first start."""
from __future__ import annotations

import asyncio
import inspect
from importlib import import_module
from typing import TYPE_CHECKING

from common.db import Database
from deploy.demo import DEMO_PASSWORD, DEMO_USERS  # noqa: F401 - re-exported for the launcher banner
from deploy.services import SERVICES

if TYPE_CHECKING:
    from deploy.launcher import Launcher


async def _ensure_members(launcher: "Launcher", creds: dict[str, str]) -> None:
    from gateway.seed import ensure_service_members

    db = Database(launcher.database_url("gateway"))
    try:
        await ensure_service_members(db, creds)
    finally:
        await db.dispose()


def ensure_platform(launcher: "Launcher", creds: dict[str, str]) -> None:
    asyncio.run(_ensure_members(launcher, creds))


async def _seed(launcher: "Launcher") -> None:
    from gateway.seed import seed_demo as seed_gateway

    db = Database(launcher.database_url("gateway"))
    try:
        await seed_gateway(db)
    finally:
        await db.dispose()
    for spec in SERVICES:
        module = import_module(f"{spec.name}.seed")
        db = Database(launcher.database_url(spec.name))
        try:
            params = inspect.signature(module.seed_demo).parameters
            if "protection" in params:
                from common.crypto import FieldProtection

                protection = FieldProtection.from_file(launcher.var / "keys" / "fields.json", create=True)
                await module.seed_demo(db, protection)
            else:
                await module.seed_demo(db)
        finally:
            await db.dispose()


def seed_all(launcher: "Launcher") -> None:
    asyncio.run(_seed(launcher))
