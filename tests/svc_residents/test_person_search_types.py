"""Person search's filters take what their schema declares (issue 31, found by the all-checks fuzz): ages and the
limit are JSON integers (a string "5" is a 422, not read as 5), the list's household_id at most 36 characters (a
422 naming it, not a 500)."""
from __future__ import annotations


async def test_search_ages_and_limit_are_integers_and_household_id_is_bounded(seeded, as_):
    h = as_("staff1")
    ok = await seeded.post("/residents/v1/persons/search", json={"age_min": 60, "limit": 5}, headers=h)
    assert ok.status_code == 200, ok.text
    for field, bad in (("age_min", "5"), ("age_max", True), ("limit", "5")):
        r = await seeded.post("/residents/v1/persons/search", json={field: bad}, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (field, r.text)
    r = await seeded.get("/residents/v1/persons", params={"household_id": "x" * 37}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "household_id", r.text
    r = await seeded.get("/residents/v1/persons", params={"household_id": "x" * 36}, headers=h)
    assert r.status_code == 200, r.text
