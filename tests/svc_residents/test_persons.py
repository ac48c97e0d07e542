"""Households and persons: registration, derived identity, encryption at rest, masking, bad input."""
from __future__ import annotations

from sqlalchemy import func, select, text

from tests.svc_residents.conftest import GRID_A1, H, P, make_id

BASE = "/residents/v1"


async def _counts(client):
    from svc_residents.models import Household, OutboxEvent, Person, PersonTag

    async with client.app.state.db.session() as s:
        return tuple([(await s.execute(select(func.count()).select_from(m))).scalar()
                      for m in (Household, Person, PersonTag, OutboxEvent)])


async def _events(client, type_=None):
    from svc_residents.models import OutboxEvent

    async with client.app.state.db.session() as s:
        # the domain events for svc_metrics (the feed rows are tested in test_profile_feed.py, test_place_feed.py,
        # test_elector_feed.py)
        stmt = select(OutboxEvent).where(~OutboxEvent.type.startswith("requester_profile."),
                                         ~OutboxEvent.type.startswith("person_place."),
                                         ~OutboxEvent.type.startswith("elector.")).order_by(OutboxEvent.id)
        if type_:
            stmt = stmt.where(OutboxEvent.type == type_)
        return list((await s.execute(stmt)).scalars())


async def test_grid_workers(seeded, as_):
    r = await seeded.get(f"{BASE}/places/{GRID_A1}/workers", headers=as_("grid1"))
    assert r.json() == {"grid_code": GRID_A1, "user_ids": ["grid1"]}
    r = await seeded.put(f"{BASE}/places/{GRID_A1}/workers", json={"user_ids": ["grid1", "grid9", "grid9"]},
                         headers=as_("staff1"))
    assert r.status_code == 200 and r.json()["user_ids"] == ["grid1", "grid9"]
    assert (await _events(seeded, "grid.workers_changed"))[-1].data == {"workers": ["grid1", "grid9"]}
    r = await seeded.put(f"{BASE}/places/{GRID_A1}/workers", json={"user_ids": ["x"]}, headers=as_("staff2"))
    assert r.status_code == 403
    r = await seeded.put(f"{BASE}/places/{GRID_A1}/workers", json={"user_ids": ["x"]}, headers=as_("grid1"))
    assert r.status_code == 403
    r = await seeded.put(f"{BASE}/places/110105001001/workers", json={"user_ids": ["x"]}, headers=as_("staff1"))
    assert r.status_code == 404 and r.json()["code"] == "place.not_a_grid"


async def test_register_household_and_person(seeded, as_):
    r = await seeded.post(f"{BASE}/households", headers={**as_("grid1"), "Idempotency-Key": "h-1"},
                          json={"address": "幸福路1号楼102", "grid_code": GRID_A1,
                                "building_code": GRID_A1 + "001"})
    assert r.status_code == 201, r.text
    hh = r.json()
    assert hh["community_code"] == "110105001001" and hh["head_person_id"] is None
    number = make_id("19450310", seq=7, sex="F")
    body = {"household_id": hh["id"], "name": "钱桂兰", "id_number": number, "phone": "139 1234 5678",
            "residency_type": "registered", "is_head": True, "preferred_channel": "phone",
            "accessibility_needs": ["large_font", "voice"],
            "tags": [{"code": "elderly", "source": "staff"}]}
    r = await seeded.post(f"{BASE}/persons", json=body, headers={**as_("grid1"), "Idempotency-Key": "p-1"})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["id_number"] == number[:6] + "********" + number[-4:] and p["phone"] == "139****5678"
    assert p["revealed"] is False and p["birth_date"] == "1945-03-10" and p["sex"] == "F" and p["age"] >= 80
    assert p["grid_code"] == GRID_A1 and [t["code"] for t in p["tags"]] == ["elderly"]
    # a retry with the same key replays, it does not collide with itself
    r2 = await seeded.post(f"{BASE}/persons", json=body, headers={**as_("grid1"), "Idempotency-Key": "p-1"})
    assert r2.status_code == 201 and r2.json()["id"] == p["id"]
    r = await seeded.get(f"{BASE}/households/{hh['id']}", headers=as_("staff1"))
    assert r.json()["head_person_id"] == p["id"] and [m["id"] for m in r.json()["members"]] == [p["id"]]
    assert r.json()["members"][0]["id_number"].count("*") == 8
    # at rest: no clear ID number or phone anywhere in the row
    async with seeded.app.state.db.session() as s:
        row = (await s.execute(text("SELECT * FROM persons WHERE id = :i"), {"i": p["id"]})).mappings().one()
    dump = " ".join(str(v) for v in row.values())
    assert number not in dump and number[6:14] not in row["id_number_enc"] and "13912345678" not in dump
    types = [e.type for e in await _events(seeded)][-4:]
    assert types == ["household.changed", "person.registered", "household.changed", "person.tagged"]
    reg = (await _events(seeded, "person.registered"))[-1]
    assert reg.subject == p["id"] and reg.grid == GRID_A1 and number not in str(reg.data)
    assert reg.data["age"] == p["age"]   # the exact age: svc_metrics counts 65+ residents from it


