from __future__ import annotations

from sqlalchemy import func, select

from tests.conftest import migrate_database


async def test_seed_demo_is_idempotent(db_url):
    from common.db import Database
    from deploy.demo import ORGANIZATIONS, VOLUNTEERS, demo_id
    from svc_matching.models import Organization, Service, Volunteer
    from svc_matching.seed import seed_demo

    await migrate_database("svc_matching", db_url)
    db = Database(db_url)
    try:
        await seed_demo(db)
        await seed_demo(db)
        async with db.session() as s:
            counts = [(await s.execute(select(func.count()).select_from(m))).scalar()
                      for m in (Organization, Service, Volunteer)]
            assert counts == [len(ORGANIZATIONS), len(ORGANIZATIONS), len(VOLUNTEERS)]
            assert await s.get(Organization, demo_id("organization", "O1")) is not None
    finally:
        await db.dispose()
