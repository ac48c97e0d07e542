"""The intake path (requests.intake, requests.group_commit): submissions checked one by one and written together
by the one writer, with cached item versions and grids. Whatever the batching, each submission gets its own request, timeline entry,
outbox event and idempotency record; a cached item that was edited or withdrawn meanwhile is never used."""
from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from common.clock import Clock
from sqlalchemy import func, select

from svc_services.base import IdempotencyRecord, OutboxEvent
from svc_services.requests import duplicates
from svc_services.requests.models import ServiceRequest, TimelineEntry
from tests.svc_services.conftest import GRID1, GRIDW, OPS, REPAIR, RES1, STAFF, submit


def _wait(event, seconds: float = 10.0) -> None:
    """Wait for a threading.Event in short relative sleeps: an Event's own timed wait sets an absolute deadline,
    which hangs under libfaketime (tests/shifted_dates.py)."""
    for _ in range(int(seconds / 0.005)):
        if event.is_set():
            return
        time.sleep(0.005)


async def _count(db, model, *where) -> int:
    async with db.session() as s:
        return (await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one()


async def test_concurrent_submissions_each_written_whole(ready, auth):
    from prometheus_client import REGISTRY

    client, db, writer = ready, ready.app.state.db, ready.app.state.intake
    written_before = REGISTRY.get_sample_value("onenet_intake_batch_submissions_sum") or 0
    body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了", "location": {"grid": GRID1}}
    headers = [{**auth(**RES1), "Idempotency-Key": f"kiosk-{i}"} for i in range(30)]
    # 30 distinct keys, 10 of them sent twice at once: 30 requests, each retry replays its first
    resps = await asyncio.gather(*(client.post("/services/v1/requests", json=body, headers=h)
                                   for h in headers + headers[:10]))
    assert {r.status_code for r in resps} == {201}, [r.text for r in resps if r.status_code != 201][:3]
    assert Counter(r.headers["idempotency-replayed"] for r in resps) == {"false": 30, "true": 10}
    for first, again in zip(resps[:10], resps[30:]):
        assert first.json() == again.json()
    ids = {r.json()["id"] for r in resps}
    assert len(ids) == 30
    R = ServiceRequest
    assert await _count(db, R) == 30
    assert await _count(db, TimelineEntry, TimelineEntry.request_id.in_(ids)) == 30
    assert await _count(db, OutboxEvent, OutboxEvent.type == "request.submitted") == 30
    assert await _count(db, IdempotencyRecord) == 30
    # all of them written whole by batches: a batch that failed would be written again one by one, hiding it
    assert writer.failures == 0 and writer.written == 30 and writer.batches >= 1
    # ops see the batches: submissions per batch, and how long each took
    assert REGISTRY.get_sample_value("onenet_intake_batch_submissions_sum") - written_before == 30
    assert REGISTRY.get_sample_value("onenet_intake_batch_seconds_count") >= writer.batches
    # replayed later, one at a time, from the stored record
    r = await client.post("/services/v1/requests", json=body, headers=headers[3])
    assert r.status_code == 201 and r.headers["idempotency-replayed"] == "true" and r.json() == resps[3].json()
    r = await client.post("/services/v1/requests", json={**body, "description": "别的事"}, headers=headers[3])
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"
    # without a key, every submission is a new request
    r1, r2 = await asyncio.gather(submit(client, auth), submit(client, auth))
    assert r1.status_code == r2.status_code == 201 and r1.json()["id"] != r2.json()["id"]
    assert "idempotency-replayed" not in r1.headers


async def test_same_key_while_the_first_is_being_written_replays_it(ready, auth):
    """A kiosk that retries before its first answer came back waits for that submission and replays it, whatever
    batch each would have landed in (on PostgreSQL two concurrent batches would otherwise both pass the key check
    and the second fail whole). A different body under the key is refused, as for a stored key."""
    import threading

    client, writer = ready, ready.app.state.intake
    body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了", "location": {"grid": GRID1}}
    headers = {**auth(**RES1), "Idempotency-Key": "kiosk-retry"}
    hold, real = threading.Event(), writer._write

    def held(batch):  # every batch, on either backend's path
        _wait(hold)
        return real(batch)

    writer._write = held
    batches = writer.batches
    try:
        first = asyncio.create_task(client.post("/services/v1/requests", json=body, headers=headers))
        while not writer._in_flight:
            await asyncio.sleep(0.01)
        retry = asyncio.create_task(client.post("/services/v1/requests", json=body, headers=headers))
        other = asyncio.create_task(client.post("/services/v1/requests", json={**body, "description": "别的"},
                                                headers=headers))
        await asyncio.sleep(0.1)
        assert not retry.done() and not other.done()  # waiting for the first, not written beside it
        hold.set()
        first, retry, other = await first, await retry, await other
    finally:
        hold.set()
        writer._write = real
    assert first.status_code == retry.status_code == 201 and retry.json() == first.json()
    assert (first.headers["idempotency-replayed"], retry.headers["idempotency-replayed"]) == ("false", "true")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert await _count(ready.app.state.db, ServiceRequest) == 1
    assert writer.batches == batches + 1  # the retries never reached the writer
    assert writer.failures == 0 and not writer._in_flight


async def test_submission_written_while_the_writer_is_cancelled_is_answered_once(ready, auth):
    """Shutdown cancels the writer while a batch is on its thread: the batch still commits, and its submissions
    get what it wrote, instead of being written again (a second request for a keyless submission)."""
    import threading

    client, writer = ready, ready.app.state.intake
    inside, hold, real = threading.Event(), threading.Event(), writer._write

    def held(batch):
        inside.set()
        _wait(hold)
        return real(batch)

    writer._write = held
    try:
        pending = asyncio.create_task(submit(client, auth))
        await asyncio.to_thread(_wait, inside)
        writer._writer.cancel()
        await asyncio.sleep(0.05)
        hold.set()
        r = await pending
    finally:
        hold.set()
        writer._write = real
    assert r.status_code == 201, r.text
    assert await _count(ready.app.state.db, ServiceRequest) == 1
    assert writer.failures == 0


async def test_edited_item_is_not_taken_from_the_cache(ready, auth):
    client = ready
    r = await submit(client, auth)
    assert r.status_code == 201 and r.json()["item_version"] == 1  # item version 1 is cached now
    content = {k: v for k, v in REPAIR.items() if k != "code"}
    r = await client.put("/services/v1/catalogue/items/SH-WX-001", json={**content, "name": "家电维修（新）",
                                                                        "version": 1}, headers=auth(**OPS))
    assert r.status_code == 200, r.text
    r = await submit(client, auth)
    assert r.status_code == 201 and r.json()["item_version"] == 2
    r = await submit(client, auth)
    assert r.status_code == 201 and r.json()["item_version"] == 2


async def test_withdrawn_item_refused_but_a_retry_still_replays(ready, auth):
    client = ready
    headers = {**auth(**RES1), "Idempotency-Key": "kiosk-before-withdrawal"}
    body = {"item_code": "SH-WX-001", "channel": "app", "description": "水管漏水", "location": {"grid": GRID1}}
    first = await client.post("/services/v1/requests", json=body, headers=headers)
    assert first.status_code == 201
    r = await client.delete("/services/v1/catalogue/items/SH-WX-001", headers=auth(**OPS))
    assert r.status_code == 200, r.text
    r = await submit(client, auth)
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "item.unknown"
    r = await client.post("/services/v1/requests", json=body, headers=headers)
    assert r.status_code == 201 and r.headers["idempotency-replayed"] == "true" and r.json() == first.json()
    r = await client.post("/services/v1/requests", json=body, headers={**auth(**RES1), "Idempotency-Key": "new"})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "item.unknown"


async def test_submission_errors_are_answered_as_problems(ready, auth):
    """Malformed JSON, invalid fields, no token, an unknown item, a body too large, a key too long: each its
    problem; a well-formed submission 201 with its request id and no duplicates yet."""
    client = ready
    h = {**auth(**RES1), "content-type": "application/json"}
    body = {"item_code": "SH-WX-001", "channel": "app", "description": "水管漏水", "location": {"grid": GRID1}}
    r = await client.post("/services/v1/requests", content=b'{"item_code": ', headers=h)
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    r = await client.post("/services/v1/requests", json={**body, "channel": "fax"}, headers=h)
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["channel"]
    r = await client.post("/services/v1/requests", json=[body], headers=h)
    assert r.status_code == 422
    r = await client.post("/services/v1/requests", json=body)
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    r = await client.post("/services/v1/requests", json={**body, "item_code": "NOPE"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "item.unknown"
    r = await client.post("/services/v1/requests", json={**body, "description": "x" * 2_000_000}, headers=h)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    r = await client.post("/services/v1/requests", json=body, headers={**h, "Idempotency-Key": "k" * 201})
    assert r.status_code == 400
    r = await client.post("/services/v1/requests", json=body, headers=h)
    assert r.status_code == 201 and r.headers["content-type"] == "application/json" and r.headers["x-request-id"]
    assert r.json()["possible_duplicates"] == [] and r.json()["allowed_actions"]


async def test_grid_centres_snapshot_follows_a_moved_grid(ready, auth):
    """Intake keeps a short-lived snapshot of grid centres for lat/long; moving a grid here drops it at once."""
    from tests.svc_services.conftest import GRID2, OPS
    client = ready
    near1 = {"lat": 39.9211, "long": 116.4431}
    r = await submit(client, auth, location=near1)
    assert r.status_code == 201 and r.json()["grid"] == GRID1
    r = await client.put(f"/services/v1/grids/{GRID2}", json={"name": "幸福二网格", **near1}, headers=auth(**OPS))
    assert r.status_code == 200
    r = await submit(client, auth, location=near1)
    assert r.status_code == 201 and r.json()["grid"] == GRID2
    r = await submit(client, auth, location={"lat": 30.0, "long": 120.0})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "location.outside_grids"


async def test_stored_keys_are_looked_up_through_the_primary_key(ready, auth):
    """The batch's replay lookup names caller and key, so it searches the (caller, key) primary key; by key alone
    it read the whole idempotency table once per batch. Its item lookup, in the same statement, searches too.
    Same key from two callers: two requests."""
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql, sqlite

    from svc_services.requests.group_commit import _LOOKUPS

    client, db = ready, ready.app.state.db
    bound = _LOOKUPS.params(callers=["portal/a", "portal/b"], keys=["k1", "k2"], codes=["SH-WX-001"])
    dialect = sqlite.dialect() if db.dialect == "sqlite" else postgresql.dialect()
    sql = str(bound.compile(dialect=dialect, compile_kwargs={"literal_binds": True, "render_postcompile": True}))
    async with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            plan = " ".join(r[-1] for r in (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all())
            assert "SEARCH idempotency_keys USING" in plan and "SEARCH catalogue_items USING" in plan, plan
            assert "SCAN idempotency_keys" not in plan and "SCAN catalogue_items" not in plan, plan
        else:
            await conn.execute(text("SET enable_seqscan = off"))  # a tiny table: could it use an index at all?
            plan = " ".join(r[0] for r in (await conn.exec_driver_sql("EXPLAIN " + sql)).all())
            assert "Index" in plan and "Seq Scan" not in plan, plan
    body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了", "location": {"grid": GRID1}}
    a = await client.post("/services/v1/requests", json=body, headers={**auth(**RES1), "Idempotency-Key": "same"})
    b = await client.post("/services/v1/requests", json=body, headers={**auth(**STAFF), "Idempotency-Key": "same"})
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]
    again = await client.post("/services/v1/requests", json=body, headers={**auth(**RES1), "Idempotency-Key": "same"})
    assert again.json()["id"] == a.json()["id"] and again.headers["idempotency-replayed"] == "true"


async def test_possible_duplicates_are_read_in_index_order_up_to_the_limit(ready, auth):
    """3,000 open requests of one item in one grid: the duplicates query walks the (item, grid, created_at, id)
    index backwards and stops at its LIMIT, instead of reading every request of the grid and sorting them. On
    PostgreSQL the statement is prepared while the table is nearly empty, as on a fresh deployment, and must
    not keep a plan costed for that moment (common.db asks for custom plans)."""
    from sqlalchemy import text
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.dialects.postgresql import asyncpg

    from common.auth import Principal

    client, db = ready, ready.app.state.db
    body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了", "location": {"grid": GRID1}}
    first = await client.post("/services/v1/requests", json=body, headers=auth(**RES1))
    assert first.status_code == 201
    grid_worker = Principal(member="portal", user="grid1", role="grid_worker", scopes=(f"grid:{GRID1}",))
    created = first.json()["created_at"]
    since, until = _at(created) - _hours(72), _at(created) + _hours(72)
    stmt = duplicates.same_grid_statement(grid_worker, False).params(item_code="SH-WX-001", grid=GRID1, since=since,
                                                                   until=until, limit=duplicates.MAX_DUPLICATES + 1)
    columns = [c.name for c in ServiceRequest.__table__.columns]
    picks = ", ".join("'dup-' || n" if c == "id" else c for c in columns)
    clone = text(f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 3000) "
                 f"INSERT INTO service_requests ({', '.join(columns)}) SELECT {picks} FROM service_requests, g "
                 f"WHERE service_requests.id = :id")
    async with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            await conn.execute(clone, {"id": first.json()["id"]})
            await conn.execute(text("ANALYZE"))
            sql = str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True,
                                                                                "render_postcompile": True}))
            plan = " ".join(r[-1] for r in (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)).all())
            assert "USING INDEX ix_service_requests_item_grid_created_id" in plan and "TEMP B-TREE" not in plan, plan
        else:
            compiled = stmt.compile(dialect=asyncpg.dialect())
            expanded = compiled.construct_expanded_state()
            values = ", ".join(_literal(expanded.parameters[name]) for name in expanded.positiontup)
            driver = (await conn.get_raw_connection()).driver_connection
            assert (await driver.fetchval("SHOW plan_cache_mode")) == "force_custom_plan"
            await driver.execute(f"PREPARE dup AS {expanded.statement}")
            for _ in range(6):  # past the point where PostgreSQL would otherwise settle on a generic plan
                await driver.fetch(f"EXECUTE dup({values})")
            await conn.execute(clone, {"id": first.json()["id"]})
            await conn.commit()
            plan = "\n".join(r[0] for r in await driver.fetch(f"EXPLAIN ANALYZE EXECUTE dup({values})"))
            await driver.execute("DEALLOCATE dup")
            assert "ix_service_requests_item_grid_created_id" in plan and "Sort" not in plan, plan
        rows = (await conn.execute(*duplicates.same_grid_query(grid_worker, "SH-WX-001", GRID1, since, until,
                                                            limit=duplicates.MAX_DUPLICATES + 1))).all()
    assert len(rows) == duplicates.MAX_DUPLICATES + 1


