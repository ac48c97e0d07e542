"""Contract between the producers and svc_metrics for the indicators that had no real producer: the events
svc_matching and svc_services really write (outbox rows, as the relay sends them) pass svc_metrics' batch
validation and ingestion, and the indicators come out right through the KPI API.

- volunteer_hour_utilisation: hours credited (ledger.posted) ÷ hours pledged (volunteer.hours_offered)
- participation_rate: distinct people with participation.recorded ÷ residents
- duplicate_investment: resource.listed / resource.withdrawn by category and grid
- elderly_usage and the special-group filter: request.submitted with requester_id, requester_age, groups
"""
from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import datetime, timezone

from sqlalchemy import select

from common.clock import FrozenClock
from common.outbox import TypeFilter, event_payload
from svc_metrics.events.service import validate_batch
from tests.conftest import start_service
from tests.svc_matching.conftest import USCC, make_org, service_body
from tests.svc_metrics.conftest import ev

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)   # Monday 09:00 in Shanghai
LATER = datetime(2026, 12, 10, 4, 0, tzinfo=timezone.utc)
GRID = "110105001001001"
COMMUNITY = GRID[:12]
SATURDAY = {"window_start": "2026-11-28T10:00:00+08:00", "window_end": "2026-11-28T11:00:00+08:00"}


# the rows a deployment relays to svc_residents' notices instead (deploy/launcher.py), never to svc_metrics
TO_METRICS = TypeFilter(exclude=("notice.",))


async def outbox(client, source: str) -> list[dict]:
    """The service's outbox as the svc_metrics relay would send it."""
    model = __import__(f"{source}.base", fromlist=["OutboxEvent"]).OutboxEvent
    async with client.app.state.db.session() as s:
        rows = (await s.execute(select(model).order_by(model.id))).scalars().all()
        return [event_payload(r, source) for r in rows if TO_METRICS.matches(r.type)]


async def matching_world(m, auth) -> None:
    staff = auth(role="community_staff", scopes=[f"community:{COMMUNITY}"])
    # the persons volunteering and earning points, as svc_residents' place feed sends them
    feed = auth(role="system", user="svc_residents", member="svc_residents")
    for pid in ("p-5", "p-7"):
        r = await m.put(f"/matching/v1/person_places/{pid}", headers=feed,
                        json={"grid_code": GRID, "community_code": COMMUNITY, "version": 1})
        assert r.status_code == 200, r.text
    # resources: two organisations offer elderly care in the same grid (duplicated), a third offers health
    # there and is later withdrawn, a fourth offers childcare and stays
    orgs = [await make_org(m, staff, uscc=USCC[i], name=f"机构{i}") for i in range(3)]
    a = (await m.post("/matching/v1/services", headers=staff, json=service_body(*orgs[0]))).json()
    b = (await m.post("/matching/v1/services", headers=staff, json=service_body(*orgs[1], capacity={"maximum": 0})))
    assert b.status_code == 201, b.text
    h = (await m.post("/matching/v1/services", headers=staff,
                      json=service_body(*orgs[2], categories=["health"], eligibility=[]))).json()
    c = (await m.post("/matching/v1/services", headers=staff,
                      json=service_body(*orgs[2], categories=["childcare"], eligibility=[]))).json()
    assert a["id"] and c["id"]
    r = await m.post(f"/matching/v1/services/{h['id']}/status", headers=staff, json={"status": "inactive"})
    assert r.status_code == 200, r.text
    # a volunteer pledges 4 hours and serves 1.5 of them (credited to the time bank)
    vol = (await m.post("/matching/v1/volunteers", headers=staff, json={
        "person_id": "p-5", "name": "陈静", "skills": ["life_service"], "max_load": 2,
        "availability": [{"byday": "SA,SU", "opens_at": "09:00", "closes_at": "17:00"}],
        "latitude": 39.9210, "longitude": 116.4430, "place_code": GRID})).json()
    r = await m.post(f"/matching/v1/volunteers/{vol['id']}/hours_offers", headers=staff,
                     json={"minutes": 240, "period_start": "2026-11-28", "period_end": "2026-11-29"})
    assert r.status_code == 201, r.text
    need = (await m.post("/matching/v1/needs", headers=staff, json={
        "category": "life_service", "person_id": "p-3", "place_code": GRID, "latitude": 39.9210,
        "longitude": 116.4430, **SATURDAY})).json()
    offer = (await m.post(f"/matching/v1/needs/{need['id']}/match", headers=staff)).json()["offer"]
    assert offer["provider_kind"] == "volunteer", offer
    assert (await m.post(f"/matching/v1/offers/{offer['id']}/accept", headers=staff)).status_code == 200
    r = await m.post(f"/matching/v1/offers/{offer['id']}/complete", headers=staff, json={"hours": 1.5})
    assert r.status_code == 200, r.text
    # a resident earns points at the residents' council
    r = await m.post("/matching/v1/timebank/credits", headers=staff, json={
        "posting_id": "council-1", "person_id": "p-7", "community": COMMUNITY, "unit": "point", "amount": 10,
        "activity": "council"})
    assert r.status_code == 201, r.text


