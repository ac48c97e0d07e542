"""Done when (issue 29): a quarterly satisfaction survey runs end to end through the gateway — publish → invite →
respond through the app, the kiosk and a household visit → close → results → KPI and rectification — and the
needs it collects reach svc_matching through svc_metrics' survey_need. feed; svc_metrics on both databases."""
from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest
from sqlalchemy import select

from common.keys import jwks_document, load_signing_keys
from common.outbox import OutboxRelay, TypeFilter
from common.outbox_senders import FeedSender
from svc_matching.people.models import Need
from svc_metrics.base import OutboxEvent
from tests.conftest import gateway_auth, migrate_database, start_service
from tests.svc_metrics.test_surveys import PEOPLE, questionnaire

C1 = "110105001001"
G1 = C1 + "001"


@pytest.fixture
async def gw(db_url, tmp_path):
    from gateway.app import create_app
    from gateway.seed import seed_demo
    from gateway.settings import GatewaySettings

    async with AsyncExitStack() as stack:
        jwks = jwks_document(load_signing_keys(tmp_path / "keys"))
        metrics = await start_service(stack, "svc_metrics", db_url, jwks)
        matching = await start_service(stack, "svc_matching", f"sqlite+aiosqlite:///{tmp_path}/matching.db", jwks,
                                       offer_sweeper_enabled=False)
        url = f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
        await migrate_database("gateway", url)
        settings = GatewaySettings(database_url=url, keys_dir=tmp_path / "keys", outbox_relay_enabled=False,
                                   rate_limit_enabled=False, catalogue_from_openapi=False, upstream_retries=0)
        app = create_app(settings, transports={"metrics": httpx.ASGITransport(app=metrics.app),
                                               "matching": httpx.ASGITransport(app=matching.app)})
        await seed_demo(app.state.db)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = await stack.enter_async_context(httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                                   base_url="http://gw"))

        def h(role, user, scopes=(), member="portal", **kw):
            tok = app.state.token_issuer.issue(subject=user, member=member, role=role, scopes=list(scopes), **kw)
            return {"Authorization": f"Bearer {tok['access_token']}"}

        client.h, client.metrics, client.matching, client.direct = h, metrics.app, matching.app, metrics
        yield client


async def test_quarterly_survey_through_the_gateway(gw):
    h = gw.h
    staff = h("community_staff", "staff1", [f"community:{C1}"])
    ops = h("ops", "ops1")
    now = gw.metrics.state.clock.now()
    # svc_metrics knows residents from svc_residents' person events (its relay delivers them straight to svc_metrics)
    events = [{"event_id": f"pr-{pid}", "type": "person.registered", "occurred_at": now.isoformat(),
               "source": "svc_residents", "community": g[:12], "grid": g, "subject": pid, "data": {"age_band": band}}
              for pid, g, band, _ in PEOPLE]
    r = await gw.direct.post("/metrics/v1/events", json={"events": events},
                             headers=h("system", "svc_residents", member="svc_residents"))
    assert r.status_code == 200, r.text
    quarter = f"{now.year}-Q{(now.month - 1) // 3 + 1}"   # the quarter of the platform clock, whatever the date
    r = await gw.post("/metrics/v1/surveys", headers=staff, json={
        "title": "季度居民满意度测评", "kind": "satisfaction", "anonymous": True, "scope": C1, "period": quarter,
        "questionnaire": questionnaire(), "sample": {"mode": "stratified", "size": 10, "seed": 2026}})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    r = await gw.post(f"/metrics/v1/surveys/{sid}/transitions", headers=staff, json={"action": "publish", "version": 1})
    assert r.status_code == 200, r.text
    r = await gw.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)
    assert r.status_code == 201 and r.json()["invited"] == 10, r.text
    invited = (await gw.get(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)).json()["items"]
    people = [i["person_id"] for i in invited]
    assert len(people) == 10
    # … and told through svc_residents' notification channels: the notice. rows name exactly the sample, no token
    # (test_surveys_notices.py follows them into the inbox)
    async with gw.metrics.state.db.session() as s:
        told = [p for r in (await s.execute(select(OutboxEvent).where(OutboxEvent.type == "notice.survey.invited")))
                .scalars() for p in r.data["person_ids"]]
    assert sorted(told) == sorted(people)
    kiosk = h("system", "kiosk", member="kiosk")
    grid1 = h("grid_worker", "grid1", [f"grid:{G1}"])
    by_channel = {}
    for k, inv in enumerate(invited):
        me = h("resident", f"u-{inv['person_id']}", [f"person:{inv['person_id']}"])
        channel = ("app", "kiosk", "visit")[k % 3] if inv["grid"] == G1 else ("app", "kiosk")[k % 2]
        if channel == "visit":
            tok = (await gw.post(f"/metrics/v1/surveys/{sid}/invitations/token", headers=grid1,
                                 json={"invitation_id": inv["id"]})).json()["token"]
        else:
            tok = (await gw.post(f"/metrics/v1/surveys/{sid}/invitations/token", headers=me, json={})).json()["token"]
        who = {"app": me, "kiosk": kiosk, "visit": grid1}[channel]
        r = await gw.post(f"/metrics/v1/surveys/{sid}/responses", headers=who, json={
            "token": tok, "channel": channel, "answers": {"overall": 5 if k < 3 else 2, "used": "no",
                                                          "needs": ["elderly_care"]}})
        assert r.status_code == 201, r.text
        by_channel[channel] = by_channel.get(channel, 0) + 1
    assert set(by_channel) == {"app", "kiosk", "visit"}
    version = (await gw.get(f"/metrics/v1/surveys/{sid}", headers=staff)).json()["version"]
    r = await gw.post(f"/metrics/v1/surveys/{sid}/transitions", headers=staff, json={"action": "close",
                                                                                   "version": version})
    assert r.status_code == 200 and r.json()["status"] == "closed", r.text

    res = (await gw.get(f"/metrics/v1/surveys/{sid}/results", params={"by": "channel"}, headers=staff)).json()
    assert (res["invited"], res["respondents"], res["response_rate"]) == (10, 10, 100.0)
    overall = next(q for q in res["questions"] if q["key"] == "overall")
    assert overall["satisfied_rate"] == 30.0
    assert sum(g["respondents"] for g in res["groups"]) == 10
    assert all(g["shown"] == (g["respondents"] >= 5) for g in res["groups"])
    kpi = (await gw.get("/metrics/v1/kpis/satisfaction_rate", params={"period": quarter, "scope": C1},
                        headers=ops)).json()
    assert kpi["by_source"]["survey"]["value"] == 30.0 and kpi["by_source"]["ratings"]["count"] == 0
    cases = (await gw.get("/metrics/v1/rectifications", headers=staff)).json()["items"]
    assert [(c["scope"], c["evidence"]["source"]) for c in cases] == [(C1, "survey")]

    # the anonymous demand reaches svc_matching's gap report through the feed (delivered straight to
    # svc_matching with its assertion key, as the relay does: ADR 0013)
    sender = FeedSender("http://matching/matching/v1/survey_needs", lambda: _token(h),
                        transport=httpx.ASGITransport(app=gw.matching),
                        auth=gateway_auth(gw.matching.state.settings.gateway_assertion_key))
    relay = OutboxRelay(gw.metrics.state.db, OutboxEvent, source="svc_metrics", send=sender,
                        types=TypeFilter(include=("survey_need.",)), clock=gw.metrics.state.clock)
    assert await relay.run_once() == 1
    await sender.aclose()
    gaps = (await gw.get("/matching/v1/reports/gaps", params={"place_code": C1}, headers=staff)).json()
    assert gaps["survey_demand"] == [{"category": "elderly_care", "answers": 10, "surveys": 1}]