def _literal(value) -> str:
    text_ = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text_.replace("'", "''") + "'"


def _at(iso: str):
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _hours(n: int):
    from datetime import timedelta

    return timedelta(hours=n)


async def test_batched_possible_duplicates_equal_a_lone_reading(ready, auth):
    """The writer reads a batch's possible duplicates by grid in one query: each answer's list is the one
    `duplicates.find` gives for that request afterwards, in order and value, a duplicate whose state changed
    meanwhile included."""
    from common.auth import Principal

    client, db, writer = ready, ready.app.state.db, ready.app.state.intake
    body = {"item_code": "SH-WX-001", "channel": "grid_patrol", "description": "路灯不亮", "location": {"grid": GRID1}}
    earlier = [await client.post("/services/v1/requests", json=body, headers=auth(**GRIDW)) for _ in range(3)]
    assert {r.status_code for r in earlier} == {201}
    assert [d["state"] for d in earlier[2].json()["possible_duplicates"]] == ["submitted", "submitted"]
    accepted = earlier[0].json()["id"]  # made as "submitted" above; "accepted" from now on
    r = await client.post(f"/services/v1/requests/{accepted}/transitions", json={"action": "accept", "version": 1},
                          headers=auth(**GRIDW))
    assert r.status_code == 200, r.text
    batches = writer.batches
    resps = await asyncio.gather(*(client.post("/services/v1/requests", json=body, headers=auth(**GRIDW))
                                   for _ in range(6)))
    assert {r.status_code for r in resps} == {201} and writer.batches > batches
    grid_worker = Principal(member="test", user="grid1", role="grid_worker", scopes=(f"grid:{GRID1}",))
    async with db.session() as session:
        for r in resps:
            req = await session.get(ServiceRequest, r.json()["id"])
            again = await duplicates.find(session, grid_worker, req, ready.app.state.settings)
            assert r.json()["possible_duplicates"] == [d.model_dump(mode="json") for d in again]
            assert {d["id"]: d["state"] for d in r.json()["possible_duplicates"]}[accepted] == "accepted"


