from __future__ import annotations

from sqlalchemy import func, select

from deploy.demo import CATALOGUE_ITEMS, demo_id, person_id
from svc_services.seed import seed_demo
from tests.svc_services.conftest import OPS


async def test_seed_is_idempotent_and_readable(client, auth):
    from svc_services.models import CatalogueItemVersion, ServiceRequest, TimelineEntry
    db = client.app.state.db
    await seed_demo(db)
    await seed_demo(db)
    async with db.session() as s:
        counts = [(await s.execute(select(func.count()).select_from(m))).scalar()
                  for m in (CatalogueItemVersion, ServiceRequest, TimelineEntry)]
    assert counts == [len(CATALOGUE_ITEMS), 3, 6]
    r = await client.get("/services/v1/catalogue/items", headers=auth(**OPS))
    assert {i["code"] for i in r.json()["items"]} == {i["code"] for i in CATALOGUE_ITEMS}
    r = await client.get(f"/services/v1/requests/{demo_id('request', 'R2')}",
                         headers=auth(role="resident", scopes=[f"person:{person_id('P3')}"]))
    assert r.status_code == 200 and r.json()["proxy_user"] == "kiosk/proxy1"
    r = await client.get(f"/services/v1/requests/{demo_id('request', 'R1')}", headers=auth(**OPS))
    assert r.json()["state"] == "accepted" and r.json()["response_due_at"]
