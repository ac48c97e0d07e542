"""An ID number on record in another community (issue 23, finding 9): registering it there answered 409 "this ID
number is already registered", telling staff of 安康 that a 幸福 resident's number is on record.

One person, one record (一人一档): no second record is made, and nothing tells the registering staff where or
whose the record is. The registration waits, as pending, for the staff who can see the existing record (its
community or street, or ops): they confirm it (the person moved; the one record goes into the new household) or
refuse it. The registering side is answered 202 "submitted for confirmation", sees its ask in the list without
the person, and sees the person once confirmed. (What it can still tell: that this registration waits, where a
new number's is made at once; registrations/service.py says why that is the line.)
"""
from __future__ import annotations

from sqlalchemy import func, select

from tests.svc_residents.conftest import H, P, make_id

BASE = "/residents/v1"
P1_ID = "110105198003120112"  # 张伟 (P1), household 1, community 幸福 (110105001001)
XF, AK = "110105001001", "110105001002"


def _ask(household: str = "4", number: str = P1_ID, name: str = "张伟", **more) -> dict:
    return {"household_id": H(household), "name": name, "id_number": number, "residency_type": "resident", **more}


async def _persons(client) -> int:
    from svc_residents.models import Person

    async with client.app.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(Person))).scalar()


async def test_another_communitys_number_is_neither_duplicated_nor_revealed(seeded, as_):
    before = await _persons(seeded)
    r = await seeded.post(f"{BASE}/persons", json=_ask(relation_to_head="租户"), headers=as_("staff2"))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "pending" and body["detail"] == "登记已提交，待核实后生效"
    assert body["person_id"] is None and body["household_id"] == H("4")
    # nothing of the existing record: not its id, its community, its grid, its masked number or its phone
    for secret in (P("P1"), H("1"), XF, "110105********0112", "138****0001", "duplicate"):
        assert secret not in r.text, secret
    assert await _persons(seeded) == before  # one person, one record
    # asked again: the same pending registration, not a second one
    again = await seeded.post(f"{BASE}/persons", json=_ask(relation_to_head="租户"), headers=as_("staff2"))
    assert again.status_code == 202 and again.json()["id"] == body["id"]
    # a number on record where the caller can see it is still the duplicate it is, named
    r = await seeded.post(f"{BASE}/persons", json=_ask(household="1"), headers=as_("staff1"))
    assert r.status_code == 409 and r.json()["existing_person_id"] == P("P1")
    # and a new number is registered at once
    r = await seeded.post(f"{BASE}/persons", json=_ask(number=make_id("19900101", seq=9), name="新居民"),
                          headers=as_("staff2"))
    assert r.status_code == 201 and r.json()["community_code"] == AK


async def test_the_records_community_confirms_and_the_one_record_moves(seeded, as_, auth):
    rid = (await seeded.post(f"{BASE}/persons", json=_ask(is_head=False, relation_to_head="租户"),
                             headers=as_("staff2"))).json()["id"]
    # the asking side lists its ask without the person; the record's side with it
    mine = (await seeded.get(f"{BASE}/registrations", headers=as_("staff2"))).json()["items"]
    assert [(x["id"], x["status"], x["person_id"]) for x in mine] == [(rid, "pending", None)]
    theirs = (await seeded.get(f"{BASE}/registrations?status=pending", headers=as_("staff1"))).json()["items"]
    assert [(x["id"], x["person_id"], x["name"]) for x in theirs] == [(rid, P("P1"), "张伟")]
    assert (await seeded.get(f"{BASE}/registrations?status=confirmed",
                             headers=as_("staff1"))).json()["items"] == []
    # who decides: community or street staff of the existing record, or ops; not the asking side (staff2, grid3
    # of household 4's grid), not the record's grid worker, and another community's staff do not even see it
    other = auth(role="community_staff", user="staff9", scopes=["community:110105001003"])
    for who, status in ((as_("staff2"), 403), (as_("grid3"), 403), (as_("grid1"), 403), (other, 404),
                        (as_("resident1"), 403), (as_("dept_mz"), 403)):
        r = await seeded.post(f"{BASE}/registrations/{rid}/confirm", json={}, headers=who)
        assert r.status_code == status, (status, r.text)
        assert P("P1") not in r.text
    assert (await seeded.get(f"{BASE}/persons/{P('P1')}", headers=as_("staff2"))).status_code == 404

    r = await seeded.post(f"{BASE}/registrations/{rid}/confirm", json={"note": "已迁居安康社区"},
                          headers=as_("staff1"))
    assert r.status_code == 200 and r.json()["status"] == "confirmed", r.text
    person = (await seeded.get(f"{BASE}/persons/{P('P1')}", headers=as_("staff2"))).json()
    assert person["household_id"] == H("4") and person["community_code"] == AK
    assert person["residency_type"] == "resident" and person["relation_to_head"] == "租户"
    assert (await seeded.get(f"{BASE}/persons/{P('P1')}", headers=as_("staff1"))).status_code == 404
    # the asking side now sees whose record it was; the trail is on the person
    mine = (await seeded.get(f"{BASE}/registrations", headers=as_("staff2"))).json()["items"]
    assert [(x["status"], x["person_id"]) for x in mine] == [("confirmed", P("P1"))]
    changes = (await seeded.get(f"{BASE}/persons/{P('P1')}/changes", headers=as_("staff2"))).json()
    moved = [c for c in changes if c["change"] == "moved"]
    assert moved and moved[0]["old"]["household_id"] == H("1") and moved[0]["new"]["registration_id"] == rid
    r = await seeded.post(f"{BASE}/registrations/{rid}/refuse", json={}, headers=as_("ops1"))
    assert r.status_code == 409 and r.json()["code"] == "registration.decided"


async def test_a_refused_registration_changes_nothing(seeded, as_):
    rid = (await seeded.post(f"{BASE}/persons", json=_ask(name="张某"), headers=as_("staff2"))).json()["id"]
    r = await seeded.post(f"{BASE}/registrations/{rid}/refuse", json={"note": "身份证号有误"}, headers=as_("street1"))
    assert r.status_code == 200 and r.json()["status"] == "refused"
    assert (await seeded.get(f"{BASE}/persons/{P('P1')}", headers=as_("staff1"))).json()["household_id"] == H("1")
    mine = (await seeded.get(f"{BASE}/registrations", headers=as_("staff2"))).json()["items"]
    assert [(x["status"], x["person_id"], x["note"]) for x in mine] == [("refused", None, "身份证号有误")]
    # bad input and unknown ids
    r = await seeded.post(f"{BASE}/registrations/{rid}/confirm", json={"note": "x" * 201}, headers=as_("staff1"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "note"
    assert (await seeded.post(f"{BASE}/registrations/nope/confirm", json={},
                              headers=as_("ops1"))).status_code == 404
    assert (await seeded.get(f"{BASE}/registrations?status=maybe", headers=as_("ops1"))).status_code == 422
    assert (await seeded.get(f"{BASE}/registrations", headers=as_("resident1"))).status_code == 403
