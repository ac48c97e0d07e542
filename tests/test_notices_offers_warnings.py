"""Offers and warnings told through the notification engine (issue 26), on the in-process platform: an offer made
by svc_matching reaches its provider's inbox, and once that it is about to expire; a warning opened by svc_metrics
reaches the inboxes of its place's community staff and grid workers. Each from the source service's own step,
through its `notice.` outbox feed and the real relay, to the recipient reading the inbox through the gateway."""
from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio

from common.clock import FrozenClock
from common.demo import demo_id
from deploy.demo import person_id
from common.outbox import OutboxRelay, TypeFilter
from common.outbox_senders import FeedSender
from tests.conftest import gateway_auth
from tests.inprocess import start_platform

GRID, COMMUNITY = "110105001001001", "110105001001"  # 幸福社区's first grid


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory):
    async with AsyncExitStack() as stack:
        yield await start_platform(stack, tmp_path_factory.mktemp("notices"))


def relay(p, source: str):
    """`source`'s notice. feed delivered to svc_residents, as the launcher wires it (signed as the source)."""
    from importlib import import_module

    token = p.token("system", user=source, member=source)

    async def provider():
        return token

    app = p.apps[source]
    send = FeedSender("http://svc_residents/residents/v1/notices", provider,
                      transport=httpx.ASGITransport(app=p.apps["svc_residents"]), auth=gateway_auth())
    return OutboxRelay(app.state.db, import_module(f"{source}.base").OutboxEvent, source=source, send=send,
                       clock=app.state.clock, types=TypeFilter(include=("notice.",)))


async def drain(r) -> None:
    while await r.run_once():
        pass


async def inbox(p, name: str, **over) -> list[dict]:
    r = await p.client.get("/residents/v1/notifications", headers=p.headers(name, **over))
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_an_offer_made_and_about_to_expire_reaches_its_provider(platform):
    from svc_matching.offers.notices import remind_expiring

    p = platform
    org = demo_id("organization", "O1")
    provider = dict(user="provider-o1", role="provider", scopes=[f"provider:{org}"])
    r = await p.client.put("/residents/v1/staff_contacts/provider-o1", headers=p.headers("ops1"), json={
        "role": "provider", "scope": f"provider:{org}", "display_name": "幸福家园值班", "phone": "13900000011"})
    assert r.status_code == 201, r.text
    need = await p.client.post("/matching/v1/needs", headers=p.headers("staff1"), json={
        "category": "elderly_care", "person_id": person_id("P1"), "place_code": GRID, "latitude": 39.9215, "longitude": 116.4440,
        "requester_age": 80})
    assert need.status_code == 201, need.text
    r = await p.client.post(f"/matching/v1/needs/{need.json()['id']}/match", headers=p.headers("staff1"))
    assert r.status_code == 201, r.text
    offer = r.json()["offer"]
    assert offer["provider_id"] == demo_id("service", "O1"), offer
    to_residents = relay(p, "svc_matching")
    await drain(to_residents)
    got = await inbox(p, "ops1", **provider)
    assert [(m["template"], m["subject"], m["category"]) for m in got] == [("offer.made", offer["id"], "offer")]
    assert "养老" in got[0]["body"] or "elderly" in got[0]["body"]  # the category's name, not its code
    assert "elderly_care" not in got[0]["body"] and "月" in got[0]["body"]  # the expiry as people read it

    # about to expire: reminded once (a second scan, or a second replica, writes nothing)
    matching = p.apps["svc_matching"]
    wall = matching.state.clock
    matching.state.clock = FrozenClock(wall.now() + timedelta(minutes=100))  # 20 min before it expires
    try:
        for expected in (1, 0):
            async with matching.state.db.session() as s, s.begin():
                assert await remind_expiring(s, matching.state.clock.now()) == expected
        await drain(relay(p, "svc_matching"))
    finally:
        matching.state.clock = wall
    got = await inbox(p, "ops1", **provider)
    assert [m["template"] for m in got] == ["offer.expiring", "offer.made"]
    assert got[0]["urgency"] == "urgent"


async def test_a_warning_opened_reaches_the_places_staff(platform):
    from svc_metrics.alerts.service import _w, record

    p = platform
    r = await p.client.put("/residents/v1/staff_contacts/staff1", headers=p.headers("staff1"), json={
        "role": "community_staff", "scope": f"community:{COMMUNITY}", "phone": "13900000001"})
    assert r.status_code in (200, 201), r.text
    metrics = p.apps["svc_metrics"]
    found = [_w("surge", f"surge:{GRID}:test", GRID, "2026-12-07", f"网格 {GRID} 的「环境卫生」类诉求 24 小时内 9 件",
                "Grid surge", {"count_24h": 9}, category="environment")]
    async with metrics.state.db.session() as s, s.begin():
        opened = await record(s, found, metrics.state.clock.now())
    async with metrics.state.db.session() as s, s.begin():  # a re-run scan opens nothing, tells nobody again
        assert await record(s, found, metrics.state.clock.now()) == []
    await drain(relay(p, "svc_metrics"))
    for who in ("staff1", "grid1"):
        got = [m for m in await inbox(p, who) if m["template"] == "warning.opened"]
        assert [(m["subject"], m["category"], m["urgency"]) for m in got] == [(opened[0].id, "warning", "urgent")], who
        assert "幸福社区" in got[0]["body"] and "环境卫生" in got[0]["body"], got[0]["body"]
    assert [m for m in await inbox(p, "staff2") if m["template"] == "warning.opened"] == []  # another community
