"""Shared by the outbox tests (test_outbox.py, test_outbox_lane.py, test_outbox_wake.py)."""
from __future__ import annotations

import pytest

from common.db import Database
from tests.conftest import migrate_database


@pytest.fixture
async def db(db_url):
    """svc_residents' database at head (its outbox table), on each backend; a module's own `db` takes its place."""
    await migrate_database("svc_residents", db_url)
    database = Database(db_url)
    yield database
    await database.dispose()