async def _one_batch(client, writer, posts):
    """`posts` (coroutines) written as ONE batch: no writer starts until all of them wait in the queue."""
    for _ in range(1000):  # the writer that wrote earlier submissions may not have left yet: it would take these
        if writer._writer is None:
            break
        await asyncio.sleep(0.01)
    writer._writer = asyncio.get_running_loop().create_future()  # stands for a writer: none is started
    try:
        tasks = [asyncio.create_task(p) for p in posts]
        for _ in range(1000):
            if len(writer._queue) == len(tasks) or any(t.done() for t in tasks):
                break  # all queued; or one answered without the writer, which the test's assertions will show
            await asyncio.sleep(0.01)
        await writer._drain()
        return await asyncio.gather(*tasks)
    finally:
        writer._writer = None


async def test_postgres_batch_is_two_statements_outside_a_transaction_block(ready, auth, backend):
    """On PostgreSQL a batch of grid submissions (one item, grid and caller) is two statements in autocommit:
    its stored keys and item versions looked up with its possible duplicates read (one round trip), and all four
    tables written in ONE statement (atomic by itself; no BEGIN / COMMIT); the batch's own rows still appear among
    each other's possible duplicates, and each idempotency record holds exactly the answer sent."""
    if backend != "postgresql":
        pytest.skip("SQLite writes a batch in one BEGIN IMMEDIATE transaction")
    from sqlalchemy import event

    client, writer = ready, ready.app.state.intake
    earlier = await client.post("/services/v1/requests", headers=auth(**GRIDW), json={
        "item_code": "SH-WX-001", "channel": "grid_patrol", "description": "井盖松动", "location": {"grid": GRID1}})
    assert earlier.status_code == 201
    sent: list[str] = []
    listener = lambda *a: sent.append(a[2])  # noqa: E731
    event.listen(writer.threads.engine, "before_cursor_execute", listener)
    batches = writer.batches
    try:
        body = {"item_code": "SH-WX-001", "channel": "grid_patrol", "description": "井盖松动",
                "location": {"grid": GRID1}}
        resps = await _one_batch(client, writer, [
            client.post("/services/v1/requests", json=body, headers={**auth(**GRIDW), "Idempotency-Key": f"k{i}"})
            for i in range(6)])
    finally:
        event.remove(writer.threads.engine, "before_cursor_execute", listener)
    assert {r.status_code for r in resps} == {201} and writer.batches == batches + 1
    assert len(sent) == 2, sent
    assert "idempotency_keys" in sent[0] and "catalogue_items" in sent[0]
    assert "ORDER BY service_requests.created_at DESC" in sent[0]
    assert all(table in sent[1] for table in ("INSERT INTO service_requests", "json_to_recordset", "outbox",
                                              "request_timeline", "idempotency_keys"))
    ids = {r.json()["id"] for r in resps}
    for r in resps:  # newest first: the batch's others (made after `earlier`), then `earlier`
        assert [d["id"] for d in r.json()["possible_duplicates"]][-1] == earlier.json()["id"]
        assert {d["id"] for d in r.json()["possible_duplicates"]} == ids - {r.json()["id"]} | {earlier.json()["id"]}
    async with ready.app.state.db.session() as s:
        stored = dict((await s.execute(select(IdempotencyRecord.key, IdempotencyRecord.response_body)
                                       .where(IdempotencyRecord.key.like("k%")))).all())
    assert {k: stored[k] for k in stored} == {f"k{i}": r.text for i, r in enumerate(resps)}
    # planned with its values each time (ADR 0009): never prepared on the server
    prepared = await writer.threads.call(writer.threads.autocommit, lambda c: c.exec_driver_sql(
        "SELECT statement FROM pg_prepared_statements").scalars().all())
    assert not any("FROM idempotency_keys" in p or "ORDER BY service_requests" in p for p in prepared), prepared


