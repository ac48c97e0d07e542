"""KPI table, rebuild equivalence, target overrides, scope checks and exports."""
from __future__ import annotations

import csv
import io
import random
from datetime import timedelta

from openpyxl import load_workbook

from tests.conftest import METRICS_AUTH
from tests.svc_metrics.conftest import C1, C2, G1, G2, G3, T0, ev, request_flow

H = timedelta(hours=1)


def mixed_events(seed: int = 3) -> list[dict]:
    rnd = random.Random(seed)
    events = []
    for i in range(30):
        grid = rnd.choice([G1, G2, G3])
        steps = {"accepted": rnd.randint(1, 30) * H}
        if rnd.random() < 0.7:
            steps["resolved"] = steps["accepted"] + rnd.randint(1, 60) * H
            steps["rated"] = steps["resolved"] + H
        events += request_flow(f"r{i}", T0 + timedelta(days=rnd.randint(0, 40)), grid=grid,
                               category=rnd.choice(["grid_event", "government", "dispute"]),
                               channel=rnd.choice(["app", "counter", "grid_patrol"]), due=48 * H,
                               rating=rnd.randint(1, 5), steps=steps)
    for i in range(10):
        events.append(ev("need.created", T0 + timedelta(days=i), f"n{i}", grid=G1, category="meal"))
        if i % 2:
            events.append(ev("offer.accepted", T0 + timedelta(days=i, hours=3), f"o{i}", grid=G1, need_id=f"n{i}"))
    events += [ev("person.registered", T0, f"p{i}", grid=G2, age_band="70+") for i in range(8)]
    events += [ev("participation.recorded", T0 + timedelta(days=i), None, grid=G2, person_id=f"p{i}") for i in range(3)]
    rnd.shuffle(events)
    return events


async def table(client, ops, **params):
    r = await client.get("/metrics/v1/kpis", params={"period": "2026-Q1", **params}, headers=ops)
    assert r.status_code == 200, r.text
    return r.json()


async def test_rebuild_from_event_store_gives_the_same_numbers(client, ops, post):
    events = mixed_events()
    for i in range(0, len(events), 17):
        await post(events[i:i + 17])
    before = {s: await table(client, ops, scope=s) for s in ("all", C1, G2)}
    r = await client.post("/metrics/v1/rebuild", headers=ops)
    assert r.status_code == 200 and r.json()["entities"] > 40
    after = {s: await table(client, ops, scope=s) for s in ("all", C1, G2)}
    assert after == before
    values = {i["code"]: i["value"] for i in before["all"]["items"]}
    assert values["response_time"] is not None and values["match_rate"] == 50.0


async def test_kpi_table_lists_every_indicator_with_status(client, ops, post):
    await post(request_flow("a", T0, due=48 * H, rating=5, steps={"accepted": H, "resolved": 2 * H, "rated": 3 * H}))
    body = await table(client, ops, period="2026-03")
    assert body["period"] == "2026-03" and len(body["items"]) == 30
    item = next(i for i in body["items"] if i["code"] == "on_time_rate")
    assert (item["value"], item["status"], item["status_zh"]) == (100.0, "met", "达标")
    empty = next(i for i in body["items"] if i["code"] == "match_rate")
    assert empty["value"] is None and empty["status"] is None


async def test_target_override_per_scope(client, ops, auth, post):
    await post(request_flow("a", T0, grid=G1, steps={"accepted": 10 * H})
               + request_flow("b", T0, grid=G3, steps={"accepted": 10 * H}))
    r = await client.put(f"/metrics/v1/kpis/response_time/targets/{C1}", headers=ops,
                         json={"value": 8, "source": "朝阳区2026年考核办法", "note": "社区自定"})
    assert r.status_code == 200 and r.json()["value"] == 8
    # The community and its grids get 8 h; the other community keeps the catalogue's 12 h.
    for scope, target, status in ((C1, 8, "missed"), (G1, 8, "missed"), (C2, 12, "met"), ("all", 12, "met")):
        k = (await client.get("/metrics/v1/kpis/response_time", params={"scope": scope, "period": "2026-03"},
                              headers=ops)).json()
        assert (k["target"]["value"], k["status"]) == (target, status), scope
    listed = (await client.get("/metrics/v1/targets", headers=ops)).json()["items"]
    assert [(t["code"], t["scope"]) for t in listed] == [("response_time", C1)]
    # Street staff may set targets only inside their street; evaluators not at all.
    street = auth(role="street_staff", scopes=["street:110105002"])
    r = await client.put(f"/metrics/v1/kpis/response_time/targets/{C1}", headers=street, json={"value": 1, "source": "x"})
    assert r.status_code == 403
    r = await client.put(f"/metrics/v1/kpis/response_time/targets/{C1}", headers=auth(role="evaluator"),
                         json={"value": 1, "source": "x"})
    assert r.status_code == 403
    r = await client.put("/metrics/v1/kpis/nope/targets/all", headers=ops, json={"value": 1, "source": "x"})
    assert r.status_code == 404


