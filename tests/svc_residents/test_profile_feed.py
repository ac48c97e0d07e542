"""The requester-profile feed (svc_residents → svc_services' replica, ADR 0007): which writes produce a
`requester_profile.*` outbox row and what it holds; the feed relay delivering to a real svc_services app, in
order, idempotently, and surviving svc_services being down; the svc_metrics relay never seeing those rows."""
from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import select, update

from common.clock import FrozenClock
from common.outbox import OutboxRelay, TypeFilter
from common.outbox_senders import FeedSender
from tests.conftest import gateway_auth, start_service
from tests.svc_residents.conftest import H, make_id

PERSONS = "/residents/v1/persons"
FEED_URL = "http://svc-services/services/v1/requester_profiles"
PERSONAL = ("name", "id_number", "phone", "address", "household_id", "grid", "community")


async def feed_rows(client, person_id=None):
    from svc_residents.base import OutboxEvent

    async with client.app.state.db.session() as s:
        stmt = select(OutboxEvent).where(OutboxEvent.type.startswith("requester_profile.")).order_by(OutboxEvent.id)
        if person_id:
            stmt = stmt.where(OutboxEvent.subject == person_id)
        return list((await s.execute(stmt)).scalars())


async def register(client, headers, number, *, tags=(), household="3", name="刘强", phone=None):
    body = {"household_id": H(household), "name": name, "id_number": number, "residency_type": "registered",
            "tags": list(tags)}
    if phone:
        body["phone"] = phone
    r = await client.post(PERSONS, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def assert_minimal(row):
    """Birth date, tag codes with expiry and the version: nothing that identifies the person."""
    assert row.community is None and row.grid is None
    assert set(row.data) <= {"birth_date", "groups", "version"}
    for g in row.data.get("groups", []):
        assert set(g) == {"code", "valid_until"}


async def test_registration_writes_one_minimal_snapshot(seeded, as_):
    until = datetime(2027, 1, 1, tzinfo=timezone(timedelta(hours=8)))  # valid through 2026-12-31 (Shanghai)
    p = await register(seeded, as_("staff1"), make_id("19450310", 7, sex="F"), phone="13912345678", tags=[
        {"code": "living_alone", "source": "staff", "valid_until": until.isoformat()},
        {"code": "elderly", "source": "staff"}])
    (row,) = await feed_rows(seeded, p["id"])
    assert row.type == "requester_profile.changed"
    assert row.data == {"birth_date": "1945-03-10", "version": 1, "groups": [
        {"code": "elderly", "valid_until": None}, {"code": "living_alone", "valid_until": "2026-12-31"}]}
    assert_minimal(row)
    text = str(row.data)
    assert "刘强" not in text and "139" not in text and "1945031" not in text


async def test_tag_changes_write_snapshots_unrelated_edits_do_not(seeded, as_):
    h = as_("staff1")
    p = await register(seeded, h, make_id("19520909", 3))
    pid = p["id"]
    assert [r.data["version"] for r in await feed_rows(seeded, pid)] == [1]
    # unrelated: phone, channel, accessibility, name
    r = await seeded.patch(f"{PERSONS}/{pid}", headers=h, json={
        "version": p["version"], "phone": "13900000009", "preferred_channel": "phone", "name": "刘刚",
        "accessibility_needs": ["large_font"]})
    assert r.status_code == 200, r.text
    assert len(await feed_rows(seeded, pid)) == 1
    # a new tag: a snapshot
    r = await seeded.put(f"{PERSONS}/{pid}/tags/elderly", headers=h, json={"code": "elderly", "source": "staff"})
    assert r.status_code == 200, r.text
    rows = await feed_rows(seeded, pid)
    assert [r.data["version"] for r in rows] == [1, 2] and rows[-1].data["groups"] == [
        {"code": "elderly", "valid_until": None}]
    # the same tag again, only verified and with a note: the replica would hold the same, nothing written
    r = await seeded.put(f"{PERSONS}/{pid}/tags/elderly", headers=h, json={
        "code": "elderly", "source": "department", "source_department": "minzheng", "verified": True,
        "note": "核验"})
    assert r.status_code == 200, r.text
    assert len(await feed_rows(seeded, pid)) == 2
    # an expiry: a snapshot
    r = await seeded.put(f"{PERSONS}/{pid}/tags/elderly", headers=h, json={
        "code": "elderly", "source": "department", "source_department": "minzheng", "verified": True,
        "valid_until": "2030-06-30T16:00:00+00:00"})
    assert r.status_code == 200, r.text
    assert (await feed_rows(seeded, pid))[-1].data["groups"] == [{"code": "elderly", "valid_until": "2030-06-30"}]
    # removed: a snapshot without it
    assert (await seeded.delete(f"{PERSONS}/{pid}/tags/elderly", headers=h)).status_code == 204
    rows = await feed_rows(seeded, pid)
    assert [r.data["version"] for r in rows] == [1, 2, 3, 4] and rows[-1].data["groups"] == []
    for row in rows:
        assert_minimal(row)


async def test_merge_removes_the_duplicate_and_updates_the_survivor(seeded, as_):
    h = as_("staff1")
    survivor = (await register(seeded, h, make_id("19480101", 5)))["id"]
    dup = (await register(seeded, h, make_id("19480101", 6), tags=[{"code": "living_alone", "source": "staff"}]))
    r = await seeded.post(f"{PERSONS}/{survivor}/merge", headers=h, json={"duplicate_id": dup["id"],
                                                                          "reason": "台账录错身份证号"})
    assert r.status_code == 200, r.text
    gone = (await feed_rows(seeded, dup["id"]))[-1]
    assert gone.type == "requester_profile.removed" and gone.data == {"version": 2}
    kept = (await feed_rows(seeded, survivor))[-1]
    assert kept.type == "requester_profile.changed" and kept.data["version"] == 2
    assert kept.data["groups"] == [{"code": "living_alone", "valid_until": None}]


async def test_import_writes_a_snapshot_per_person(seeded, tmp_path):
    from svc_residents.importer import import_file
    from tests.svc_residents.test_import import good_rows, write_csv

    before = len(await feed_rows(seeded))
    r = await import_file(seeded.app.state.db, seeded.app.state.protection, write_csv(tmp_path / "l.csv", good_rows()),
                          clock=seeded.app.state.clock)
    assert r.imported == 3
    rows = (await feed_rows(seeded))[before:]
    assert len(rows) == 3
    by_birth = {row.data["birth_date"]: row for row in rows}
    assert {g["code"] for g in by_birth["1940-01-01"].data["groups"]} == {"elderly", "living_alone"}
    assert by_birth["1970-01-01"].data["groups"] == [] and all(row.data["version"] == 1 for row in rows)
    for row in rows:
        assert_minimal(row)
    # a tag set later on an imported person continues its version (the import recorded the digest)
    from svc_residents.persons.profile_feed import sync_profile
    async with seeded.app.state.db.session() as s, s.begin():
        assert await sync_profile(s, rows[0].subject, now=seeded.app.state.clock.now()) is False


async def test_backfill_sends_persons_registered_before_the_feed(seeded):
    from svc_residents.models import Person
    from svc_residents.persons.profile_feed import backfill

    db = seeded.app.state.db
    async with db.session() as s, s.begin():  # as if the demo district predated the feed
        await s.execute(update(Person).values(profile_digest=None))
        total = len((await s.execute(select(Person.id))).all())
    before = len(await feed_rows(seeded))
    clock = seeded.app.state.clock
    assert await backfill(db, batch_size=3, clock=clock) == total
    assert await backfill(db, clock=clock) == 0  # nothing left to send
    assert len(await feed_rows(seeded)) == before + total


# ---------------------------------------------------------------- delivery

class Switch(httpx.AsyncBaseTransport):
    """svc_services behind a plug: down → connection refused; up → the real app."""

    def __init__(self, app) -> None:
        self.up = True
        self.calls: list[tuple[str, str]] = []
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        self.calls.append((request.method, request.url.path.rsplit("/", 1)[-1]))
        return await self._inner.handle_async_request(request)


@pytest.fixture
async def services(tmp_path, jwks):
    async with AsyncExitStack() as stack:
        yield await start_service(stack, "svc_services", f"sqlite+aiosqlite:///{tmp_path}/services.db", jwks,
                                  sla_scan_enabled=False)


async def test_feed_relay_delivers_in_order_retries_when_down_and_skips_metrics(seeded, as_, auth, services):
    from svc_residents.base import OutboxEvent

    db = seeded.app.state.db
    token = auth(role="system", user="svc_residents", member="svc_residents")["Authorization"].split()[1]

    async def provider():
        return token

    plug = Switch(services.app)
    sender = FeedSender(FEED_URL, provider, transport=plug, auth=gateway_auth())  # signed as the app's relay
    clock = FrozenClock(seeded.app.state.clock.now() + timedelta(minutes=5))  # ahead of the rows written below
    feed = OutboxRelay(db, OutboxEvent, source="svc_residents", send=sender, base_backoff=1, max_backoff=8,
                       clock=clock, types=TypeFilter(include=("requester_profile.",)))
    # the svc_metrics relay of the same outbox never reads feed rows
    metrics_batches: list[list[dict]] = []

    async def to_metrics(events):
        metrics_batches.append(events)

    metrics = OutboxRelay(db, OutboxEvent, source="svc_residents", send=to_metrics, batch_size=1000,
                          clock=clock, types=TypeFilter(exclude=("requester_profile.",)))
    while await metrics.run_once():
        pass
    assert metrics_batches and not any(e["type"].startswith("requester_profile.")
                                       for b in metrics_batches for e in b)
    while await feed.run_once():  # the demo district's snapshots
        pass
    assert (await feed.measure())[0] == 0
    plug.calls.clear()

    h = as_("staff1")
    plug.up = False  # svc_services is down while a person is registered and tagged twice
    p = await register(seeded, h, make_id("19400520", 8), tags=[{"code": "elderly", "source": "staff"}])
    pid = p["id"]
    for code in ("living_alone", "very_old"):
        r = await seeded.put(f"{PERSONS}/{pid}/tags/{code}", headers=h, json={"code": code, "source": "staff"})
        assert r.status_code == 200, r.text
    assert await feed.run_once() == 0
    async with db.session() as s:
        rows = list((await s.execute(select(OutboxEvent).where(OutboxEvent.subject == pid,
                                                               OutboxEvent.type.startswith("requester_profile."))
                                     .order_by(OutboxEvent.id))).scalars())
    assert len(rows) == 3 and all(r.delivered_at is None and r.attempts == 1 and r.last_error for r in rows)
    plug.up = True
    assert await feed.run_once() == 0  # backing off, not hammering
    clock.advance(seconds=1)
    assert await feed.run_once() == 3  # all three marked; only the newest snapshot was sent
    assert plug.calls == [("PUT", pid)]
    got = (await services.get(f"/services/v1/requester_profiles/{pid}", headers=auth(role="ops"))).json()
    assert got["birth_date"] == "1940-05-20" and got["version"] == 3
    assert [g["code"] for g in got["groups"]] == ["elderly", "living_alone", "very_old"]
    assert (await feed.measure())[0] == 0

    # at-least-once: the oldest snapshot delivered again, after the newest (a retry after a crash) changes nothing
    async with db.session() as s, s.begin():
        await s.execute(update(OutboxEvent).where(OutboxEvent.id == rows[0].id).values(delivered_at=None))
    assert await feed.run_once() == 1
    assert plug.calls[-1] == ("PUT", pid)
    got = (await services.get(f"/services/v1/requester_profiles/{pid}", headers=auth(role="ops"))).json()
    assert got["version"] == 3 and len(got["groups"]) == 3

    # merged away: the replica keeps only a tombstone, which an older snapshot cannot bring back
    survivor = (await register(seeded, h, make_id("19400520", 9)))["id"]
    r = await seeded.post(f"{PERSONS}/{survivor}/merge", headers=h, json={"duplicate_id": pid, "reason": "重复"})
    assert r.status_code == 200, r.text
    while await feed.run_once():
        pass
    assert (await services.get(f"/services/v1/requester_profiles/{pid}", headers=auth(role="ops"))).status_code == 404
    async with db.session() as s, s.begin():
        await s.execute(update(OutboxEvent).where(OutboxEvent.id == rows[-1].id).values(delivered_at=None))
    assert await feed.run_once() == 1
    assert (await services.get(f"/services/v1/requester_profiles/{pid}", headers=auth(role="ops"))).status_code == 404
    await sender.aclose()


async def test_feed_keeps_a_refused_update_pending_and_goes_on(seeded, auth, services):
    """A subscriber refusing one subject's content (422) does not block the others; that one stays pending."""
    from svc_residents.base import OutboxEvent
    from svc_residents.persons.profile_feed import outbox_row

    db = seeded.app.state.db
    async with db.session() as s, s.begin():
        now = seeded.app.state.clock.now()
        await s.execute(update(OutboxEvent).values(delivered_at=now))
        bad = outbox_row("p-bad", 1, {"birth_date": "1950-01-01", "groups": [{"code": "Not A Code",
                                                                                "valid_until": None}]}, now)
        good = outbox_row("p-good", 1, {"birth_date": "1950-01-01", "groups": []}, now)
        await s.execute(OutboxEvent.__table__.insert(), [bad, good])
    token = auth(role="system", member="svc_residents")["Authorization"].split()[1]

    async def provider():
        return token

    sender = FeedSender(FEED_URL, provider, transport=httpx.ASGITransport(app=services.app), auth=gateway_auth())
    feed = OutboxRelay(db, OutboxEvent, source="svc_residents", send=sender, clock=seeded.app.state.clock,
                       types=TypeFilter(include=("requester_profile.",)))
    assert await feed.run_once() == 1
    async with db.session() as s:
        pending = (await s.execute(select(OutboxEvent).where(OutboxEvent.delivered_at.is_(None)))).scalars().all()
    assert [r.subject for r in pending] == ["p-bad"] and "422" in pending[0].last_error
    assert (await services.get("/services/v1/requester_profiles/p-good", headers=auth(role="ops"))).status_code == 200
    await sender.aclose()
