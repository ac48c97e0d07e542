"""The elector feed (svc_residents → svc_services' deliberation electorate, ADR 0018): a registration, a move, a
household's new building or head, a merge and an import write `elector.*` outbox rows holding only building,
household, head flag, birth date and a per-person version; the relay delivers them to a real svc_services, whose
votes then follow where people live (a move out of scope, a merged record: no longer eligible)."""
from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from common.outbox import OutboxRelay, TypeFilter
from common.outbox_senders import FeedSender
from tests.conftest import gateway_auth, start_service
from tests.svc_residents.conftest import GRID_A2, H, P, make_id
from tests.svc_residents.test_profile_feed import PERSONS, register

FEED_URL = "http://svc-services/services/v1/deliberation/electors"
HOUSEHOLDS = "/residents/v1/households"
B1, B3 = "110105001001001001", "110105001001002001"       # households 1 (P1 heads) and 3 (P4 heads)


async def elector_rows(client, person_id=None):
    from svc_residents.base import OutboxEvent

    async with client.app.state.db.session() as s:
        stmt = select(OutboxEvent).where(OutboxEvent.type.startswith("elector.")).order_by(OutboxEvent.id)
        if person_id:
            stmt = stmt.where(OutboxEvent.subject == person_id)
        return list((await s.execute(stmt)).scalars())


async def household(client, h, key):
    r = await client.get(f"{HOUSEHOLDS}/{H(key)}", headers=h)
    assert r.status_code == 200, r.text
    return r.json()


async def test_registration_move_head_building_and_merge_write_minimal_snapshots(seeded, as_):
    h = as_("staff1")
    p = await register(seeded, h, make_id("19450310", 7, sex="F"))                       # household 3, not its head
    (row,) = await elector_rows(seeded, p["id"])
    assert row.type == "elector.changed" and row.community is None and row.grid is None
    assert row.data == {"building_code": B3, "household_id": H("3"), "household_head": False,
                        "birth_date": "1945-03-10", "version": 1}
    # an edit that leaves residency as it was (a phone): nothing
    r = await seeded.patch(f"{PERSONS}/{p['id']}", headers=h, json={"version": 1, "phone": "13900000009"})
    assert r.status_code == 200 and len(await elector_rows(seeded, p["id"])) == 1
    # made the head of household 3: the new head gains the flag, the old head (P4) loses it; nobody else moves
    hh = await household(seeded, h, "3")
    before = len(await elector_rows(seeded))
    r = await seeded.patch(f"{HOUSEHOLDS}/{H('3')}", headers=h, json={"version": hh["version"],
                                                                       "head_person_id": p["id"]})
    assert r.status_code == 200, r.text
    head, old = (await elector_rows(seeded, p["id"]))[-1], (await elector_rows(seeded, P("P4")))[-1]
    assert head.data["household_head"] is True and head.data["version"] == 2
    assert old.data["household_head"] is False and len(await elector_rows(seeded)) == before + 2
    # the household gets another building in its grid: every member's scope follows
    members = {m["id"] for m in (await household(seeded, h, "3"))["members"]}
    other = GRID_A2 + "002"
    r = await seeded.patch(f"{HOUSEHOLDS}/{H('3')}", headers=h,
                           json={"version": r.json()["version"], "building_code": other})
    if r.status_code == 422:  # the demo grid has one building: the household's building is then unchanged
        pytest.skip(r.text)
    assert r.status_code == 200, r.text
    rows = await elector_rows(seeded)
    assert {x.subject for x in rows[-len(members):]} == members
    assert all(x.data["building_code"] == other for x in rows[-len(members):])


async def test_a_move_out_and_a_merge(seeded, as_):
    h = as_("staff1")
    p = await register(seeded, h, make_id("19600101", 5))
    r = await seeded.patch(f"{PERSONS}/{p['id']}", headers=as_("ops1"), json={"version": 1, "household_id": H("4")})
    assert r.status_code == 200, r.text
    moved = (await elector_rows(seeded, p["id"]))[-1]
    assert moved.data["building_code"] == "110105001002001001" and moved.data["household_id"] == H("4")
    assert moved.data["version"] == 2
    survivor = (await register(seeded, h, make_id("19450310", 8, sex="F")))["id"]
    dup = (await register(seeded, h, make_id("19450310", 9, sex="F")))
    r = await seeded.post(f"{PERSONS}/{survivor}/merge", headers=h, json={"duplicate_id": dup["id"],
                                                                          "reason": "台账录错身份证号"})
    assert r.status_code == 200, r.text
    gone = (await elector_rows(seeded, dup["id"]))[-1]
    assert gone.type == "elector.removed" and gone.data == {"version": 2}
    assert len(await elector_rows(seeded, survivor)) == 1


async def test_import_writes_an_elector_per_person_with_its_head(seeded, tmp_path):
    from svc_residents.importer import import_file
    from tests.svc_residents.test_import import good_rows, write_csv

    before = len(await elector_rows(seeded))
    r = await import_file(seeded.app.state.db, seeded.app.state.protection, write_csv(tmp_path / "l.csv",
                                                                                      good_rows()))
    rows = (await elector_rows(seeded))[before:]
    assert r.imported == len(rows) == 3
    assert all(set(x.data) == {"building_code", "household_id", "household_head", "birth_date", "version"}
               and x.data["version"] == 1 for x in rows)


