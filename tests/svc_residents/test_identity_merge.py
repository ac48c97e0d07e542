"""Identity resolution: one ID number is one person (blind index unique), and merging a duplicate made before
verification keeps both trails (tags, consents, audit, household membership; the merged record stays)."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from tests.svc_residents.conftest import H, P, make_id

PERSONS = "/residents/v1/persons"


async def _register(client, headers, id_number, *, household="3", name="刘强", phone=None, tags=(), is_head=False):
    body = {"household_id": H(household), "name": name, "id_number": id_number, "residency_type": "registered",
            "is_head": is_head, "tags": [{"code": t, "source": "staff"} for t in tags]}
    if phone:
        body["phone"] = phone
    return await client.post(PERSONS, json=body, headers=headers)


async def test_one_id_number_never_two_persons(seeded, as_):
    from svc_residents.models import Person

    number = make_id("19700101", 7)
    results = await asyncio.gather(*(_register(seeded, as_("staff1"), number, name=f"重复{i}") for i in range(4)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    # another format of the same number (lower-case x) is the same person too
    r = await _register(seeded, as_("staff1"), "110105193802140424".lower())
    assert r.status_code == 409
    async with seeded.app.state.db.session() as s:
        rows = (await s.execute(select(Person.id_number_bidx))).scalars().all()
    assert len(rows) == len(set(rows))
    # the unique index is in the schema itself
    unique = {tuple(c.columns.keys()) for c in Person.__table__.constraints if c.__class__.__name__ ==
              "UniqueConstraint"} | {tuple(i.columns.keys()) for i in Person.__table__.indexes if i.unique}
    assert ("id_number_bidx",) in unique or Person.__table__.c.id_number_bidx.unique


async def test_merge_keeps_both_trails(seeded, as_):
    from svc_residents.models import AccessAudit, Consent, OutboxEvent, PersonChange, PersonTag

    h = as_("staff1")
    # a ledger import typed 刘强's ID number wrong: a second record of the same man, head of a new household
    r = await seeded.post("/residents/v1/households", headers=h,
                          json={"address": "幸福路3号楼201（台账）", "grid_code": "110105001001002"})
    hh = r.json()["id"]
    r = await seeded.post(PERSONS, headers=h, json={
        "household_id": hh, "name": "刘强", "id_number": make_id("19520909", 9), "residency_type": "registered",
        "is_head": True, "phone": "13900000004",
        "tags": [{"code": "living_alone", "source": "staff"}, {"code": "elderly", "source": "department",
                                                              "source_department": "minzheng", "verified": True}]})
    assert r.status_code == 201, r.text
    dup = r.json()["id"]
    assert (await seeded.post(f"{PERSONS}/{dup}/consents", headers=h,
                              json={"purpose": "contact", "granted": True, "channel": "paper"})).status_code == 201
    assert (await seeded.get(f"{PERSONS}/{dup}", params={"reveal": "true", "purpose": "核对台账"},
                             headers=h)).status_code == 200
    # the survivor has no phone on record: the duplicate's is carried over
    survivor = P("P4")
    r = await seeded.patch(f"{PERSONS}/{survivor}", headers=h, json={"version": 1, "phone": None})
    assert r.status_code == 200, r.text

    r = await seeded.post(f"{PERSONS}/{survivor}/merge", headers=h,
                          json={"duplicate_id": dup, "reason": "台账身份证号录入错误"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["merged"]["merged_into"] == survivor and out["person"]["merged_into"] is None
    tags = {t["code"]: t for t in out["person"]["tags"]}
    assert set(tags) == {"elderly", "disabled", "living_alone"}
    assert tags["elderly"]["source"] == "department"  # the better-founded value won, the other kept in history
    assert out["person"]["phone"] == "139****0004"
    async with seeded.app.state.db.session() as s:
        assert (await s.execute(select(PersonTag).where(PersonTag.person_id == dup))).first() is None
        consents = list((await s.execute(select(Consent).where(Consent.person_id == survivor))).scalars())
        assert [c.extra.get("merged_from") for c in consents] == [dup]
        audits = list((await s.execute(select(AccessAudit).where(AccessAudit.subject_id == survivor))).scalars())
        assert any(a.extra.get("merged_from") == dup for a in audits)
        events = list((await s.execute(select(OutboxEvent).where(OutboxEvent.subject == survivor)
                                       .order_by(OutboxEvent.id))).scalars())
        assert {e.data["code"] for e in events if e.data.get("merged_from") == dup} == {"elderly", "living_alone"}
        hh4 = list((await s.execute(select(OutboxEvent).where(OutboxEvent.subject == H("3"))
                                    .order_by(OutboxEvent.id))).scalars())
        assert hh4[-1].data["change"] == "member_merged_in" and hh4[-1].data["merged"] == dup
        hh_events = list((await s.execute(select(OutboxEvent).where(OutboxEvent.subject == hh)
                                          .order_by(OutboxEvent.id))).scalars())
        assert hh_events[-1].data["change"] == "member_merged"
        dup_changes = list((await s.execute(select(PersonChange).where(PersonChange.person_id == dup))).scalars())
        assert any(c.change == "merged_into" for c in dup_changes)
    # the duplicate stays readable, out of lists and member lists, and no longer changes
    r = await seeded.get(f"{PERSONS}/{dup}", headers=h)
    assert r.status_code == 200 and r.json()["merged_into"] == survivor
    r = await seeded.get(f"/residents/v1/households/{hh}", headers=h)
    assert r.json()["members"] == [] and r.json()["head_person_id"] is None
    r = await seeded.get(PERSONS, params={"name": "刘强"}, headers=h)
    assert [p["id"] for p in r.json()["items"]] == [survivor]
    r = await seeded.post(f"{PERSONS}/search", json={"id_number": make_id("19520909", 9)}, headers=h)
    assert [p["merged_into"] for p in r.json()["items"]] == [survivor]  # the typo still finds where it went
    r = await seeded.patch(f"{PERSONS}/{dup}", headers=h, json={"version": 2, "name": "刘强强"})
    assert r.status_code == 409 and r.json()["code"] == "person.merged"
    # the history of the survivor includes the duplicate's
    r = await seeded.get(f"{PERSONS}/{survivor}/changes", headers=h)
    fields = [(c["field"], c["change"]) for c in r.json()]
    assert ("merge", "merged") in fields and ("merge", "merged_into") in fields
    assert ("tag:elderly", "merged") in fields and ("phone", "merged") in fields
    # the same merge again is answered the same way; merging it elsewhere is refused
    r = await seeded.post(f"{PERSONS}/{survivor}/merge", headers=h, json={"duplicate_id": dup, "reason": "再次"})
    assert r.status_code == 200
    r = await seeded.post(f"{PERSONS}/{P('P5')}/merge", headers=h, json={"duplicate_id": dup, "reason": "x"})
    assert r.status_code == 409


async def test_merge_rules(seeded, as_):
    h = as_("staff1")
    r = await seeded.post(f"{PERSONS}/{P('P4')}/merge", headers=h, json={"duplicate_id": P("P4"), "reason": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "duplicate_id"
    r = await seeded.post(f"{PERSONS}/{P('P4')}/merge", headers=h, json={"duplicate_id": P("P7"), "reason": "x"})
    assert r.status_code == 422  # P7 is outside staff1's community: not even visible
    r = await seeded.post(f"{PERSONS}/{P('P4')}/merge", headers=h, json={"duplicate_id": P("P5")})
    assert r.status_code == 422  # a reason is required
    for name in ("grid1", "resident1", "ops1", "dept_mz"):
        r = await seeded.post(f"{PERSONS}/{P('P1')}/merge", headers=as_(name),
                              json={"duplicate_id": P("P2"), "reason": "x"})
        assert r.status_code == 403, (name, r.status_code)


async def test_a_police_verified_duplicate_is_not_merged_away(seeded, as_):
    from common.ids import new_id
    from svc_residents.models import Verification

    async with seeded.app.state.db.session() as s, s.begin():
        now = seeded.app.state.clock.now()
        s.add(Verification(id=new_id(), person_id=P("P5"), department="gongan", status="done", attempts=1,
                           result={"registered": True}, requested_by="t", created_at=now, updated_at=now,
                           answered_at=now))
    r = await seeded.post(f"{PERSONS}/{P('P4')}/merge", headers=as_("street1"),
                          json={"duplicate_id": P("P5"), "reason": "x"})
    assert r.status_code == 409 and r.json()["code"] == "merge.verified_identity"


@pytest.mark.parametrize("key", ["P1", "P3"])
async def test_merged_record_cannot_be_verified(seeded, as_, key):
    from svc_residents.models import Person

    async with seeded.app.state.db.session() as s, s.begin():
        person = await s.get(Person, P(key))
        person.merged_into = P("P2")
    r = await seeded.post(f"{PERSONS}/{P(key)}/verifications", headers=as_("staff1"))
    assert r.status_code == 409 and r.json()["code"] == "person.merged"
