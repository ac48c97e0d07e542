"""Search (partial name, exact ID number and phone via blind index, grid, tag, age range, cursor pages) and the
idempotent demo seed."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select

from tests.svc_residents.conftest import GRID_A1, P

URL = "/residents/v1/persons"


async def _ids(client, headers, **q):
    r = await client.post(f"{URL}/search", json=q, headers=headers)
    assert r.status_code == 200, r.text
    return {p["id"] for p in r.json()["items"]}


async def test_search_filters(seeded, as_):
    seeded.app.state.clock.set(datetime(2026, 11, 23, 4, tzinfo=timezone.utc))  # ages below are as of this day
    h = as_("street1")
    assert await _ids(seeded, h, name="王") == {P("P3")}
    assert await _ids(seeded, h, name="%") == set()  # wildcards are literal
    assert await _ids(seeded, h, id_number="110105195209090314") == {P("P4")}
    assert await _ids(seeded, h, id_number="110105195209090314", grid_code=GRID_A1) == set()
    assert await _ids(seeded, h, phone="+86 138-0001-0007") == {P("P7")}
    assert await _ids(seeded, h, grid_code=GRID_A1) == {P("P1"), P("P2"), P("P3")}
    assert await _ids(seeded, h, community_code="110105001002") == {P(f"P{i}") for i in range(7, 13)}
    assert await _ids(seeded, h, tag="elderly") == {P("P3"), P("P4"), P("P7"), P("P10")}
    # ages on 2026-11-23 (Asia/Shanghai): P3 b.1938 → 88, P7 b.1947 → 79, P4 b.1952 → 74, P10 b.1960 → 66
    assert await _ids(seeded, h, age_min=80) == {P("P3")}
    assert await _ids(seeded, h, age_min=60, age_max=79) == {P("P4"), P("P7"), P("P10")}
    assert await _ids(seeded, h, age_max=3) == {P("P6")}  # b. 2023-06-15: 3
    assert await _ids(seeded, h, tag="elderly", age_max=70, name="吴") == {P("P10")}
    # ages are counted on the app's clock: on P6's fourth birthday (Asia/Shanghai) she is no longer 3
    seeded.app.state.clock.set(datetime(2027, 6, 14, 16, tzinfo=timezone.utc))  # 2027-06-15 00:00 in Beijing
    assert await _ids(seeded, h, age_max=3) == set()
    assert await _ids(seeded, h, age_min=4, age_max=4) == {P("P6")}
    seeded.app.state.clock.set(datetime(2026, 11, 23, 4, tzinfo=timezone.utc))
    # GET carries the non-sensitive filters only
    r = await seeded.get(URL, params={"tag": "very_old", "age_min": 75}, headers=h)
    assert {p["id"] for p in r.json()["items"]} == {P("P3"), P("P7")}
    r = await seeded.get(URL, params={"id_number": "110105195209090314"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "id_number"  # never a URL, never ignored
    # the scope always applies on top of the filters
    assert await _ids(seeded, as_("staff2"), id_number="110105195209090314") == set()
    assert await _ids(seeded, as_("resident1"), tag="elderly") == set()


async def test_search_bad_input(seeded, as_):
    h = as_("staff1")
    for body, field in (({"id_number": "110105195209090315"}, "id_number"), ({"phone": "1380001"}, "phone"),
                        ({"age_min": 70, "age_max": 60}, "age_max"), ({"tag": "vip"}, "tag"),
                        ({"grid_code": "1101"}, "grid_code"), ({"limit": 500}, "limit"),
                        ({"nickname": "x"}, "nickname"), ({"cursor": "!!!"}, "cursor")):
        r = await seeded.post(f"{URL}/search", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field


async def test_cursor_pagination(seeded, as_):
    h = as_("ops1")
    seen, cursor, pages = [], None, 0
    while True:
        body = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        r = await seeded.post(f"{URL}/search", json=body, headers=h)
        page = r.json()
        seen += [p["id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 12 and seen == sorted(seen)
    r = await seeded.get(URL, params={"limit": 10}, headers=h)
    r2 = await seeded.get(URL, params={"limit": 10, "cursor": r.json()["next_cursor"]}, headers=h)
    assert len(r2.json()["items"]) == 2 and r2.json()["next_cursor"] is None
    r = await seeded.get("/residents/v1/households", params={"limit": 4}, headers=h)
    r2 = await seeded.get("/residents/v1/households", params={"limit": 4, "cursor": r.json()["next_cursor"]},
                          headers=h)
    assert len({x["id"] for x in r.json()["items"] + r2.json()["items"]}) == 6


async def test_seed_is_idempotent(seeded):
    from svc_residents.models import GridWorker, Household, OutboxEvent, Person, PersonTag, Place
    from svc_residents.seed import seed_demo

    async def counts():
        async with seeded.app.state.db.session() as s:
            return [(await s.execute(select(func.count()).select_from(m))).scalar()
                    for m in (Place, GridWorker, Household, Person, PersonTag, OutboxEvent)]

    before = await counts()
    assert before[:5] == [16, 4, 6, 12, 15]
    await seed_demo(seeded.app.state.db, seeded.app.state.protection)
    assert await counts() == before
