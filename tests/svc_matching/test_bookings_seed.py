"""The demo seed's bookable room and activity (the README tour books the room): seeded once however often the seed
runs, and bookable by a demo resident of 幸福 at the next free slot, as the tour does."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select

from common.clock import FrozenClock
from deploy.demo import person_id
from svc_matching.activities.models import Activity
from svc_matching.bookings.models import BookableResource
from svc_matching.seed import ACTIVITY, COUNTER, ROOM, seed_demo


async def test_seeded_room_is_booked_as_the_tour_books_it(service_client, auth):
    client = await service_client("svc_matching", offer_sweeper_enabled=False)
    client.app.state.clock = FrozenClock(datetime(2026, 12, 5, 10, 30, tzinfo=timezone.utc))  # Saturday 18:30
    for _ in range(2):
        await seed_demo(client.app.state.db, clock=client.app.state.clock)
    async with client.app.state.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(BookableResource))).scalar_one() == 2
        assert (await s.execute(select(func.count()).select_from(Activity))).scalar_one() == 1
    me = auth(role="resident", scopes=[f"person:{person_id('P1')}"], user="resident1")
    rooms = (await client.get("/matching/v1/bookable_resources", params={"kind": "activity_room"},
                              headers=me)).json()["items"]
    assert [r["id"] for r in rooms] == [ROOM]
    counters = (await client.get("/matching/v1/bookable_resources", params={"item_code": "ZW-SB-001"},
                                 headers=me)).json()["items"]
    assert [r["id"] for r in counters] == [COUNTER]               # 服务预约 for the demo's 社保 item
    slots = (await client.get(f"/matching/v1/bookable_resources/{ROOM}/slots",
                              params={"days": 7, "available": "true"}, headers=me)).json()
    # Saturday's weekend hours are over at 18:30; the first free slot is Sunday 09:00 Beijing
    assert slots[0]["starts_at"] == "2026-12-06T01:00:00Z" and slots[0]["free"] == 1
    r = await client.post("/matching/v1/bookings", headers={**me, "Idempotency-Key": f"tour-room-{slots[0]['starts_at']}"},
                          json={"resource_id": ROOM, "starts_at": slots[0]["starts_at"], "purpose": "合唱排练"})
    assert r.status_code == 201 and r.json()["state"] == "confirmed", r.text
    again = (await client.get(f"/matching/v1/bookable_resources/{ROOM}/slots",
                              params={"days": 7, "available": "true"}, headers=me)).json()
    assert again[0]["starts_at"] == "2026-12-06T02:00:00Z"
    activity = (await client.get(f"/matching/v1/activities/{ACTIVITY}", headers=me)).json()
    assert activity["title"] == "老年人智能手机课堂" and activity["venue_resource_id"] == ROOM
