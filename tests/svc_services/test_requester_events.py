"""request.submitted carries who the request is for, as the indicators need it (65+ usage, special-group filters):
`requester_id`, `requester_age` and `groups` from svc_services' own requester-profile replica — no call to
svc_residents per submission, and never a name, ID number or phone."""
from __future__ import annotations

from sqlalchemy import select

from svc_metrics.events.registry import REGISTRY
from svc_services.base import OutboxEvent
from tests.svc_services.conftest import GRID1, OPS, P1, P3, PROXY3, RES1, RES3, STAFF, submit

FEED = dict(role="system", user="svc_residents", member="svc_residents")
# START is 2026-03-02 (Shanghai): P3 turned 80 on 2026-03-01, P1 is 45
P3_PROFILE = {"birth_date": "1946-03-01", "groups": [
    {"code": "elderly"}, {"code": "living_alone", "valid_until": "2026-12-31"},
    {"code": "dibao", "valid_until": "2026-03-01"}]}   # expired the day before: not a group any more


async def submitted(client, rid):
    async with client.app.state.db.session() as s:
        return (await s.execute(select(OutboxEvent).where(OutboxEvent.subject == rid,
                                                          OutboxEvent.type == "request.submitted"))).scalar_one()


async def test_submission_event_carries_requester_age_and_groups(ready, auth):
    client = ready
    r = await client.put(f"/services/v1/requester_profiles/{P3}", json=P3_PROFILE, headers=auth(**FEED))
    assert r.status_code == 200, r.text
    assert [g["code"] for g in r.json()["groups"]] == ["elderly", "living_alone", "dibao"]
    # the proxy submits for P3 (代办): the event is about P3
    r = await submit(client, auth, who=PROXY3)
    assert r.status_code == 201, r.text
    row = await submitted(client, r.json()["id"])
    assert row.data["requester_id"] == P3 and row.data["requester_age"] == 80
    assert row.data["groups"] == ["elderly", "living_alone"]
    assert row.data["proxy"] is True
    REGISTRY["request.submitted"].data.model_validate(row.data)
    # the resident herself, on the kiosk, after a tag change: the feed drops the cached entry at once
    r = await client.put(f"/services/v1/requester_profiles/{P3}",
                         json={"birth_date": "1946-03-01", "groups": [{"code": "disabled"}]}, headers=auth(**FEED))
    assert r.status_code == 200
    r = await submit(client, auth, who=RES3, channel="kiosk")
    row = await submitted(client, r.json()["id"])
    assert (row.data["requester_age"], row.data["groups"]) == (80, ["disabled"])
    # staff registering at the counter for P3
    r = await submit(client, auth, who=STAFF, person_id=P3, channel="app")
    assert r.status_code == 201, r.text
    assert (await submitted(client, r.json()["id"])).data["requester_id"] == P3


async def test_requester_without_profile_or_without_person(ready, auth):
    client = ready
    r = await submit(client, auth, who=RES1)
    row = await submitted(client, r.json()["id"])
    assert row.data["requester_id"] == P1
    assert "requester_age" not in row.data and "groups" not in row.data
    # a profile arriving later is used for the next submission (the feed drops the cached absence)
    assert (await client.put(f"/services/v1/requester_profiles/{P1}", json={"birth_date": "1980-03-12"},
                             headers=auth(**FEED))).status_code == 200
    row = await submitted(client, (await submit(client, auth, who=RES1)).json()["id"])
    assert row.data["requester_age"] == 45 and "groups" not in row.data
    # staff reporting a matter for nobody in particular: no requester at all
    r = await submit(client, auth, who=STAFF, location={"grid": GRID1})
    row = await submitted(client, r.json()["id"])
    assert not {"requester_id", "requester_age", "groups"} & set(row.data)
    # no personal identifiers in any submission event
    async with client.app.state.db.session() as s:
        for ev in (await s.execute(select(OutboxEvent))).scalars():
            assert not {"name", "id_number", "phone", "person_name"} & set(ev.data)


async def test_profile_feed_is_for_systems_and_refuses_personal_fields(ready, auth):
    client = ready
    url = f"/services/v1/requester_profiles/{P3}"
    for who in (RES3, STAFF, PROXY3):
        assert (await client.put(url, json=P3_PROFILE, headers=auth(**who))).status_code == 403
    # other systems on the exchange (a kiosk, a department's system) neither write nor read profiles
    for member in ("kiosk", "dept_minzheng", "svc_matching"):
        system = auth(role="system", user=member, member=member)
        r = await client.put(url, json=P3_PROFILE, headers=system)
        assert r.status_code == 403 and r.json()["code"] == "requester_profile.not_a_source", r.text
        assert (await client.get(url, headers=system)).status_code == 403
        assert (await client.delete(url, headers=system)).status_code == 403
    for body, field in (({"birth_date": "1946-03-01", "name": "王秀英"}, "name"),
                        ({"birth_date": "1946-03-01", "id_number": "110105193802140424"}, "id_number"),
                        ({"birth_date": "1946-13-01"}, "birth_date"),
                        ({"groups": [{"code": "老人"}]}, "groups.0.code")):
        r = await client.put(url, json=body, headers=auth(**FEED))
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
        assert any("\u4e00" <= ch <= "\u9fff" for ch in r.json()["title"])
    assert (await client.get(url, headers=auth(**OPS))).status_code == 404
    assert (await client.put(url, json=P3_PROFILE, headers=auth(**OPS))).status_code == 200
    assert (await client.get(url, headers=auth(**OPS))).json()["birth_date"] == "1946-03-01"
    assert (await client.delete(url, headers=auth(**FEED))).status_code == 204
    row = await submitted(client, (await submit(client, auth, who=RES3)).json()["id"])
    assert "requester_age" not in row.data


async def test_feed_versions_ignore_stale_updates_and_tombstones_hold(ready, auth):
    """svc_residents' feed sends per-person versions: an older or repeated one changes nothing, a removal with a
    version leaves a tombstone an older snapshot cannot bring back, and a submission then carries no age."""
    client, h, url = ready, auth(**FEED), f"/services/v1/requester_profiles/{P3}"
    r = await client.put(url, json={**P3_PROFILE, "version": 2}, headers=h)
    assert r.status_code == 200 and r.json()["version"] == 2
    r = await client.put(url, json={"birth_date": "1990-01-01", "version": 1}, headers=h)  # late, older
    assert r.status_code == 200 and r.json()["birth_date"] == "1946-03-01" and r.json()["version"] == 2
    assert (await client.delete(url, params={"version": 3}, headers=h)).status_code == 204
    assert (await client.get(url, headers=h)).status_code == 404
    assert (await client.put(url, json={**P3_PROFILE, "version": 2}, headers=h)).json()["removed"] is True
    assert (await client.get(url, headers=h)).status_code == 404
    row = await submitted(client, (await submit(client, auth, who=RES3)).json()["id"])
    assert row.data["requester_id"] == P3 and "requester_age" not in row.data and "groups" not in row.data
    r = await client.put(url, json={**P3_PROFILE, "version": 4}, headers=h)
    assert r.status_code == 200 and r.json()["removed"] is False
    assert (await client.get(url, headers=h)).json()["birth_date"] == "1946-03-01"
    # bad versions: problem+json naming the field, Chinese first
    r = await client.put(url, json={**P3_PROFILE, "version": 0}, headers=h)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].endswith("version") for e in r.json()["errors"])
    r = await client.delete(url, params={"version": "x"}, headers=h)
    assert r.status_code == 422 and any(e["field"].endswith("version") for e in r.json()["errors"])