async def test_key_stored_before_the_batch_is_replayed_and_the_rest_written(ready, auth):
    """A key of the batch stored already (by another replica, say) is found by the batch's lookup: that
    submission replays what is stored, and the batch's others are written in the same batch."""

    from sqlalchemy import create_engine

    from common.writer_threads import blocking_url

    client, db, writer = ready, ready.app.state.db, ready.app.state.intake
    real, other = writer._write, create_engine(blocking_url(db.url))

    def stored_first(batch):
        with other.begin() as c:
            c.execute(IdempotencyRecord.__table__.insert(), {
                "caller": batch[0].principal.caller, "key": "race", "request_hash": batch[0].fingerprint,
                "status_code": 201, "response_body": '{"id": "written-elsewhere"}',
                "created_at": Clock().now()})
        writer._write = real
        return real(batch)

    writer._write = stored_first
    failures, batches = writer.failures, writer.batches
    body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了", "location": {"grid": GRID1}}
    try:
        race, rest = await _one_batch(client, writer, [
            client.post("/services/v1/requests", json=body, headers={**auth(**RES1), "Idempotency-Key": "race"}),
            client.post("/services/v1/requests", json=body, headers={**auth(**RES1), "Idempotency-Key": "rest"})])
    finally:
        writer._write = real
        other.dispose()
    assert race.status_code == 201 and race.json() == {"id": "written-elsewhere"}
    assert race.headers["idempotency-replayed"] == "true"
    assert rest.status_code == 201 and rest.headers["idempotency-replayed"] == "false"
    assert writer.failures == failures and writer.batches == batches + 1
    assert await _count(db, ServiceRequest) == 1 and await _count(db, TimelineEntry) == 1
    assert await _count(db, OutboxEvent, OutboxEvent.type == "request.submitted") == 1


