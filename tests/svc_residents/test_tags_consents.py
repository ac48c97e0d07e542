"""Special-group tags (source, verification, validity), consent records, accessibility and channel."""
from __future__ import annotations

from sqlalchemy import select

from tests.svc_residents.conftest import P

BASE = "/residents/v1/persons"


async def _events(client, type_):
    from svc_residents.models import OutboxEvent

    async with client.app.state.db.session() as s:
        return list((await s.execute(select(OutboxEvent).where(OutboxEvent.type == type_)
                                     .order_by(OutboxEvent.id))).scalars())


async def test_seeded_tags_and_preferences(seeded, as_):
    r = await seeded.get(f"{BASE}/{P('P7')}", headers=as_("staff2"))
    p = r.json()
    tags = {t["code"]: t for t in p["tags"]}
    assert set(tags) == {"elderly", "very_old", "dibao"}
    assert tags["dibao"]["source"] == "department" and tags["dibao"]["source_department"] == "minzheng"
    assert tags["dibao"]["verified"] and tags["dibao"]["verified_at"] and tags["dibao"]["label"] == "低保"
    assert not tags["elderly"]["verified"] and tags["elderly"]["verified_at"] is None
    assert p["preferred_channel"] == "phone" and p["accessibility_needs"] == ["large_font", "voice"]


