"""Broadcasts (停水通知): staff send to a grid, building, community or a special group in their scope; the notice is
fanned out to the notification engine once (a scheduler claiming the broadcast; two replicas on PostgreSQL send it
once), handed to the emulated SMS / 语音外呼 / push platforms by the engine's dispatcher, and the report counts what
was sent, delivered, failed and read per channel. Outside the scope: a 403 problem, nothing written."""
from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from common.db import Database
from svc_residents.broadcasts.service import run_broadcasts
from tests.conftest import gateway_auth
from tests.svc_residents.conftest import GRID_A1, GRID_B1, ROLES
from tests.svc_residents.test_notifications_channels import drain, rig  # noqa: F401  (the engine and emulators)

URL = "/residents/v1/broadcasts"
XF = "110105001001"
WATER = {"title": "停水通知", "text": "因管道检修，明日 9:00–17:00 停水，请提前储水。"}


@pytest.fixture(autouse=True)
def _no_background(monkeypatch):
    monkeypatch.setenv("ONENET_BROADCAST_SCAN_ENABLED", "false")


@pytest.fixture
async def api(rig, auth):  # noqa: F811
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rig.app), base_url="http://test",
                                 auth=gateway_auth()) as c:
        c.as_ = lambda name: auth(**ROLES[name])
        yield c


async def notes(rig, broadcast_id):  # noqa: F811
    from svc_residents.notifications.models import Notification

    async with rig.db.session() as s:
        return list((await s.execute(select(Notification).where(
            Notification.event_key == f"broadcast:{broadcast_id}").order_by(Notification.recipient))).scalars())


async def test_a_notice_to_a_community_is_sent_once_and_reported_per_channel(rig, api):  # noqa: F811
    r = await api.post(URL, json={**WATER, "place_code": XF}, headers={**api.as_("staff1"), "Idempotency-Key": "w1"})
    assert r.status_code == 202, r.text
    b = r.json()
    assert b["state"] == "queued" and b["audience"] == 6 and b["handed"] == 0
    again = await api.post(URL, json={**WATER, "place_code": XF}, headers={**api.as_("staff1"), "Idempotency-Key": "w1"})
    assert again.json()["id"] == b["id"]
    assert await run_broadcasts(rig.db, rig.clock) == 6 and await run_broadcasts(rig.db, rig.clock) == 0
    got = await notes(rig, b["id"])
    assert len(got) == 6 and all(n.title == "停水通知" and n.category == "broadcast" for n in got)
    rig.sms.failure_rate = 0.5                      # the SMS platform fails half its calls: retried, none lost
    await drain(rig)
    rig.sms.failure_rate = 0.0
    await drain(rig)
    # one resident reads it in the inbox
    resident = api.as_("resident1")
    inbox = (await api.get("/residents/v1/notifications", headers=resident)).json()["items"]
    mine = next(n for n in inbox if n["title"] == "停水通知")
    assert (await api.post(f"/residents/v1/notifications/{mine['id']}/read", headers=resident)).status_code == 200
    rep = (await api.get(f"{URL}/{b['id']}", headers=api.as_("street1"))).json()
    assert rep["state"] == "sent" and rep["handed"] == rep["messages"] == 6 and rep["read"] == 1
    ch = rep["channels"]
    reached = sum(c["sent"] + c["delivered"] for c in ch.values())
    assert reached + sum(rep["not_sent_outside"].values()) + sum(c["skipped"] for c in ch.values()) >= 6
    assert all(c["failed"] == 0 for c in ch.values()), ch       # the failures were retried to success
    # the report is for staff covering the place it went to (and ops): not 安康's staff, nor one grid's worker
    for who in ("staff2", "grid1", "resident1"):
        assert (await api.get(f"{URL}/{b['id']}", headers=api.as_(who))).status_code == 404, who
    assert [x["id"] for x in (await api.get(URL, headers=api.as_("staff1"))).json()["items"]] == [b["id"]]
    assert (await api.get(URL, headers=api.as_("staff2"))).json()["items"] == []


