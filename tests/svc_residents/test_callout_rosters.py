"""Duty rosters (值班表): staff of the place add, change and remove shifts; bad times, overlaps, a duty on the wrong
level of place and a caller outside the scope get clear problems and write nothing; phones are stored encrypted
and shown masked; who may read and edit a roster follows the policy (svc_residents/callout/rosters.py)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from tests.svc_residents.conftest import GRID_A1, GRID_B1, START

ROSTERS = "/residents/v1/rosters"
XF, AK, STREET = "110105001001", "110105001002", "110105001"


def at(hours: float) -> str:
    return (START + timedelta(hours=hours)).isoformat()


def shift(**over):
    return {"place_code": GRID_A1, "duty": "backup_worker", "name": "李备岗", "user_id": "grid2",
            "phone": "13800000001", "starts_at": at(0), "ends_at": at(8), **over}


async def count_shifts(client) -> int:
    from svc_residents.callout.models import DutyShift

    async with client.app.state.db.session() as s:
        return (await s.execute(select(func.count()).select_from(DutyShift))).scalar_one()


async def test_add_change_list_and_remove_a_shift(seeded, as_):
    h = as_("staff1")
    r = await seeded.post(ROSTERS, json=shift(), headers={**h, "Idempotency-Key": "k1"})
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["phone_masked"] == "138****0001" and "phone" not in s and s["version"] == 1
    again = await seeded.post(ROSTERS, json=shift(), headers={**h, "Idempotency-Key": "k1"})
    assert again.status_code == 201 and again.json()["id"] == s["id"] and await count_shifts(seeded) == 1
    # the community's duty phone and the street's duty officer, each on its own level of place
    r = await seeded.post(ROSTERS, json=shift(place_code=XF, duty="community_duty", name="幸福值班室", user_id="staff1",
                                              phone="13900000002"), headers=h)
    assert r.status_code == 201, r.text
    r = await seeded.post(ROSTERS, json=shift(place_code=STREET, duty="street_duty", name="王主任",
                                              user_id="street1"), headers=as_("street1"))
    assert r.status_code == 201, r.text
    # the next shift starts where this one ends: no overlap
    r = await seeded.post(ROSTERS, json=shift(starts_at=at(8), ends_at=at(16), name="赵备岗"), headers=h)
    assert r.status_code == 201, r.text
    later = r.json()
    page = (await seeded.get(ROSTERS, params={"place_code": GRID_A1, "at": at(9)}, headers=as_("grid1"))).json()
    assert [x["name"] for x in page["items"]] == ["赵备岗"]
    r = await seeded.patch(f"{ROSTERS}/{s['id']}", json={"version": 1, "ends_at": at(7)}, headers=h)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["ends_at"].startswith(at(7)[:16])
    r = await seeded.patch(f"{ROSTERS}/{s['id']}", json={"version": 1, "name": "x"}, headers=h)
    assert r.status_code == 409 and r.json()["current_version"] == 2
    r = await seeded.delete(f"{ROSTERS}/{later['id']}", params={"version": 1}, headers=h)
    assert r.status_code == 204 and await count_shifts(seeded) == 3
    # stored encrypted, bound to the shift
    from svc_residents.callout.models import DutyShift
    from svc_residents.callout.rosters import reveal_phone

    async with seeded.app.state.db.session() as ses:
        row = await ses.get(DutyShift, s["id"])
    assert "13800000001" not in row.phone_enc and reveal_phone(seeded.app.state.protection, row) == "13800000001"


BAD = [
    (shift(ends_at=at(0)), 422, "ends_at", "roster.ends_before_start"),
    (shift(ends_at=at(-1)), 422, "ends_at", "roster.ends_before_start"),
    (shift(ends_at=at(24 * 40)), 422, "ends_at", "roster.too_long"),
    (shift(starts_at="2026-11-23T10:00:00"), 422, "starts_at", None),           # no offset
    (shift(starts_at="明天早上"), 422, "starts_at", None),
    (shift(place_code=XF), 422, "place_code", "roster.place_level"),             # a backup worker of a community
    (shift(place_code="110105001001999"), 422, "place_code", "roster.place_level"),
    (shift(duty="night_guard"), 422, "duty", None),
    (shift(phone="12345"), 422, "phone", None),
    (shift(place_code=XF, duty="community_duty", phone=None), 422, "phone", "roster.phone_required"),
    (shift(user_id=None), 422, "user_id", "roster.contact_required"),
    (shift(colour="red"), 422, "colour", None),
]


async def test_bad_shifts_are_refused_naming_the_field(seeded, as_):
    for body, status, field, code in BAD:
        r = await seeded.post(ROSTERS, json=body, headers=as_("staff1"))
        assert r.status_code == status, r.text
        p = r.json()
        assert r.headers["content-type"].startswith("application/problem+json")
        assert any(e["field"].endswith(field) for e in p["errors"]), p
        if code:
            assert p["errors"][0]["code"] == code
    assert await count_shifts(seeded) == 0


async def test_overlaps_and_callers_outside_the_scope_write_nothing(seeded, as_):
    h = as_("staff1")
    first = (await seeded.post(ROSTERS, json=shift(), headers=h)).json()
    r = await seeded.post(ROSTERS, json=shift(starts_at=at(7), ends_at=at(9)), headers=h)
    assert r.status_code == 409 and r.json()["code"] == "roster.overlap" and r.json()["overlaps"] == first["id"]
    assert "李备岗" in r.json()["detail"]
    second = (await seeded.post(ROSTERS, json=shift(starts_at=at(8), ends_at=at(9)), headers=h)).json()
    r = await seeded.patch(f"{ROSTERS}/{second['id']}", json={"version": 1, "starts_at": at(7)}, headers=h)
    assert r.status_code == 409 and r.json()["code"] == "roster.overlap"
    # another duty at the same place and time is no overlap
    r = await seeded.post(ROSTERS, json=shift(place_code=XF, duty="community_duty"), headers=h)
    assert r.status_code == 201
    assert await count_shifts(seeded) == 3
    # 安康's staff, a grid worker, a resident: refused, nothing written
    for who, status in (("staff2", 403), ("grid1", 403), ("resident1", 403), ("dept_mz", 403), ("portal", 403)):
        r = await seeded.post(ROSTERS, json=shift(starts_at=at(20), ends_at=at(21)), headers=as_(who))
        assert r.status_code == status, (who, r.text)
    # community staff do not set the street's duty officer
    r = await seeded.post(ROSTERS, json=shift(place_code=STREET, duty="street_duty"), headers=h)
    assert r.status_code == 403
    assert await count_shifts(seeded) == 3
    # 安康's staff neither see nor change 幸福's shift (404 as for an unknown one)
    for who in ("staff2", "grid3", "resident1", "dept_mz"):
        assert (await seeded.get(f"{ROSTERS}/{first['id']}", headers=as_(who))).status_code == 404, who
        r = await seeded.patch(f"{ROSTERS}/{first['id']}", json={"version": 1, "name": "改"}, headers=as_(who))
        assert r.status_code == 404, who
    assert (await seeded.get(ROSTERS, params={"place_code": GRID_A1}, headers=as_("staff2"))).status_code == 403
    assert (await seeded.get(ROSTERS, params={"place_code": GRID_B1}, headers=as_("staff2"))).status_code == 200
    # a grid worker reads their grid's roster but does not change it
    assert (await seeded.get(f"{ROSTERS}/{first['id']}", headers=as_("grid1"))).status_code == 200
    r = await seeded.patch(f"{ROSTERS}/{first['id']}", json={"version": 1, "name": "改"}, headers=as_("grid1"))
    assert r.status_code == 403
    r = await seeded.delete(f"{ROSTERS}/{first['id']}", headers=h)
    assert r.status_code == 428
