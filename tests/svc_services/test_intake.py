"""The intake path (requests.intake): submissions checked one by one and written together in one transaction,
with cached item versions and grids. Whatever the batching, each submission gets its own request, timeline entry,
outbox event and idempotency record; a cached item that was edited or withdrawn meanwhile is never used."""
from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from common.clock import Clock
from sqlalchemy import func, select

from svc_services.base import IdempotencyRecord, OutboxEvent
from svc_services.requests.models import ServiceRequest, TimelineEntry
from tests.svc_services.conftest import GRID1, GRIDW, OPS, REPAIR, RES1, STAFF, submit


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
    # all of them written by the batch writer: a batch that fails falls back to the slow path, which would hide it
    assert writer.fallbacks == 0 and writer.written == 30 and writer.batches >= 1
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
        hold.wait(10)
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
    assert writer.fallbacks == 0 and not writer._in_flight


async def test_submission_written_while_the_writer_is_cancelled_is_answered_once(ready, auth):
    """Shutdown cancels the writer while a batch is on its thread: the batch still commits, and its submissions
    get what it wrote, instead of being redone by the slow path (a second request for a keyless submission)."""
    import threading

    client, writer = ready, ready.app.state.intake
    inside, hold, real = threading.Event(), threading.Event(), writer._write

    def held(batch):
        inside.set()
        hold.wait(10)
        return real(batch)

    writer._write = held
    try:
        pending = asyncio.create_task(submit(client, auth))
        await asyncio.to_thread(inside.wait, 10)
        for task in list(writer._writers):
            task.cancel()
        await asyncio.sleep(0.05)
        hold.set()
        r = await pending
    finally:
        hold.set()
        writer._write = real
    assert r.status_code == 201, r.text
    assert await _count(ready.app.state.db, ServiceRequest) == 1
    assert writer.fallbacks == 0


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


async def test_fast_path_answers_errors_as_fastapi_does(ready, auth):
    """requests.fastpath takes well-formed submissions only; everything else is answered by FastAPI as before."""
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

    from svc_services.requests.intake import _LOOKUPS

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
    from svc_services.requests import service

    client, db = ready, ready.app.state.db
    body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了", "location": {"grid": GRID1}}
    first = await client.post("/services/v1/requests", json=body, headers=auth(**RES1))
    assert first.status_code == 201
    grid_worker = Principal(member="portal", user="grid1", role="grid_worker", scopes=(f"grid:{GRID1}",))
    created = first.json()["created_at"]
    since, until = _at(created) - _hours(72), _at(created) + _hours(72)
    stmt = service._same_grid_statement(grid_worker, False).params(item_code="SH-WX-001", grid=GRID1, since=since,
                                                                   until=until, limit=service.MAX_DUPLICATES + 1)
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
        rows = (await conn.execute(*service.same_grid_query(grid_worker, "SH-WX-001", GRID1, since, until,
                                                            limit=service.MAX_DUPLICATES + 1))).all()
    assert len(rows) == service.MAX_DUPLICATES + 1


def _literal(value) -> str:
    text_ = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text_.replace("'", "''") + "'"


def _at(iso: str):
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _hours(n: int):
    from datetime import timedelta

    return timedelta(hours=n)


def test_duplicates_spliced_into_the_answer_equal_a_whole_dump():
    """The writer adds each possible duplicate's JSON to a response made on the event loop: the same bytes as
    pydantic dumping the whole response with them, whatever the attributes hold (one named like the field)."""
    from datetime import datetime, timezone

    from svc_services.requests.intake import _with_duplicates
    from svc_services.requests.schemas import DuplicateOut, RequestOut

    at = datetime(2026, 11, 29, 9, 30, 1, 123456, tzinfo=timezone.utc)
    values = dict(id="r1", item_code="SH-WX-001", item_version=1, category="c", department="d", channel="app",
                  person_id=None, submitted_by="app/u", submitted_role="resident", proxy_user=None,
                  description='引号" <b>', attributes={"possible_duplicates": []}, address=None, lat=None, long=None,
                  grid=GRID1, community="c", priority="normal", state="submitted", state_name="已提交", version=1,
                  escalation_level="grid", assignee_kind=None, assignee_id=None, overdue=False, merged_into=None,
                  rating=None, rating_comment=None, response_due_at=None, start_due_at=None, resolution_due_at=None,
                  created_at=at, accepted_at=None, first_response_at=None, resolved_at=None, closed_at=None,
                  updated_at=at, allowed_actions=["cancel"])
    dups = [DuplicateOut(id="r0", match="grid", grid=GRID1, state="accepted", created_at=at),
            DuplicateOut(id="r9", match="distance", distance_m=12.5, grid=GRID1, state="submitted", created_at=at)]
    for found in ([], dups):
        whole = RequestOut(**values, possible_duplicates=found).model_dump_json()
        answer = RequestOut(**values, possible_duplicates=[]).model_dump_json()
        assert _with_duplicates(answer, [d.model_dump_json() for d in found]) == whole