async def _token(h) -> str:
    return h("system", "svc_metrics", member="svc_metrics")["Authorization"].split(" ", 1)[1]


async def test_named_needs_become_needs_of_the_needs_list(gw):
    h = gw.h
    staff = h("community_staff", "staff1", [f"community:{C1}"])
    now = gw.metrics.state.clock.now()
    r = await gw.direct.post("/metrics/v1/events", headers=h("system", "svc_residents", member="svc_residents"),
                             json={"events": [{"event_id": "pr-n1", "type": "person.registered",
                                               "occurred_at": now.isoformat(), "source": "svc_residents",
                                               "community": C1, "grid": G1, "subject": "p-n1", "data": {}}]})
    assert r.status_code == 200, r.text
    r = await gw.post("/metrics/v1/surveys", headers=staff, json={
        "title": "入户需求调研", "kind": "needs", "anonymous": False, "scope": G1, "questionnaire": questionnaire()})
    sid = r.json()["id"]
    await gw.post(f"/metrics/v1/surveys/{sid}/transitions", headers=staff, json={"action": "publish", "version": 1})
    assert (await gw.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)).json()["invited"] == 1
    grid1 = h("grid_worker", "grid1", [f"grid:{G1}"])
    inv = (await gw.get(f"/metrics/v1/surveys/{sid}/invitations", headers=grid1)).json()["items"][0]
    tok = (await gw.post(f"/metrics/v1/surveys/{sid}/invitations/token", headers=grid1,
                         json={"invitation_id": inv["id"]})).json()["token"]
    r = await gw.post(f"/metrics/v1/surveys/{sid}/responses", headers=grid1, json={
        "token": tok, "channel": "visit", "answers": {"overall": 4, "used": "no", "needs": ["health", "legal"]}})
    assert r.status_code == 201 and r.json()["needs"] == ["health", "legal"], r.text
    sender = FeedSender("http://matching/matching/v1/survey_needs", lambda: _token(h),
                        transport=httpx.ASGITransport(app=gw.matching),
                        auth=gateway_auth(gw.matching.state.settings.gateway_assertion_key))
    relay = OutboxRelay(gw.metrics.state.db, OutboxEvent, source="svc_metrics", send=sender,
                        types=TypeFilter(include=("survey_need.",)), clock=gw.metrics.state.clock)
    assert await relay.run_once() == 1
    async with gw.matching.state.db.session() as s:
        needs = list((await s.execute(select(Need).order_by(Need.category))).scalars())
    assert [(n.category, n.person_id, n.source, n.place_code, n.status) for n in needs] == \
        [("health", "p-n1", "survey", G1, "open"), ("legal", "p-n1", "survey", G1, "open")]
    # delivered twice (a relay retry): still one need per category
    async with gw.metrics.state.db.session() as s:
        row = (await s.execute(select(OutboxEvent).where(OutboxEvent.type.like("survey_need.%")))).scalar_one()
    r = await sender._deliver({"subject": row.subject, "type": row.type, "data": row.data},
                              {"Authorization": f"Bearer {await _token(h)}"})
    assert r.status_code == 200 and len(r.json()["needs"]) == 2
    await sender.aclose()
    async with gw.matching.state.db.session() as s:
        assert len(list((await s.execute(select(Need))).scalars())) == 2