async def test_postgres_key_stored_meanwhile_fails_the_batch_whole_and_replays(ready, auth, backend):
    """Another writer's transaction holding the batch's key, uncommitted when the statement starts and committed
    while it waits: the statement fails on the primary key, nothing of the batch is written, and the submission
    is written again alone, which replays what the other writer stored. The commit comes from a thread that
    sleeps (relative), not a threading.Timer, whose absolute deadline hangs under libfaketime."""
    if backend != "postgresql":
        pytest.skip("SQLite's batch holds the write lock from its lookup to its commit")
    import threading

    from sqlalchemy import create_engine

    from common.writer_threads import blocking_url

    client, db, writer = ready, ready.app.state.db, ready.app.state.intake
    real, other = writer._write, create_engine(blocking_url(db.url))

    def meanwhile(batch):
        conn = other.connect()
        tx = conn.begin()
        conn.execute(IdempotencyRecord.__table__.insert(), {
            "caller": batch[0].principal.caller, "key": "race", "request_hash": batch[0].fingerprint,
            "status_code": 201, "response_body": '{"id": "written-elsewhere"}',
            "created_at": Clock().now()})
        def commit_later():
            time.sleep(0.3)
            tx.commit()
            conn.close()

        threading.Thread(target=commit_later, daemon=True).start()
        writer._write = real  # the batch's submission written again alone: as it is
        return real(batch)

    writer._write = meanwhile
    failures = writer.failures
    try:
        body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了", "location": {"grid": GRID1}}
        r = await client.post("/services/v1/requests", json=body, headers={**auth(**RES1), "Idempotency-Key": "race"})
    finally:
        writer._write = real
        other.dispose()
    assert r.status_code == 201 and r.json() == {"id": "written-elsewhere"}
    assert r.headers["idempotency-replayed"] == "true" and writer.failures == failures + 1
    assert await _count(db, ServiceRequest) == 0 and await _count(db, TimelineEntry) == 0
    assert await _count(db, OutboxEvent, OutboxEvent.type == "request.submitted") == 0