async def test_batched_possible_duplicates_equal_the_slow_paths(ready, auth):
    """The writer reads a batch's possible duplicates by grid in one query (on SQLite as one JSON row) and makes
    each one's JSON once per request and state: each answer's list is the one `service.find_duplicates` gives
    for that request afterwards, in order and value, a duplicate whose state changed meanwhile included."""
    from common.auth import Principal
    from svc_services.requests import service

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
            again = await service.find_duplicates(session, grid_worker, req, ready.app.state.settings)
            assert r.json()["possible_duplicates"] == [d.model_dump(mode="json") for d in again]
            assert {d["id"]: d["state"] for d in r.json()["possible_duplicates"]}[accepted] == "accepted"


async def _one_batch(client, writer, posts):
    """`posts` (coroutines) written as ONE batch: no writer starts until all of them wait in the queue."""
    for _ in range(1000):  # the writer that wrote earlier submissions may not have left yet: it would take these
        if not writer._writers:
            break
        await asyncio.sleep(0.01)
    max_writers = writer.max_writers
    writer.max_writers = 0
    try:
        tasks = [asyncio.create_task(p) for p in posts]
        for _ in range(1000):
            if len(writer._queue) == len(tasks) or any(t.done() for t in tasks):
                break  # all queued; or one answered without the writer, which the test's assertions will show
            await asyncio.sleep(0.01)
        writer.max_writers = max_writers
        await writer._drain()
        return await asyncio.gather(*tasks)
    finally:
        writer.max_writers = max_writers


async def test_postgres_batch_is_one_statement_outside_a_transaction_block(ready, auth, backend):
    """On PostgreSQL a batch of grid submissions (one item, grid and caller) is ONE statement in autocommit: its
    stored keys and item versions checked, its possible duplicates made, and all four tables written (no
    BEGIN / COMMIT, no second round trip); the batch's own rows still appear among each other's possible
    duplicates, and each idempotency record holds exactly the answer sent."""
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
    assert len(sent) == 1, sent
    assert all(table in sent[0] for table in ("idempotency_keys", "catalogue_items", "string_agg",
                                              "json_to_recordset", "outbox", "request_timeline"))
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
    assert not any("b_stored" in p for p in prepared), prepared


async def test_postgres_one_statement_looks_up_keys_and_items_through_their_primary_keys(ready, auth, backend):
    """The one statement's key and item checks search the (caller, key) and code primary keys, and its possible
    duplicates walk the (item, grid, created_at, id) index, even with index scans merely allowed to win."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's one-statement batch")
    from sqlalchemy import event

    client, writer = ready, ready.app.state.intake
    seen: list[tuple[str, dict]] = []
    listener = lambda conn, cursor, sql, params, *a: seen.append((sql, params))  # noqa: E731
    event.listen(writer.threads.engine, "before_cursor_execute", listener)
    try:
        r = await client.post("/services/v1/requests", headers={**auth(**GRIDW), "Idempotency-Key": "plan"}, json={
            "item_code": "SH-WX-001", "channel": "grid_patrol", "description": "井盖松动", "location": {"grid": GRID1}})
    finally:
        event.remove(writer.threads.engine, "before_cursor_execute", listener)
    assert r.status_code == 201
    [(sql, params)] = [(s, p) for s, p in seen if "b_stored" in s]

    def explain(conn):
        conn.exec_driver_sql("BEGIN")
        try:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql, params))
        finally:
            conn.exec_driver_sql("ROLLBACK")

    plan = await writer.threads.call(writer.threads.autocommit, explain)
    for index in ("pk_idempotency_keys", "pk_catalogue_items", "ix_service_requests_item_grid_created_id"):
        assert index in plan, plan
    assert "Seq Scan on idempotency_keys" not in plan and "Seq Scan on service_requests" not in plan, plan


async def test_postgres_key_stored_before_the_batch_is_replayed_and_the_rest_written(ready, auth, backend):
    """A key of the batch stored already (by another replica, say) is found by the one statement, which then
    writes nothing: that submission replays what is stored, and the batch's others are written with the next
    batch, none of them redone by the slow path."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's one-statement batch")

    from sqlalchemy import create_engine

    from common.db import blocking_url

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
    fallbacks, batches = writer.fallbacks, writer.batches
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
    assert writer.fallbacks == fallbacks and writer.batches == batches + 1
    assert await _count(db, ServiceRequest) == 1 and await _count(db, TimelineEntry) == 1
    assert await _count(db, OutboxEvent, OutboxEvent.type == "request.submitted") == 1


