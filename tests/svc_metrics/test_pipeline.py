"""SQLite's pipelined ingest: batches prepared while earlier ones are written give exactly the numbers of
one-at-a-time ingest, and a batch built on a write that failed is refused whole (503) rather than stored."""
from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from svc_metrics.events import pipeline as pipeline_module

from tests.svc_metrics.test_rollup import QUERIES, H, events_over_months, rollup_rows
from tests.svc_metrics.test_rollup import tables as all_tables

pytestmark = pytest.mark.usefixtures("sqlite_only")
PROBES = QUERIES[::9]   # a spread of periods, scopes and filters (the rollup tests run them all)


async def tables(client, headers) -> list[dict]:
    return await all_tables(client, headers, PROBES)


@pytest.fixture
def sqlite_only(client):
    if client.app.state.sqlite_ingest is None:
        pytest.skip("the pipeline is SQLite's; PostgreSQL ingests one transaction per batch")


def batches(events: list[dict], size: int) -> list[list[dict]]:
    # sorted by entity so that consecutive batches share entities (a request's events across batches)
    events = sorted(events, key=lambda e: (e["subject"] or "", e["occurred_at"]))
    return [events[i:i + size] for i in range(0, len(events), size)]


async def test_concurrent_batches_give_the_numbers_of_a_rebuild(client, ops, auth):
    headers = auth(role="system", user="svc_services", member="svc_services")
    sent = batches(events_over_months(seed=8), 7)

    async def post(batch):
        r = await client.post("/metrics/v1/events", json={"events": batch}, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    results = await asyncio.gather(*(post(b) for b in sent))
    assert sum(r["accepted"] for r in results) == sum(len(b) for b in sent)
    # the same batches again, concurrently: all duplicates, nothing changes
    incremental, before = await rollup_rows(client.app.state.db), await tables(client, ops)
    again = await asyncio.gather(*(post(b) for b in sent))
    assert sum(r["accepted"] for r in again) == 0
    assert await rollup_rows(client.app.state.db) == incremental
    assert (await client.post("/metrics/v1/rebuild", headers=ops)).status_code == 200
    assert await rollup_rows(client.app.state.db) == incremental
    assert await tables(client, ops) == before


async def test_a_batch_built_on_a_failed_write_is_refused_and_can_be_sent_again(client, ops, auth, monkeypatch):
    headers = auth(role="system", user="svc_services", member="svc_services")
    sent = batches(events_over_months(seed=9), 10)
    pipeline = client.app.state.sqlite_ingest
    write = pipeline_module._write
    calls = 0

    def failing_write(conn, plan, *args):   # in the writer's thread
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.05)   # the next batch gets prepared on top of this one and queued behind it meanwhile
            raise RuntimeError("disk full")
        return write(conn, plan, *args)

    monkeypatch.setattr(pipeline_module, "_write", failing_write)
    first = asyncio.create_task(client.post("/metrics/v1/events", json={"events": sent[0]}, headers=headers))
    await asyncio.sleep(0.01)
    second = await client.post("/metrics/v1/events", json={"events": sent[0][-3:] + sent[1]}, headers=headers)
    assert (await first).status_code == 500
    assert second.status_code == 503 and second.headers["retry-after"] == "1"
    assert second.headers["content-type"].startswith("application/problem+json")
    assert await rollup_rows(client.app.state.db) == set() and not pipeline._pending
    monkeypatch.setattr(pipeline_module, "_write", write)
    for b in sent:   # the relay sends everything again: the numbers are those of a clean ingest
        r = await client.post("/metrics/v1/events", json={"events": b}, headers=headers)
        assert r.status_code == 200, r.text
    incremental, before = await rollup_rows(client.app.state.db), await tables(client, ops)
    assert (await client.post("/metrics/v1/rebuild", headers=ops)).status_code == 200
    assert await rollup_rows(client.app.state.db) == incremental
    assert await tables(client, ops) == before


async def test_a_queued_write_finds_the_failed_write_it_builds_on_and_writes_nothing(client, auth, monkeypatch):
    """Batch 2 carries a request's later steps while batch 1 (its submission) is still being written: batch 2's
    transaction is queued behind batch 1's on the writer's thread, finds it failed, and writes nothing."""
    from tests.svc_metrics.conftest import T0, request_flow

    headers = auth(role="system", user="svc_services", member="svc_services")
    pipeline = client.app.state.sqlite_ingest
    write, jobs = pipeline_module._write, []

    def failing_first(conn, plan, expected, this, builds_on):
        jobs.append((plan.touched, builds_on))
        if len(jobs) == 1:
            time.sleep(0.05)
            raise RuntimeError("disk full")
        return write(conn, plan, expected, this, builds_on)

    flow = request_flow("queued1", T0, steps={"accepted": H, "resolved": 5 * H})
    monkeypatch.setattr(pipeline_module, "_write", failing_first)
    first = asyncio.create_task(client.post("/metrics/v1/events", json={"events": flow[:1]}, headers=headers))
    await asyncio.sleep(0.01)
    second = await client.post("/metrics/v1/events", json={"events": flow[1:]}, headers=headers)
    assert (await first).status_code == 500 and second.status_code == 503
    assert len(jobs) == 2 and jobs[1][0] == [("request", "queued1")] and len(jobs[1][1]) == 1
    async with client.app.state.db.session() as session:
        stored = (await session.execute(text("SELECT count(*) FROM events"))).scalar_one()
    assert stored == 0 and await rollup_rows(client.app.state.db) == set() and not pipeline._pending
    monkeypatch.setattr(pipeline_module, "_write", write)
    for batch in (flow[:1], flow[1:]):   # sent again, both are stored
        r = await client.post("/metrics/v1/events", json={"events": batch}, headers=headers)
        assert r.status_code == 200 and r.json()["accepted"] == len(batch)


