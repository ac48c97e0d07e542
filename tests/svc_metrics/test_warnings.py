"""Early warnings: surge, overdue backlog, low satisfaction (rectification), low match rate, bottom 10%."""
from __future__ import annotations

from datetime import timedelta

from tests.svc_metrics.conftest import C1, C2, G1, G2, G3, NOW, ev, request_flow

H = timedelta(hours=1)
D = timedelta(days=1)


async def scan(client, ops, period=None):
    r = await client.post("/metrics/v1/warnings/scan", params={"period": period} if period else {}, headers=ops)
    assert r.status_code == 200, r.text
    return r.json()


async def test_surge_against_trailing_baseline(client, ops, post):
    events = []
    for d in range(1, 29, 7):   # four "noise" requests in the trailing 28 days: mean 1/7 per day
        events += request_flow(f"old{d}", NOW - d * D - H, grid=G1, category="city_management")
    for i in range(6):          # six in the last 24 h
        events += request_flow(f"new{i}", NOW - (i + 1) * H, grid=G1, category="city_management")
    for i in range(6):          # steady elsewhere: six a day every day is no surge
        for d in range(0, 29):
            events += request_flow(f"steady{i}-{d}", NOW - d * D - (i + 1) * H, grid=G2, category="life_service")
    await post(events[:900])
    await post(events[900:])
    body = await scan(client, ops)
    surges = [w for w in body["items"] if w["kind"] == "surge"]
    assert [(w["scope"], w["category"]) for w in surges] == [(G1, "city_management")]
    ev_ = surges[0]["evidence"]
    assert ev_["count_24h"] == 6 and ev_["baseline_daily_mean"] == round(4 / 28, 3)
    assert "网格" in surges[0]["title_zh"]
    # A second scan adds nothing.
    assert (await scan(client, ops))["created"] == 0


async def test_overdue_backlog_per_community(client, ops, post):
    events = []
    for i in range(5):
        events += request_flow(f"c1-{i}", NOW - 5 * D, grid=G1, due=48 * H)
    for i in range(4):
        events += request_flow(f"c2-{i}", NOW - 5 * D, grid=G3, due=48 * H)
    events += request_flow("c1-done", NOW - 5 * D, grid=G1, due=48 * H, steps={"resolved": 72 * H})
    await post(events)
    body = await scan(client, ops)
    backlog = [w for w in body["items"] if w["kind"] == "overdue_backlog"]
    assert [(w["scope"], w["evidence"]["open_overdue"]) for w in backlog] == [(C1, 5)]


async def test_low_satisfaction_opens_rectification_and_low_match(client, ops, post):
    events = []
    for i, r in enumerate([5, 2, 3, 4, 1]):        # C1: 2 of 5 satisfied = 40%
        events += request_flow(f"a{i}", NOW - 10 * D, grid=G1, rating=r, steps={"rated": H})
    for i, r in enumerate([5, 5, 4, 4, 3]):        # C2: 80%, not below the floor
        events += request_flow(f"b{i}", NOW - 10 * D, grid=G3, rating=r, steps={"rated": H})
    events += [ev("need.created", NOW - 10 * D, "n1", grid=G1, category="meal"),
               ev("need.created", NOW - 10 * D, "n2", grid=G1, category="meal"),
               ev("offer.accepted", NOW - 9 * D, "o1", grid=G1, need_id="n1")]
    await post(events)
    body = await scan(client, ops, period="2026-Q2")
    by_kind = {}
    for w in body["items"]:
        by_kind.setdefault(w["kind"], []).append(w)
    sat = by_kind["low_satisfaction"]
    assert [(w["scope"], w["rectification"], w["evidence"]["satisfaction_rate"]) for w in sat] == [(C1, True, 40.0)]
    assert [(w["scope"], w["evidence"]["match_rate"]) for w in by_kind["low_match"]] == [(C1, 50.0)]
    bottom = by_kind["bottom_decile"]
    assert [w["scope"] for w in bottom] == [C1] and bottom[0]["evidence"]["communities"] == 2