async def test_postgres_key_stored_meanwhile_fails_the_batch_whole_and_replays(ready, auth, backend):
    """Another writer's transaction holding the batch's key, uncommitted when the statement starts and committed
    while it waits: the statement fails on the primary key, nothing of the batch is written, and the submission
    is decided again by the slow path, which replays what the other writer stored."""
    if backend != "postgresql":
        pytest.skip("SQLite's batch holds the write lock from its lookup to its commit")
    import threading

    from sqlalchemy import create_engine

    from common.db import blocking_url

    client, db, writer = ready, ready.app.state.db, ready.app.state.intake
    real, other = writer._write, create_engine(blocking_url(db.url))

    def meanwhile(batch):
        conn = other.connect()
        tx = conn.begin()
        conn.execute(IdempotencyRecord.__table__.insert(), {
            "caller": batch[0].principal.caller, "key": "race", "request_hash": batch[0].fingerprint,
            "status_code": 201, "response_body": '{"id": "written-elsewhere"}',
            "created_at": Clock().now()})
        threading.Timer(0.3, lambda: (tx.commit(), conn.close())).start()
        return real(batch)

    writer._write = meanwhile
    fallbacks = writer.fallbacks
    try:
        body = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了", "location": {"grid": GRID1}}
        r = await client.post("/services/v1/requests", json=body, headers={**auth(**RES1), "Idempotency-Key": "race"})
    finally:
        writer._write = real
        other.dispose()
    assert r.status_code == 201 and r.json() == {"id": "written-elsewhere"}
    assert r.headers["idempotency-replayed"] == "true" and writer.fallbacks == fallbacks + 1
    assert await _count(db, ServiceRequest) == 0 and await _count(db, TimelineEntry) == 0
    assert await _count(db, OutboxEvent, OutboxEvent.type == "request.submitted") == 0


async def test_postgres_duplicates_made_in_sql_equal_pydantics(ready, backend):
    """The one statement writes each possible duplicate's JSON itself: the same bytes as
    `DuplicateOut.model_dump_json()` of the value read back (in UTC, as the Python writer makes it), whatever
    the microseconds (none, a few, all six digits), the time zone the value came in, or the characters of its
    id."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's one-statement batch")
    from datetime import datetime, timedelta, timezone

    from svc_services.requests.batch_statement import _DUPLICATE_JSON
    from svc_services.requests.schemas import DuplicateOut

    writer = ready.app.state.intake
    base = datetime(2026, 11, 30, 23, 59, 59, tzinfo=timezone.utc)
    cases = [(f"r{n}", base.replace(microsecond=us)) for n, us in enumerate((0, 5, 120000, 123456, 999999))]
    cases += [('id "引号" \\ 中', base + timedelta(days=40)),
              ("east", base.astimezone(timezone(timedelta(hours=8))).replace(microsecond=10))]
    values = ", ".join(f"(%(id{i})s, %(at{i})s::timestamptz)" for i in range(len(cases)))
    params = {k: v for i, (id_, at) in enumerate(cases) for k, v in ((f"id{i}", id_), (f"at{i}", at))}
    sql = (f"SELECT {_DUPLICATE_JSON} FROM (VALUES {values}) AS v(id, created_at), "
           f"LATERAL (SELECT v.id, v.created_at, '110105001001001'::text AS grid, 'in_progress'::text AS state) c")
    made = await writer.threads.call(writer.threads.autocommit,
                                     lambda c: c.exec_driver_sql(sql, params).scalars().all())
    assert made == [DuplicateOut(id=id_, match="grid", grid="110105001001001", state="in_progress",
                                 created_at=at.astimezone(timezone.utc)).model_dump_json() for id_, at in cases]


async def test_stored_fingerprint_is_common_idempotencys(ready, auth):
    """The intake computes the key's fingerprint itself (no jsonable_encoder walk, the path from the scope): it
    must equal `common.idempotency.request_fingerprint`, or keys stored by one version would not replay on
    another."""
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


async def test_mixed_batch_duplicates_equal_the_slow_paths(ready, auth, backend):
    """One batch of submissions of two items, in two grids, by a grid worker and a resident (who may see only
    their own requests): each answer's possible duplicates are what `service.find_duplicates` gives for it
    afterwards, the batch's others included wherever their caller may see them. On PostgreSQL the whole batch
    is still one statement."""
    from sqlalchemy import event

    from common.auth import Principal
    from svc_services.requests import service
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
        assert len(sent) == 1 and "b_stored" in sent[0], sent
    principals = {id(GRIDW): Principal(member="app-test", user="grid1", role="grid_worker", scopes=(f"grid:{GRID1}",)),
                  id(GRIDW2): Principal(member="app-test", user="grid2", role="grid_worker",
                                        scopes=(f"grid:{GRID2}",)),
                  id(RES1): Principal(member="app-test", user="resident1", role="resident", scopes=(f"person:{P1}",))}
    seen_batch_rows = 0
    ids = {r.json()["id"] for r in resps}
    async with db.session() as session:
        for (who, _), r in zip(posts, resps):
            req = await session.get(ServiceRequest, r.json()["id"])
            again = await service.find_duplicates(session, principals[id(who)], req, ready.app.state.settings)
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