async def test_a_group_and_a_building_and_refusals_outside_the_scope(rig, api):  # noqa: F811
    from svc_residents.broadcasts.models import Broadcast

    r = await api.post(URL, json={**WATER, "place_code": XF, "group": "living_alone"}, headers=api.as_("staff1"))
    assert r.status_code == 202 and r.json()["audience"] == 1               # P3, 独居老人
    r = await api.post(URL, json={**WATER, "place_code": "110105001001001001"}, headers=api.as_("grid1"))
    assert r.status_code == 202 and r.json()["audience"] == 2               # building 1: household 1 (P1, P2)
    for who, body, status, code in (
            ("grid1", {**WATER, "place_code": XF}, 403, "broadcast.outside_scope"),        # a grid worker: his grid
            ("staff2", {**WATER, "place_code": GRID_A1}, 403, "broadcast.outside_scope"),
            ("grid3", {**WATER, "place_code": "110105001001001001"}, 403, "broadcast.outside_scope"),
            ("ops1", {**WATER, "place_code": XF}, 403, None), ("resident1", {**WATER, "place_code": XF}, 403, None),
            ("dept_mz", {**WATER, "place_code": XF}, 403, None), ("portal", {**WATER, "place_code": XF}, 403, None),
            ("staff1", {**WATER, "place_code": "110105001"}, 422, "validation_failed"),      # a street: not offered
            ("staff1", {**WATER, "place_code": "110105001001999"}, 422, "validation_failed"),
            ("staff1", {**WATER, "place_code": XF, "group": "vip"}, 422, "validation_failed"),
            ("staff1", {"title": "", "text": "x", "place_code": XF}, 422, "validation_failed"),
            ("staff1", {**WATER, "place_code": XF, "colour": "red"}, 422, "validation_failed")):
        r = await api.post(URL, json=body, headers=api.as_(who))
        assert r.status_code == status, (who, body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        if code:
            assert r.json()["code"] == code, r.text
    async with rig.db.session() as s:
        assert (await s.execute(select(func.count()).select_from(Broadcast))).scalar_one() == 2
    assert (await api.post(URL, json={**WATER, "place_code": GRID_B1}, headers=api.as_("street1"))).status_code == 202


@pytest.fixture
def postgres_only(backend):
    """Listed first, so a SQLite run skips before any app is built."""
    if backend != "postgresql":
        pytest.skip("row claims with FOR UPDATE SKIP LOCKED are a PostgreSQL feature; SQLite runs one sender")


async def test_two_replicas_send_a_broadcast_once(postgres_only, rig, api, db_url):  # noqa: F811
    r = await api.post(URL, json={**WATER, "place_code": "110105"[:6] + "001001"}, headers=api.as_("staff1"))
    r2 = await api.post(URL, json={**WATER, "place_code": "110105001002"}, headers=api.as_("street1"))
    other = Database(db_url)
    try:
        handed = await asyncio.gather(run_broadcasts(rig.db, rig.clock), run_broadcasts(other, rig.clock))
    finally:
        await other.dispose()
    assert sum(handed) == 12
    for b in (r.json(), r2.json()):
        got = await notes(rig, b["id"])
        assert len(got) == 6 and Counter(n.recipient for n in got).most_common(1)[0][1] == 1


async def test_a_delivery_whose_receipt_never_comes_is_reported_unknown_not_sent(rig, api):  # noqa: F811
    r = await api.post(URL, json={**WATER, "place_code": XF}, headers={**api.as_("staff1"), "Idempotency-Key": "w2"})
    assert r.status_code == 202, r.text
    assert await run_broadcasts(rig.db, rig.clock) == 6
    rig.sms.receipt_pending_rate = rig.push.receipt_pending_rate = 1.0  # the platforms take them, never confirm
    await drain(rig, rounds=600)
    ch = (await api.get(f"{URL}/{r.json()['id']}", headers=api.as_("staff1"))).json()["channels"]
    handed = {name: c for name, c in ch.items() if name in ("sms", "push")}
    assert handed and sum(c["unknown"] for c in handed.values()) >= 1, ch
    # each ended at the receipt deadline: none is still shown as merely handed over, none as delivered
    assert all(c["sent"] == 0 and c["delivered"] == 0 for c in handed.values()), ch