async def test_staff_tags_verify_and_expire(seeded, as_):
    url = f"{BASE}/{P('P4')}/tags/low_income"
    body = {"code": "low_income", "source": "department", "source_department": "minzheng", "verified": True,
            "verified_at": "2026-01-10T09:00:00+08:00", "valid_until": "2099-12-31T00:00:00+08:00"}
    r = await seeded.put(url, json=body, headers=as_("staff1"))
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["verified"] and t["verified_at"].startswith("2026-01-10T01:00:00") and t["active"]
    assert t["recorded_by"].endswith("/staff1")
    tagged, verified = await _events(seeded, "person.tagged"), await _events(seeded, "person.verified")
    assert tagged[-1].subject == P("P4") and tagged[-1].data["code"] == "low_income"
    assert verified[-1].data == {"code": "low_income", "source": "department", "department": "minzheng"}
    n_verified = len(verified)
    # re-recording the same verified tag is no new verification
    r = await seeded.put(url, json=body, headers=as_("staff1"))
    assert r.status_code == 200 and len(await _events(seeded, "person.verified")) == n_verified
    # a resident's self-declaration cannot replace a verified tag (nor can their proxy's)
    r = await seeded.put(f"{BASE}/{P('P3')}/tags/dibao", headers=as_("staff1"),
                         json={"code": "dibao", "source": "staff", "verified": True})
    assert r.status_code == 200
    r = await seeded.put(f"{BASE}/{P('P3')}/tags/dibao", headers=as_("proxy1"), json={"code": "dibao", "source": "self"})
    assert r.status_code == 409 and r.json()["code"] == "tag.already_verified"
    # an expired tag is shown inactive and does not match a tag search
    r = await seeded.put(f"{BASE}/{P('P4')}/tags/tekun", headers=as_("staff1"), json={
        "code": "tekun", "source": "staff", "verified": True, "verified_at": "2020-01-01T00:00:00Z",
        "valid_until": "2021-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["active"] is False
    r = await seeded.get(BASE, params={"tag": "tekun"}, headers=as_("staff1"))
    assert r.json()["items"] == []
    r = await seeded.get(BASE, params={"tag": "low_income"}, headers=as_("staff1"))
    assert [p["id"] for p in r.json()["items"]] == [P("P4")]
    # removal
    r = await seeded.delete(f"{BASE}/{P('P4')}/tags/tekun", headers=as_("grid1"))
    assert r.status_code == 404  # P4 lies outside grid1
    r = await seeded.delete(f"{BASE}/{P('P4')}/tags/tekun", headers=as_("staff1"))
    assert r.status_code == 204
    assert (await _events(seeded, "person.tagged"))[-1].data["removed"] is True
    r = await seeded.delete(f"{BASE}/{P('P4')}/tags/tekun", headers=as_("staff1"))
    assert r.status_code == 404 and r.json()["code"] == "tag.not_found"


async def test_tag_bad_input(seeded, as_):
    h = as_("staff1")
    url = f"{BASE}/{P('P4')}/tags/dibao"
    r = await seeded.put(url, headers=h, json={"code": "dibao", "source": "staff", "verified": True,
                                               "verified_at": "2026-05-01T00:00:00Z",
                                               "valid_until": "2026-04-30T23:59:59Z"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "valid_until"
    r = await seeded.put(url, headers=h, json={"code": "dibao", "source": "department"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "source_department"
    r = await seeded.put(url, headers=h, json={"code": "dibao", "source": "staff", "verified_at": "2026-05-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "verified_at"
    r = await seeded.put(url, headers=h, json={"code": "dibao", "source": "staff", "valid_until": "2026-05-01T00:00:00"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "valid_until"  # no UTC offset
    r = await seeded.put(url, headers=h, json={"code": "elderly", "source": "staff"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "code"
    r = await seeded.put(f"{BASE}/{P('P4')}/tags/rich", headers=h, json={"code": "dibao", "source": "staff"})
    assert r.status_code == 422
    # a verified tag whose valid_until falls before the (defaulted) verification time
    r = await seeded.put(url, headers=h, json={"code": "dibao", "source": "staff", "verified": True,
                                               "valid_until": "2020-01-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "valid_until"
    r = await seeded.get(f"{BASE}/{P('P4')}", headers=h)
    assert "dibao" not in {t["code"] for t in r.json()["tags"]}


async def test_self_declared_tags(seeded, as_):
    r = await seeded.put(f"{BASE}/{P('P3')}/tags/disabled", headers=as_("proxy1"),
                         json={"code": "disabled", "source": "self", "note": "代办员代为申报"})
    assert r.status_code == 200 and r.json()["source"] == "self" and not r.json()["verified"]
    r = await seeded.put(f"{BASE}/{P('P3')}/tags/disabled", headers=as_("resident3"),
                         json={"code": "disabled", "source": "staff", "verified": True})
    assert r.status_code == 403 and r.json()["code"] == "tag.self_only"
    r = await seeded.delete(f"{BASE}/{P('P3')}/tags/living_alone", headers=as_("resident3"))
    assert r.status_code == 403  # entered by staff
    r = await seeded.delete(f"{BASE}/{P('P3')}/tags/disabled", headers=as_("resident3"))
    assert r.status_code == 204


async def test_consents_are_append_only_per_purpose(seeded, as_):
    url = f"{BASE}/{P('P3')}/consents"
    r = await seeded.post(url, headers={**as_("proxy1"), "Idempotency-Key": "c1"},
                          json={"purpose": "data_sharing", "granted": True, "channel": "kiosk"})
    assert r.status_code == 201, r.text
    assert r.json()["recorded_role"] == "proxy" and r.json()["recorded_by"].endswith("/proxy1")
    r = await seeded.post(url, headers=as_("staff1"), json={"purpose": "data_sharing", "granted": False,
                                                           "channel": "counter", "note": "本人到窗口撤回"})
    assert r.status_code == 201
    r = await seeded.post(url, headers=as_("resident3"), json={"purpose": "contact", "granted": True, "channel": "app"})
    assert r.status_code == 201
    r = await seeded.post(url, headers=as_("resident3"), json={"purpose": "marketing", "granted": True, "channel": "app"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "purpose"
    r = await seeded.get(url, headers=as_("resident3"))
    assert [(c["purpose"], c["granted"], c["channel"]) for c in r.json()] == [
        ("data_sharing", True, "kiosk"), ("data_sharing", False, "counter"), ("contact", True, "app")]
    r = await seeded.post(url, headers=as_("resident1"), json={"purpose": "contact", "granted": True, "channel": "app"})
    assert r.status_code == 404
