"""The person-place feed (svc_residents → svc_matching's replica, ADR 0014): registration, a move and a merge write
a `person_place.*` outbox row holding only grid, community and the record's version; the relay delivers it to a
real svc_matching, whose time bank then credits the person and shows their account to the right staff only."""
from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest
from sqlalchemy import select

from common.outbox import OutboxRelay, TypeFilter
from common.outbox_senders import FeedSender
from tests.conftest import gateway_auth, start_service
from tests.svc_residents.conftest import GRID_A1, GRID_A2, GRID_B1, H, make_id
from tests.svc_residents.test_profile_feed import PERSONS, register

FEED_URL = "http://svc-matching/matching/v1/person_places"


async def place_rows(client, person_id=None):
    from svc_residents.base import OutboxEvent

    async with client.app.state.db.session() as s:
        stmt = select(OutboxEvent).where(OutboxEvent.type.startswith("person_place.")).order_by(OutboxEvent.id)
        if person_id:
            stmt = stmt.where(OutboxEvent.subject == person_id)
        return list((await s.execute(stmt)).scalars())


async def test_registration_move_and_merge_write_minimal_place_snapshots(seeded, as_):
    h = as_("staff1")
    p = await register(seeded, h, make_id("19450310", 7, sex="F"), phone="13912345678")   # household 3: 幸福二网格
    (row,) = await place_rows(seeded, p["id"])
    assert row.type == "person_place.changed" and row.community is None and row.grid is None
    assert row.data == {"grid_code": GRID_A2, "community_code": GRID_A2[:12], "version": 1}
    # an edit that leaves the place as it was: nothing
    r = await seeded.patch(f"{PERSONS}/{p['id']}", headers=h, json={"version": 1, "phone": "13900000009"})
    assert r.status_code == 200 and len(await place_rows(seeded, p["id"])) == 1
    # moved to 安康 (household 4): the new place, at the record's new version
    r = await seeded.patch(f"{PERSONS}/{p['id']}", headers=as_("ops1"), json={"version": 2, "household_id": H("4")})
    assert r.status_code == 200, r.text
    moved = (await place_rows(seeded, p["id"]))[-1]
    assert moved.data == {"grid_code": GRID_B1, "community_code": GRID_B1[:12], "version": r.json()["version"]}
    # merged away: the duplicate leaves the register, the survivor's place is unchanged
    survivor = (await register(seeded, h, make_id("19450310", 8, sex="F")))["id"]
    dup = (await register(seeded, h, make_id("19450310", 9, sex="F")))
    r = await seeded.post(f"{PERSONS}/{survivor}/merge", headers=h, json={"duplicate_id": dup["id"],
                                                                          "reason": "台账录错身份证号"})
    assert r.status_code == 200, r.text
    gone = (await place_rows(seeded, dup["id"]))[-1]
    assert gone.type == "person_place.removed" and gone.data == {"version": 2}
    assert len(await place_rows(seeded, survivor)) == 1


async def test_a_confirmed_registration_moves_the_place_too(seeded, as_):
    """A registration in 安康 of a 幸福 resident's ID number, confirmed by 幸福: the one record moves, and so does
    the place svc_matching holds for it."""
    from deploy.demo import person_id

    body = {"household_id": H("4"), "name": "张伟", "id_number": "110105198003120112", "residency_type": "resident"}
    r = await seeded.post(PERSONS, json=body, headers=as_("staff2"))
    assert r.status_code == 202, r.text
    r = await seeded.post(f"/residents/v1/registrations/{r.json()['id']}/confirm", json={}, headers=as_("staff1"))
    assert r.status_code == 200, r.text
    moved = (await place_rows(seeded, person_id("P1")))[-1]
    version = (await seeded.get(f"{PERSONS}/{person_id('P1')}", headers=as_("staff2"))).json()["version"]
    assert moved.data == {"grid_code": GRID_B1, "community_code": GRID_B1[:12], "version": version}


async def test_import_writes_a_place_per_person(seeded, tmp_path):
    from svc_residents.importer import import_file
    from tests.svc_residents.test_import import good_rows, write_csv

    before = len(await place_rows(seeded))
    r = await import_file(seeded.app.state.db, seeded.app.state.protection, write_csv(tmp_path / "l.csv",
                                                                                      good_rows()))
    rows = (await place_rows(seeded))[before:]
    assert r.imported == len(rows) == 3
    assert all(set(row.data) == {"grid_code", "community_code", "version"} and row.data["version"] == 1
               and row.data["grid_code"].startswith(row.data["community_code"]) for row in rows)


def test_the_feed_rows_never_go_to_svc_metrics(monkeypatch):
    """svc_metrics refuses a batch holding an event type it does not know: the place feed is a declared feed, so
    the svc_metrics relay leaves its rows out (common/app.py)."""
    import svc_residents.app as residents_app

    seen = {}
    monkeypatch.setattr(residents_app, "create_service_app", lambda **kw: seen.update(kw))
    residents_app.create_app()
    assert "person_place." in seen["feeds"] and "requester_profile." in seen["feeds"]


@pytest.fixture
async def matching(tmp_path, jwks):
    async with AsyncExitStack() as stack:
        yield await start_service(stack, "svc_matching", f"sqlite+aiosqlite:///{tmp_path}/matching.db", jwks,
                                  offer_sweeper_enabled=False)


async def test_feed_relay_delivers_to_svc_matching_whose_time_bank_then_knows_the_person(seeded, as_, auth,
                                                                                        matching):
    from svc_residents.base import OutboxEvent

    token = auth(role="system", user="svc_residents", member="svc_residents")["Authorization"].split()[1]

    async def provider():
        return token

    sender = FeedSender(FEED_URL, provider, transport=httpx.ASGITransport(app=matching.app),
                        auth=gateway_auth())  # signed with the subscriber's key, as the app's relay is
    feed = OutboxRelay(seeded.app.state.db, OutboxEvent, source="svc_residents", send=sender,
                       clock=seeded.app.state.clock, types=TypeFilter(include=("person_place.",)))
    p = await register(seeded, as_("staff1"), make_id("19520909", 3))                    # 幸福二网格
    credit = {"posting_id": "council-1", "person_id": p["id"], "community": GRID_A1[:12], "unit": "point",
              "amount": 5, "activity": "council"}
    xf = auth(role="community_staff", scopes=[f"community:{GRID_A1[:12]}"])
    r = await matching.post("/matching/v1/timebank/credits", headers=xf, json=credit)
    assert r.status_code == 422, r.text                      # not delivered yet: svc_matching does not know them
    while await feed.run_once():
        pass
    assert (await feed.measure())[0] == 0
    r = await matching.post("/matching/v1/timebank/credits", headers=xf, json=credit)
    assert r.status_code == 201, r.text
    acc = next(e["account_id"] for e in r.json()["entries"] if e["amount"] > 0)
    ak = auth(role="community_staff", scopes=[f"community:{GRID_B1[:12]}"])
    assert (await matching.get(f"/matching/v1/timebank/accounts/{acc}", headers=ak)).status_code == 404
    # moved to 安康: now 安康's staff see the account and 幸福's no longer do
    r = await seeded.patch(f"{PERSONS}/{p['id']}", headers=as_("ops1"),
                           json={"version": p["version"], "household_id": H("4")})
    assert r.status_code == 200, r.text
    while await feed.run_once():
        pass
    assert (await matching.get(f"/matching/v1/timebank/accounts/{acc}", headers=ak)).status_code == 200
    assert (await matching.get(f"/matching/v1/timebank/accounts/{acc}", headers=xf)).status_code == 404
    await sender.aclose()