async def test_stored_fingerprint_is_common_idempotencys(ready, auth):
    """The key's fingerprint is `common.idempotency.request_fingerprint` of the route's path and the body."""
    from common.idempotency import request_fingerprint
    from svc_services.requests.schemas import RequestCreate

    client, db = ready, ready.app.state.db
    body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了：“三号楼”",
            "location": {"grid": GRID1, "address": "三号楼 2 单元"}}
    r = await client.post("/services/v1/requests", json=body, headers={**auth(**RES1), "Idempotency-Key": "fp"})
    assert r.status_code == 201, r.text
    async with db.session() as s:
        stored = (await s.execute(select(IdempotencyRecord.request_hash).where(IdempotencyRecord.key == "fp"))
                  ).scalar_one()
    assert stored == request_fingerprint("POST", "/services/v1/requests", RequestCreate.model_validate(body))


async def test_mixed_batch_duplicates_equal_a_lone_reading(ready, auth, backend):
    """One batch of submissions of two items, in two grids, by a grid worker and a resident (who may see only
    their own requests): each answer's possible duplicates are what `duplicates.find` gives for it afterwards,
    the batch's others included wherever their caller may see them. On PostgreSQL its rows are still one
    statement."""
    from sqlalchemy import event

    from common.auth import Principal
    from tests.svc_services.conftest import GRID2, GRIDW2, P1

    client, db, writer = ready, ready.app.state.db, ready.app.state.intake
    repair = {"item_code": "SH-WX-001", "channel": "grid_patrol", "description": "路灯不亮", "location": {"grid": GRID1}}
    by_app = {**repair, "channel": "app"}
    meal = {"item_code": "YL-ZC-001", "channel": "app", "description": "想订午餐", "location": {"grid": GRID1},
            "attributes": {"meal_time": "lunch"}}
    earlier = [await client.post("/services/v1/requests", json=repair, headers=auth(**GRIDW)),
               await client.post("/services/v1/requests", json=by_app, headers=auth(**RES1)),
               await client.post("/services/v1/requests", json={**repair, "location": {"grid": GRID2}},
                                 headers=auth(**GRIDW2))]
    assert {r.status_code for r in earlier} == {201}, [r.text for r in earlier]
    posts = [(GRIDW, repair), (GRIDW, repair), (RES1, by_app), (RES1, by_app), (GRIDW2, {**repair, "location":
             {"grid": GRID2}}), (GRIDW, meal), (RES1, meal)]
    sent: list[str] = []
    listener = lambda *a: sent.append(a[2])  # noqa: E731
    if backend == "postgresql":
        event.listen(writer.threads.engine, "before_cursor_execute", listener)
    batches, written = writer.batches, writer.written
    try:
        resps = await _one_batch(client, writer, [
            client.post("/services/v1/requests", json=body, headers=auth(**who)) for who, body in posts])
    finally:
        if backend == "postgresql":
            event.remove(writer.threads.engine, "before_cursor_execute", listener)
    assert {r.status_code for r in resps} == {201}, [r.text for r in resps]
    assert (writer.batches, writer.written) == (batches + 1, written + len(posts))
    if backend == "postgresql":
        assert len([s for s in sent if s.lstrip().startswith(("INSERT", "WITH"))]) == 1, sent
    principals = {id(GRIDW): Principal(member="app-test", user="grid1", role="grid_worker", scopes=(f"grid:{GRID1}",)),
                  id(GRIDW2): Principal(member="app-test", user="grid2", role="grid_worker",
                                        scopes=(f"grid:{GRID2}",)),
                  id(RES1): Principal(member="app-test", user="resident1", role="resident", scopes=(f"person:{P1}",))}
    seen_batch_rows = 0
    ids = {r.json()["id"] for r in resps}
    async with db.session() as session:
        for (who, _), r in zip(posts, resps):
            req = await session.get(ServiceRequest, r.json()["id"])
            again = await duplicates.find(session, principals[id(who)], req, ready.app.state.settings)
            assert r.json()["possible_duplicates"] == [d.model_dump(mode="json") for d in again], r.json()["id"]
            seen_batch_rows += sum(d["id"] in ids for d in r.json()["possible_duplicates"])
    assert seen_batch_rows > 0


async def test_postgres_stored_responses_are_compressed_with_lz4(ready, auth, backend):
    """A stored response over PostgreSQL's 2 kB compression threshold is compressed with lz4 (migration
    f4a9d2c7b1e3), not pglz, whose compression cost the intake about 5 % of its throughput; it replays intact."""
    if backend != "postgresql":
        pytest.skip("SQLite stores text as it is")
    from sqlalchemy import text

    client, db = ready, ready.app.state.db
    body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了，" * 300, "location": {"grid": GRID1}}
    headers = {**auth(**RES1), "Idempotency-Key": "big"}
    first = await client.post("/services/v1/requests", json=body, headers=headers)
    assert first.status_code == 201 and len(first.content) > 4_000
    async with db.session() as s:
        method = (await s.execute(text("SELECT pg_column_compression(response_body) FROM idempotency_keys "
                                       "WHERE key = 'big'"))).scalar_one()
    assert method == "lz4"
    again = await client.post("/services/v1/requests", json=body, headers=headers)
    assert again.headers["idempotency-replayed"] == "true" and again.content == first.content
