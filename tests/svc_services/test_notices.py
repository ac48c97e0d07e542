"""Public notices (公示, issue 28): fund lines that must add up to their totals (Decimal yuan), the publication
window, public reads without a token, objections only in the objection period and by residents of the scope,
answered by staff; a withdrawn notice leaves the public list and stays in the history."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from common.clock import FrozenClock
from svc_services.base import OutboxEvent
from svc_services.disclosure.models import Objection, PublicNotice

XF, AK = "110105001001", "110105001002"
BUILDING = XF + "001001"
START = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
async def svc(service_client, auth):
    c = await service_client("svc_services", sla_scan_enabled=False)
    c.app.state.clock = FrozenClock(START)
    ops = auth(role="ops", user="ops1")
    for pid, building in (("p-1", BUILDING), ("p-9", AK + "001001")):
        r = await c.put(f"/services/v1/deliberation/electors/{pid}", headers=ops,
                        json={"building_code": building, "household_id": f"h-{pid}", "household_head": True})
        assert r.status_code == 200, r.text
    return c


def staff(auth, community=XF):
    return auth(role="community_staff", scopes=[f"community:{community}"], user="staff1")


def fund(**over):
    now = START
    return {"kind": "fund", "title": "2026年第三季度公益金收支公示", "body": "收支明细如下。", "scope_code": XF,
            "publish_from": now.isoformat(), "publish_until": (now + timedelta(days=15)).isoformat(),
            "objection_until": (now + timedelta(days=7)).isoformat(),
            "lines": [{"direction": "income", "item": "上级拨款", "amount": "20000.00"},
                      {"direction": "income", "item": "社会捐赠", "amount": "1500.50"},
                      {"direction": "expense", "item": "楼道照明维修", "amount": "3200.25"}],
            "income_total": "21500.50", "expense_total": "3200.25", **over}


async def counts(c):
    async with c.app.state.db.session() as s:
        return tuple([(await s.execute(select(func.count()).select_from(m))).scalar_one()
                      for m in (PublicNotice, Objection, OutboxEvent)])


async def test_fund_lines_must_add_up_and_nothing_is_written_otherwise(svc, auth):
    before = await counts(svc)
    for over, field in (({"income_total": "21500.49"}, "income_total"), ({"expense_total": "3200.3"}, "expense_total"),
                        ({"expense_total": None}, "expense_total"), ({"lines": []}, "lines")):
        r = await svc.post("/services/v1/notices", headers=staff(auth), json=fund(**over))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    r = await svc.post("/services/v1/notices", headers=staff(auth), json=fund(
        lines=[{"direction": "income", "item": "x", "amount": "1.005"}], income_total="1.005", expense_total="0"))
    assert r.status_code == 422   # more than two decimal places (分)
    r = await svc.post("/services/v1/notices", headers=staff(auth, AK), json=fund())
    assert r.status_code == 403   # another community's staff
    assert await counts(svc) == before
    r = await svc.post("/services/v1/notices", headers=staff(auth), json=fund())
    assert r.status_code == 201, r.text
    assert (r.json()["income_total"], r.json()["expense_total"]) == ("21500.50", "3200.25")


async def test_public_reads_objections_answers_and_withdrawal(svc, auth):
    n = (await svc.post("/services/v1/notices", headers=staff(auth), json=fund())).json()
    later = (await svc.post("/services/v1/notices", headers=staff(auth), json=fund(
        kind="policy", lines=[], income_total=None, expense_total=None,
        publish_from=(START + timedelta(days=1)).isoformat(), objection_until=None))).json()
    public = (await svc.get("/services/v1/public/notices")).json()["items"]   # no token at all
    assert [x["id"] for x in public] == [n["id"]]   # the later one is not public before its window
    assert (await svc.get(f"/services/v1/public/notices/{later['id']}")).status_code == 404
    assert (await svc.get(f"/services/v1/notices/{later['id']}", headers=staff(auth))).status_code == 200
    resident = auth(role="resident", scopes=["person:p-1"], user="u1")
    outsider = auth(role="resident", scopes=["person:p-9"], user="u9")
    before = await counts(svc)
    r = await svc.post(f"/services/v1/notices/{n['id']}/objections", headers=outsider, json={"text": "不是本社区"})
    assert r.status_code == 403
    assert await counts(svc) == before
    o = await svc.post(f"/services/v1/notices/{n['id']}/objections", headers=resident, json={"text": "维修费偏高"})
    assert o.status_code == 201, o.text
    mine = (await svc.get(f"/services/v1/notices/{n['id']}/objections", headers=resident)).json()
    assert [x["answer"] for x in mine] == [None]
    r = await svc.post(f"/services/v1/notices/{n['id']}/objections/{o.json()['id']}/answer", headers=staff(auth),
                       json={"answer": "已附三家比价单，详见社区公告栏。"})
    assert r.status_code == 200 and r.json()["answered_at"]
    again = await svc.post(f"/services/v1/notices/{n['id']}/objections/{o.json()['id']}/answer", headers=staff(auth),
                           json={"answer": "再次答复"})
    assert again.status_code == 409
    svc.app.state.clock.advance(days=8)   # the objection period is over
    late = await svc.post(f"/services/v1/notices/{n['id']}/objections", headers=resident, json={"text": "迟到的异议"})
    assert (late.status_code, late.json()["code"]) == (409, "objection.closed")
    w = await svc.post(f"/services/v1/notices/{n['id']}/withdraw", headers=staff(auth), json={"reason": "数据更正"})
    assert w.json()["status"] == "withdrawn"
    ids = [x["id"] for x in (await svc.get("/services/v1/public/notices")).json()["items"]]
    assert n["id"] not in ids and later["id"] in ids
    history = (await svc.get("/services/v1/public/notices", params={"history": "true", "scope": BUILDING})).json()
    assert {x["id"]: x["status"] for x in history["items"]}[n["id"]] == "withdrawn"
    async with svc.app.state.db.session() as s:
        kinds = (await s.execute(select(OutboxEvent.type).where(OutboxEvent.type.like("public_notice.%")))).scalars()
        assert sorted(kinds) == ["public_notice.objection_answered", "public_notice.objection_filed",
                                 "public_notice.published", "public_notice.published", "public_notice.withdrawn"]
    listed = (await svc.get("/services/v1/notices", headers=resident)).json()["items"]
    assert {x["id"] for x in listed} == {n["id"], later["id"]}


async def test_each_kind_is_published_with_its_kind_and_only_funds_carry_lines(svc, auth):
    """政策、服务清单、人员配置 notices publish without lines (lines are refused, nothing written); each publication is
    a public_notice.published event naming its kind (svc_metrics counts notices per kind from it)."""
    plain = {"lines": [], "income_total": None, "expense_total": None, "objection_until": None}
    before = await counts(svc)
    r = await svc.post("/services/v1/notices", headers=staff(auth), json=fund(kind="service_list"))
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "lines")
    assert await counts(svc) == before
    for kind in ("policy", "service_list", "staffing"):
        r = await svc.post("/services/v1/notices", headers=staff(auth), json=fund(kind=kind, **plain))
        assert (r.status_code, r.json()["kind"], r.json()["lines"]) == (201, kind, []), r.text
    async with svc.app.state.db.session() as s:
        rows = (await s.execute(select(OutboxEvent.data).where(OutboxEvent.type == "public_notice.published"))).scalars()
        assert sorted(d["kind"] for d in rows) == ["policy", "service_list", "staffing"]