async def services_world(s, auth) -> None:
    ops = auth(role="ops")
    feed = auth(role="system", user="svc_residents", member="svc_residents")
    assert (await s.put(f"/services/v1/grids/{GRID}", json={"name": "幸福一网格", "lat": 39.921, "long": 116.443},
                        headers=ops)).status_code == 200
    r = await s.post("/services/v1/catalogue/items", headers=ops, json={  # a district-wide item: ops maintain it
        "code": "SH-WX-001", "name": "家电家政维修", "category": "life_service", "tier": "featured",
        "department": "community", "response_hours": 12, "resolution_hours": 72, "working_hours": True})
    assert r.status_code == 201, r.text
    for pid, born, groups in (("p-3", "1946-03-01", [{"code": "elderly"}, {"code": "living_alone"}]),
                              ("p-4", "1990-01-01", [])):
        r = await s.put(f"/services/v1/requester_profiles/{pid}", json={"birth_date": born, "groups": groups},
                        headers=feed)
        assert r.status_code == 200, r.text
    body = {"item_code": "SH-WX-001", "channel": "app", "description": "厨房水管漏水", "location": {"grid": GRID}}
    proxy = auth(role="proxy", user="proxy1", scopes=[f"community:{COMMUNITY}"], acting_for="p-3")
    for who in (proxy, proxy, auth(role="resident", scopes=["person:p-4"])):
        r = await s.post("/services/v1/requests", headers=who, json=body)
        assert r.status_code == 201, r.text


async def test_produced_events_validate_ingest_and_count(tmp_path, jwks, auth):
    async with AsyncExitStack() as stack:
        m = await start_service(stack, "svc_matching", f"sqlite+aiosqlite:///{tmp_path}/m.db", jwks,
                                offer_sweeper_enabled=False)
        s = await start_service(stack, "svc_services", f"sqlite+aiosqlite:///{tmp_path}/s.db", jwks,
                                sla_scan_enabled=False)
        k = await start_service(stack, "svc_metrics", f"sqlite+aiosqlite:///{tmp_path}/k.db", jwks)
        for c in (m, s):
            c.app.state.clock = FrozenClock(NOW)
        k.app.state.clock = FrozenClock(LATER)
        await matching_world(m, auth)
        await services_world(s, auth)

        produced = await outbox(m, "svc_matching") + await outbox(s, "svc_services")
        types = {e["type"] for e in produced}
        assert {"volunteer.hours_offered", "participation.recorded", "resource.listed", "resource.withdrawn",
                "offer.completed", "request.submitted"} <= types
        # as the relay sends them: JSON, through svc_metrics' own validation first
        import json
        wire = json.loads(json.dumps(produced, default=str))
        assert len(validate_batch(wire, 1000)) == len(wire)
        # the residents the rates divide by (svc_residents' person.registered, exact age)
        residents = [ev("person.registered", NOW.replace(month=1), pid, grid=GRID, age=age, age_band="x")
                     for pid, age in (("p-3", 80), ("p-4", 36), ("p-5", 36), ("p-7", 70))]
        system = auth(role="system", user="relay", member="svc_matching")
        r = await k.post("/metrics/v1/events", json={"events": wire + residents}, headers=system)
        assert r.status_code == 200, r.text
        again = await k.post("/metrics/v1/events", json={"events": wire}, headers=system)
        assert again.status_code == 200, again.text   # re-delivery changes nothing

        ops = auth(role="ops")

        async def kpi(code, **params):
            r = await k.get(f"/metrics/v1/kpis/{code}", params={"period": "2026-11", "scope": "all", **params},
                            headers=ops)
            assert r.status_code == 200, r.text
            return r.json()

        util = await kpi("volunteer_hour_utilisation")
        assert (util["numerator"], util["denominator"], util["value"]) == (90.0, 240.0, 37.5)
        part = await kpi("participation_rate", scope=COMMUNITY)
        assert (part["numerator"], part["denominator"], part["value"]) == (2.0, 4.0, 50.0)   # p-5 and p-7
        dup = await kpi("duplicate_investment", scope=GRID)
        # listed: elderly care ×2 (duplicated), childcare; health withdrawn
        assert (dup["numerator"], dup["denominator"]) == (2.0, 3.0) and dup["value"] == 66.67
        elderly = await kpi("elderly_usage")
        assert (elderly["numerator"], elderly["denominator"], elderly["value"]) == (1.0, 2.0, 50.0)  # p-3 of p-3, p-7
        lone = await kpi("resolution_rate", group="living_alone")
        assert lone["denominator"] == 2.0      # p-3's two requests, not p-4's
        everyone = await kpi("resolution_rate")
        assert everyone["denominator"] == 3.0