async def test_staff_see_only_their_scope(client, auth):
    staff = auth(role="community_staff", scopes=[f"community:{C1}"])
    assert (await client.get("/metrics/v1/kpis", params={"scope": C1}, headers=staff)).status_code == 200
    assert (await client.get("/metrics/v1/kpis", params={"scope": G1}, headers=staff)).status_code == 200
    assert (await client.get("/metrics/v1/kpis", params={"scope": C2}, headers=staff)).status_code == 403
    assert (await client.get("/metrics/v1/kpis", params={"scope": "all"}, headers=staff)).status_code == 403
    assert (await client.get("/metrics/v1/kpis", headers=auth(role="evaluator"))).status_code == 200
    scoped_eval = auth(role="evaluator", scopes=["district:110105"])
    assert (await client.get("/metrics/v1/kpis", params={"scope": C2}, headers=scoped_eval)).status_code == 200
    assert (await client.get("/metrics/v1/kpis", params={"scope": "110106"}, headers=scoped_eval)).status_code == 403
    assert (await client.get("/metrics/v1/kpis", headers=auth(role="resident"))).status_code == 403
    r = await client.get("/metrics/v1/kpis", params={"scope": "12345"}, headers=auth(role="ops"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "scope"
    r = await client.get("/metrics/v1/kpis", params={"period": "March"}, headers=auth(role="ops"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "period"


async def test_csv_and_xlsx_exports_match_json(client, ops, post):
    await post(request_flow("a", T0, steps={"accepted": 3 * H}))
    body = await table(client, ops, period="2026-03")
    expected = next(i for i in body["items"] if i["code"] == "response_time")["value"]
    r = await client.get("/metrics/v1/kpis", params={"period": "2026-03", "format": "csv"}, headers=ops)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[1][0] == "指标代码 code" and len(rows) == 2 + 30
    row = next(x for x in rows if x[0] == "response_time")
    assert row[1] == "平均响应时间" and float(row[4]) == expected
    r = await client.get("/metrics/v1/kpis", params={"period": "2026-03", "format": "xlsx"}, headers=ops)
    ws = load_workbook(io.BytesIO(r.content)).active
    xrow = next(row for row in ws.iter_rows(values_only=True) if row[0] == "response_time")
    assert xrow[4] == expected
    r = await client.get("/metrics/v1/kpis/response_time", params={"period": "2026-03", "format": "csv"}, headers=ops)
    assert r.status_code == 200 and "response_time" in r.content.decode("utf-8-sig")


async def test_seed_loads_the_catalogue_idempotently(client):
    from sqlalchemy import func, select

    from svc_metrics.kpis.models import KpiDefinition
    from svc_metrics.seed import seed_demo

    db = client.app.state.db
    await seed_demo(db)
    await seed_demo(db)
    async with db.session() as s:
        assert (await s.execute(select(func.count()).select_from(KpiDefinition))).scalar_one() == 30


async def test_platform_gauges_on_metrics(client, ops, post):
    from svc_metrics.gauges import refresh

    await post(request_flow("open", T0, due=48 * H) + request_flow("done", T0, due=48 * H, steps={"resolved": H}))
    assert await refresh(client.app) == (1, 1)
    text = (await client.get("/metrics", headers=METRICS_AUTH)).text
    assert "onenet_platform_overdue_requests 1.0" in text and "onenet_platform_open_requests 1.0" in text
    assert 'onenet_platform_event_arrival_lag_seconds{source="test"}' in text


async def test_catalogue_carries_the_kiosk_wait_and_the_001_match_baseline_as_data(client, ops):
    items = {i["code"]: i for i in (await client.get("/metrics/v1/catalogue", headers=ops)).json()["items"]}
    kiosk = [t for t in items["errand_time"]["targets"] if t.get("channel") == "kiosk"]
    assert kiosk == [{"value": 5, "source": "004", "channel": "kiosk", "measure": "kiosk_wait",
                      "note": "自助终端办事平均等待时间 40 分钟 → 5 分钟（004）", "baseline": {"value": 40, "source": "004"}}]
    match = {t["source"]: t for t in items["match_rate"]["targets"]}
    assert match["001"]["value"] == 90 and match["001"]["baseline"]["value"] == 61.3
    assert match["001"]["baseline"]["source"] == "001" and match["004"]["baseline"] == {"value": 35, "source": "004"}
    assert "note" not in match["001"]


async def test_kiosk_channel_is_judged_against_the_kiosk_wait_target(client, ops, post, kpi):
    await post(request_flow("k1", T0, category="government", channel="kiosk", steps={"resolved": timedelta(minutes=8)})
               + request_flow("c1", T0, category="government", channel="counter",
                              steps={"resolved": timedelta(minutes=20)}))
    kiosk = await kpi("errand_time", channel="kiosk")
    assert kiosk["value"] == 8.0 and kiosk["target"]["value"] == 5 and kiosk["target"]["source"] == "004"
    assert kiosk["target"]["baseline"]["value"] == 40 and kiosk["status"] == "missed"
    overall = await kpi("errand_time")
    assert overall["value"] == 14.0 and overall["target"]["value"] == 30 and overall["status"] == "met"