async def test_bad_input_names_the_field_and_writes_nothing(seeded, as_):
    h = as_("staff1")
    before = await _counts(seeded)
    good = {"household_id": H("1"), "name": "测试", "id_number": make_id("19900101", seq=9),
            "residency_type": "resident"}

    async def problem(body, status=422):
        r = await seeded.post(f"{BASE}/persons", json=body, headers=h)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        return r.json()

    bad_check = good["id_number"][:17] + ("0" if good["id_number"][17] != "0" else "1")
    assert (await problem({**good, "id_number": bad_check}))["errors"][0]["field"] == "id_number"
    impossible = make_id("19900230", seq=1)  # 30 February
    assert (await problem({**good, "id_number": impossible}))["errors"][0]["field"] == "id_number"
    future = make_id("20990101", seq=1)
    e = await problem({**good, "id_number": future})
    assert e["errors"][0]["field"] == "id_number" and "出生日期" in e["errors"][0]["message"]
    assert (await problem({**good, "phone": "1380001000"}))["errors"][0]["field"] == "phone"
    assert (await problem({**good, "residency_type": "tourist"}))["errors"][0]["field"] == "residency_type"
    e = await problem({**good, "tags": [{"code": "dibao", "source": "department", "source_department": "minzheng",
                                         "verified": True, "verified_at": "2026-05-01T00:00:00+08:00",
                                         "valid_until": "2026-04-01T00:00:00+08:00"}]})
    assert e["errors"][0]["field"] == "valid_until"
    # duplicate ID number: one person, one record (also with another layout of the same number)
    e = await problem({**good, "id_number": "110105198003120112"}, status=409)
    assert e["code"] == "person.duplicate_id_number" and e["existing_person_id"] == P("P1")
    r = await seeded.post(f"{BASE}/persons", json={**good, "id_number": "110105198003120112"}, headers=as_("street1"))
    assert r.status_code == 409
    # unknown grid / building for a household
    r = await seeded.post(f"{BASE}/households", json={"address": "x", "grid_code": "110105001001009"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "grid_code"
    r = await seeded.post(f"{BASE}/households", json={"address": "x", "grid_code": GRID_A1,
                                                      "building_code": "110105001001002001"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "building_code"
    r = await seeded.post(f"{BASE}/households", json={"address": "x", "grid_code": GRID_A1, "head": "me"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "head"
    r = await seeded.post(f"{BASE}/persons", json={**good, "household_id": "nope"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "household_id"
    assert await _counts(seeded) == before


async def test_duplicate_detected_by_blind_index_with_lowercase_x(seeded, as_):
    number = make_id("19700101", seq=4)
    while not number.endswith("X"):  # find one with an X check digit
        number = make_id("19700101", seq=int(number[14:17]) // 2 + 1)
    r = await seeded.post(f"{BASE}/persons", headers=as_("staff1"), json={
        "household_id": H("1"), "name": "甲", "id_number": number.lower(), "residency_type": "resident"})
    assert r.status_code == 201, r.text
    # staff2 may not see that record: no second one, and no word of the first (test_registrations.py)
    r = await seeded.post(f"{BASE}/persons", headers=as_("staff2"), json={
        "household_id": H("4"), "name": "乙", "id_number": number, "residency_type": "resident"})
    assert r.status_code == 202 and r.json()["status"] == "pending" and r.json()["person_id"] is None


async def test_reveal_is_authorised_and_audited(seeded, as_):
    url = f"{BASE}/persons/{P('P3')}"
    r = await seeded.get(url, params={"reveal": "true", "purpose": "核实低保申请"}, headers=as_("staff1"))
    assert r.status_code == 200, r.text
    assert r.json()["id_number"] == "110105193802140424" and r.json()["phone"] == "13800010003"
    assert r.json()["revealed"] is True and r.headers["cache-control"] == "no-store"
    r = await seeded.get(url, params={"reveal": "true"}, headers=as_("staff1"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "purpose"
    for who in ("grid1", "proxy1", "ops1"):
        r = await seeded.get(url, params={"reveal": "true", "purpose": "x"}, headers=as_(who))
        assert r.status_code == 403 and r.json()["code"] == "person.reveal_forbidden", who
    r = await seeded.get(url, params={"reveal": "true", "purpose": "本人查看"}, headers=as_("resident3"))
    assert r.status_code == 200 and r.json()["revealed"]
    r = await seeded.get(f"{BASE}/persons/{P('P2')}", params={"reveal": "true", "purpose": "x"},
                         headers=as_("resident1"))
    assert r.status_code == 403  # a household member, not oneself
    r = await seeded.get(f"{url}/access-log", headers=as_("resident3"))
    log = r.json()["items"]
    assert [(e["user_id"], e["role"], e["purpose"]) for e in log] == [
        ("staff1", "community_staff", "核实低保申请"), ("resident3", "resident", "本人查看")]
    assert log[0]["fields"] == ["id_number", "phone"] and log[0]["request_id"]
    r = await seeded.get(f"{url}/access-log", headers=as_("grid1"))
    assert r.status_code == 403


async def test_updates_versions_and_self_service(seeded, as_):
    url = f"{BASE}/persons/{P('P1')}"
    r = await seeded.patch(url, json={"version": 1, "phone": "13900000001", "preferred_channel": "kiosk"},
                           headers=as_("resident1"))
    assert r.status_code == 200, r.text
    assert r.json()["phone"] == "139****0001" and r.json()["version"] == 2
    r = await seeded.patch(url, json={"version": 2, "name": "张三"}, headers=as_("resident1"))
    assert r.status_code == 403
    r = await seeded.patch(url, json={"version": 1, "name": "张三"}, headers=as_("staff1"))
    assert r.status_code == 409 and r.json()["current_version"] == 2
    r = await seeded.patch(url, json={"version": 2, "phone": "12345"}, headers=as_("staff1"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "phone"
    # search by the new phone works, the old one no longer matches
    r = await seeded.post(f"{BASE}/persons/search", json={"phone": "13900000001"}, headers=as_("staff1"))
    assert [p["id"] for p in r.json()["items"]] == [P("P1")]
    r = await seeded.post(f"{BASE}/persons/search", json={"phone": "13800010001"}, headers=as_("staff1"))
    assert r.json()["items"] == []
    # move P2 into household 2; then make P2 its head
    r = await seeded.patch(f"{BASE}/persons/{P('P2')}", json={"version": 1, "household_id": H("2")},
                           headers=as_("staff1"))
    assert r.status_code == 200 and r.json()["household_id"] == H("2")
    hh = (await seeded.get(f"{BASE}/households/{H('2')}", headers=as_("staff1"))).json()
    r = await seeded.patch(f"{BASE}/households/{H('2')}", json={"version": hh["version"], "head_person_id": P("P1")},
                           headers=as_("staff1"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "head_person_id"
    r = await seeded.patch(f"{BASE}/households/{H('2')}", json={"version": hh["version"], "head_person_id": P("P2")},
                           headers=as_("staff1"))
    assert r.status_code == 200 and r.json()["head_person_id"] == P("P2")
    changes = [e.data["change"] for e in await _events(seeded, "household.changed")][-3:]
    assert changes == ["member_left", "member_added", "updated"]


async def test_idempotency_record_keeps_no_clear_or_plainly_hashed_id(seeded, as_):
    import hashlib

    from svc_residents.models import IdempotencyRecord

    number = make_id("19660606", seq=3)
    body = {"household_id": H("1"), "name": "丙", "id_number": number, "phone": "13700000000",
            "residency_type": "floating"}
    r = await seeded.post(f"{BASE}/persons", json=body, headers={**as_("staff1"), "Idempotency-Key": "k-x"})
    assert r.status_code == 201
    async with seeded.app.state.db.session() as s:
        rec = (await s.execute(select(IdempotencyRecord))).scalars().one()
    assert number not in rec.response_body and "13700000000" not in rec.response_body
    from common.idempotency import request_fingerprint
    from svc_residents.persons.schemas import PersonCreate
    assert rec.request_hash != request_fingerprint("POST", f"{BASE}/persons", PersonCreate(**body).model_dump())
    assert rec.request_hash != hashlib.sha256(number.encode()).hexdigest()