async def test_backfill_sends_those_never_sent_then_nothing(seeded):
    """Persons registered before the feed existed (no digest) are sent once; `resend` sends everyone again."""
    from svc_residents.persons.elector_feed import backfill
    from svc_residents.persons.models import Person

    db, clock = seeded.app.state.db, seeded.app.state.clock
    async with db.session() as s, s.begin():
        n = len((await s.execute(select(Person.id))).all())
        await s.execute(Person.__table__.update().values(elector_digest=None))
    assert await backfill(db, clock=clock, batch_size=5) == n
    assert await backfill(db, clock=clock) == 0
    assert await backfill(db, clock=clock, resend=True) == n


def test_the_feed_rows_never_go_to_svc_metrics(monkeypatch):
    import svc_residents.app as residents_app

    seen = {}
    monkeypatch.setattr(residents_app, "create_service_app", lambda **kw: seen.update(kw))
    residents_app.create_app()
    assert "elector." in seen["feeds"]


@pytest.fixture
async def services(tmp_path, jwks):
    async with AsyncExitStack() as stack:
        yield await start_service(stack, "svc_services", f"sqlite+aiosqlite:///{tmp_path}/services.db", jwks,
                                  sla_scan_enabled=False)


async def test_relay_delivers_to_svc_services_whose_votes_follow_residency(seeded, as_, auth, services):
    """P-new registered in household 3 votes in its building's topic once delivered; moved to 安康, refused as out
    of scope; a merged duplicate is off the electorate (and a late older snapshot does not bring it back)."""
    from common.clock import FrozenClock
    from svc_residents.base import OutboxEvent

    services.app.state.clock = FrozenClock(seeded.app.state.clock.now())
    token = auth(role="system", user="svc_residents", member="svc_residents")["Authorization"].split()[1]

    async def provider():
        return token

    sender = FeedSender(FEED_URL, provider, transport=httpx.ASGITransport(app=services.app),
                        auth=gateway_auth())  # signed with the subscriber's key, as the app's relay is
    feed = OutboxRelay(seeded.app.state.db, OutboxEvent, source="svc_residents", send=sender,
                       clock=seeded.app.state.clock, types=TypeFilter(include=("elector.",)))

    async def deliver():
        while await feed.run_once():
            pass
        assert (await feed.measure())[0] == 0

    p = await register(seeded, as_("staff1"), make_id("19700101", 3))                    # household 3, B3, adult
    staff = auth(role="community_staff", scopes=["community:110105001001"], user="staff1")
    r = await services.post("/services/v1/topics", headers=staff, json={
        "title": "3号楼加装电梯", "description": "提议加装电梯。", "category": "facilities", "source": "staff",
        "scope_kind": "building", "scope_code": B3})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    now = services.app.state.clock.now()
    r = await services.post(f"/services/v1/topics/{tid}/vote", headers=staff, json={
        "options": ["同意", "反对"], "eligibility": "adult", "opens_at": now.isoformat(),
        "closes_at": (now + timedelta(days=3)).isoformat(), "changeable": True})
    assert r.status_code == 201, r.text
    voter = auth(role="resident", scopes=[f"person:{p['id']}"], user="u-new")
    ballot = {"option": "同意"}
    r = await services.post(f"/services/v1/topics/{tid}/ballots", headers=voter, json=ballot)
    assert r.status_code == 404, r.text       # not delivered yet: not of the scope, the topic is not theirs to see
    await deliver()
    r = await services.post(f"/services/v1/topics/{tid}/ballots", headers=voter, json=ballot)
    assert r.status_code == 200, r.text
    # moved to 安康: no longer of the building's scope (the topic answers as an unknown one)
    r = await seeded.patch(f"{PERSONS}/{p['id']}", headers=as_("ops1"), json={"version": p["version"],
                                                                              "household_id": H("4")})
    assert r.status_code == 200, r.text
    await deliver()
    r = await services.post(f"/services/v1/topics/{tid}/ballots", headers=voter, json={"option": "反对"})
    assert r.status_code == 404 and r.json()["code"] == "topic.not_found", r.text
    # merged away: off the electorate; a late older snapshot changes nothing
    survivor = (await register(seeded, as_("staff1"), make_id("19700101", 8)))["id"]
    dup = await register(seeded, as_("staff1"), make_id("19700101", 9))
    await deliver()
    r = await seeded.post(f"{PERSONS}/{survivor}/merge", headers=as_("staff1"),
                          json={"duplicate_id": dup["id"], "reason": "台账录错身份证号"})
    assert r.status_code == 200, r.text
    await deliver()
    ops = auth(role="ops", user="ops1")
    late = {"building_code": B3, "household_id": H("3"), "household_head": False, "birth_date": "1970-01-01",
            "version": 1}
    r = await services.put(f"/services/v1/deliberation/electors/{dup['id']}", headers=ops, json=late)
    assert r.status_code == 200 and r.json()["removed"] is True, r.text
    dv = auth(role="resident", scopes=[f"person:{dup['id']}"], user="u-dup")
    r = await services.post(f"/services/v1/topics/{tid}/ballots", headers=dv, json=ballot)
    assert r.status_code == 404, r.text
    # the electorate counted at close: the one who voted has left and the duplicate is gone, the survivor counts
    services.app.state.clock = FrozenClock(now + timedelta(days=3, minutes=1))
    r = await services.post(f"/services/v1/topics/{tid}/vote/close", headers=staff)
    assert r.status_code == 200, r.text
    # household 3's adults P4, P5 and the survivor; not P6 (born 2023), the one who moved, nor the duplicate.
    # Eligibility is decided at close: the ballot cast while they lived here is kept and hashed, set aside.
    res = r.json()["result"]
    assert (res["eligible"], res["cast"], len(res["set_aside"])) == (3, 0, 1)
    await sender.aclose()