async def test_list_scope_and_acknowledge(client, ops, auth, post):
    events = []
    for i, r in enumerate([1, 1, 1]):
        events += request_flow(f"a{i}", NOW - 10 * D, grid=G1, rating=r, steps={"rated": H})
        events += request_flow(f"b{i}", NOW - 10 * D, grid=G3, rating=r, steps={"rated": H})
    await post(events)
    await scan(client, ops, period="2026-Q2")
    staff1 = auth(role="community_staff", user="staff1", scopes=[f"community:{C1}"])
    mine = (await client.get("/metrics/v1/warnings", params={"kind": "low_satisfaction"}, headers=staff1)).json()["items"]
    assert [w["scope"] for w in mine] == [C1]
    everyone = (await client.get("/metrics/v1/warnings", params={"kind": "low_satisfaction"}, headers=ops)).json()["items"]
    assert {w["scope"] for w in everyone} == {C1, C2}
    other = next(w for w in everyone if w["scope"] == C2)
    r = await client.post(f"/metrics/v1/warnings/{other['id']}/acknowledge", json={}, headers=staff1)
    assert r.status_code == 404
    r = await client.post(f"/metrics/v1/warnings/{mine[0]['id']}/acknowledge", json={"note": "已约谈网格员，本周回访"},
                          headers=staff1)
    assert r.status_code == 200 and r.json()["status"] == "acknowledged" and r.json()["acknowledged_by"].endswith("staff1")
    r = await client.post(f"/metrics/v1/warnings/{mine[0]['id']}/acknowledge", json={}, headers=staff1)
    assert r.status_code == 409
    open_ = (await client.get("/metrics/v1/warnings", params={"status": "open", "kind": "low_satisfaction"},
                              headers=ops)).json()["items"]
    assert [w["scope"] for w in open_] == [C2]


async def test_background_scan_runs_on_its_interval(client, post):
    import asyncio

    from sqlalchemy import select

    from svc_metrics.alerts.models import Warning_
    from svc_metrics.alerts.service import scan_loop

    events = []
    for i, r in enumerate([1, 1, 2]):
        events += request_flow(f"a{i}", NOW - 10 * D, grid=G1, rating=r, steps={"rated": H})
    await post(events)
    client.app.state.settings.warning_scan_seconds = 0.05
    stop = asyncio.Event()
    task = asyncio.create_task(scan_loop(client.app, stop))
    await asyncio.sleep(0.4)
    stop.set()
    await task
    async with client.app.state.db.session() as s:
        kinds = set((await s.execute(select(Warning_.kind))).scalars())
    assert "low_satisfaction" in kinds


async def test_an_overdue_resolution_task_warns_its_topics_community_once(client, ops, post):
    """落实监督: svc_services' scan says a task is overdue (deliberation.task_overdue, once); svc_metrics opens one
    warning per task, scoped to the topic's community; a task done before the scan, or a second scan, adds none."""
    def task(type_, at, task_id, topic, grid, **data):
        return ev(type_, at, topic, grid=grid, task_id=task_id, **data)

    await post([task("deliberation.task_overdue", NOW - 2 * D, "k1", "t1", G1, owner_kind="department",
                     due_at=(NOW - 3 * D).isoformat()),
                task("deliberation.task_overdue", NOW - 2 * D, "k2", "t2", G3, owner_kind="provider"),
                task("deliberation.task_done", NOW - D, "k2", "t2", G3, on_time=False),
                task("deliberation.task_done", NOW - D, "k3", "t3", G1, on_time=True)])
    body = await scan(client, ops)
    late = [w for w in body["items"] if w["kind"] == "task_overdue"]
    assert [(w["scope"], w["evidence"]["task_id"], w["evidence"]["topic_id"], w["evidence"]["owner_kind"])
            for w in late] == [(C1, "k1", "t1", "department")]
    assert "逾期" in late[0]["title_zh"]
    assert (await scan(client, ops))["created"] == 0