async def test_a_write_that_commits_while_the_next_batch_reads_is_seen(client, ops, auth, monkeypatch):
    """Batch 2 shares a request with batch 1 (in flight) and reads another from the database; batch 1 commits
    during that read. Batch 2 must build on batch 1's events, not lose them."""
    from svc_metrics.events import service
    from tests.svc_metrics.conftest import T0, request_flow

    headers = auth(role="system", user="svc_services", member="svc_services")
    write, load = pipeline_module._write, service._load_events

    def slow_write(*args):
        time.sleep(0.02)
        return write(*args)

    async def slow_load(session, chunk):
        out = await load(session, chunk)
        await asyncio.sleep(0.1)   # batch 1's write commits meanwhile
        return out

    one = request_flow("race1", T0, steps={"accepted": H, "resolved": 5 * H})
    two = request_flow("race2", T0, steps={"accepted": H})
    monkeypatch.setattr(pipeline_module, "_write", slow_write)
    first = asyncio.create_task(client.post("/metrics/v1/events", json={"events": one[:2]}, headers=headers))
    await asyncio.sleep(0.005)
    monkeypatch.setattr(service, "_load_events", slow_load)
    second = await client.post("/metrics/v1/events", json={"events": [one[2], *two]}, headers=headers)
    assert (await first).status_code == 200 and second.status_code == 200, second.text
    assert second.json()["accepted"] == 3
    before = await tables(client, ops)
    assert (await client.post("/metrics/v1/rebuild", headers=ops)).status_code == 200
    assert await tables(client, ops) == before


async def test_recent_entities_are_built_on_from_memory_and_give_the_numbers_of_a_rebuild(client, ops, auth,
                                                                                         monkeypatch):
    """A request's later events (acceptance, resolution, rating) in later batches build on its committed events
    kept in memory, not read again; with room for only a few entities the rest are read back. Either way the
    numbers are those of a rebuild."""
    from svc_metrics.events import service

    headers = auth(role="system", user="svc_services", member="svc_services")
    pipeline = client.app.state.sqlite_ingest
    monkeypatch.setattr(pipeline, "_recent_max", 5)
    load, read = service._load_events, []

    async def counting_load(session, chunk):
        read.extend(chunk)
        return await load(session, chunk)

    monkeypatch.setattr(service, "_load_events", counting_load)
    # The requests' events (the data's bookings, activities and notices are the rollup test's), in time order, so a
    # request's steps are spread over several batches.
    sent = sorted((e for e in events_over_months(seed=11) if e["type"].startswith("request.")),
                  key=lambda e: e["occurred_at"])
    for i in range(0, len(sent), 4):
        r = await client.post("/metrics/v1/events", json={"events": sent[i:i + 4]}, headers=headers)
        assert r.status_code == 200, r.text
    entities = {("request", e["subject"]) for e in sent if e["type"].startswith("request.")}
    assert len(pipeline._recent) <= 5 and set(pipeline._recent) <= entities
    # every entity is read from the database at most once per time it dropped out of memory: far fewer reads
    # than batches that touched it
    touches = sum(len({("request", e["subject"]) for e in sent[i:i + 4] if e["type"].startswith("request.")})
                  for i in range(0, len(sent), 4))
    assert len(read) < touches
    incremental, before = await rollup_rows(client.app.state.db), await tables(client, ops)
    assert (await client.post("/metrics/v1/rebuild", headers=ops)).status_code == 200
    assert await rollup_rows(client.app.state.db) == incremental
    assert await tables(client, ops) == before


async def test_a_failed_write_forgets_the_entities_it_touched(client, auth, monkeypatch):
    from tests.svc_metrics.conftest import T0, request_flow

    headers = auth(role="system", user="svc_services", member="svc_services")
    pipeline = client.app.state.sqlite_ingest
    flow = request_flow("forget1", T0, steps={"accepted": H, "resolved": 5 * H, "rated": 6 * H}, rating=5)
    r = await client.post("/metrics/v1/events", json={"events": flow[:2]}, headers=headers)
    assert r.status_code == 200
    assert ("request", "forget1") in pipeline._recent
    write, touched = pipeline_module._write, []

    def failing_write(conn, plan, *args):
        touched.extend(plan.touched)
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline_module, "_write", failing_write)
    r = await client.post("/metrics/v1/events", json={"events": flow[2:]}, headers=headers)
    assert r.status_code == 500 and touched == [("request", "forget1")]
    assert ("request", "forget1") not in pipeline._recent   # read back from the database next time
    monkeypatch.setattr(pipeline_module, "_write", write)
    r = await client.post("/metrics/v1/events", json={"events": flow[2:]}, headers=headers)
    assert r.status_code == 200 and r.json()["accepted"] == len(flow[2:])
