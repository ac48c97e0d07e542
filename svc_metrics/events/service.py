"""Ingest: validate a whole batch, store new events once (ON CONFLICT DO NOTHING), refresh the observations of
every entity the batch touched. Re-sending a batch changes nothing; arrival order never matters."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

try:  # orjson when installed (several times faster on these payloads), else the standard library
    import orjson

    def dumps(v: Any) -> str:
        return orjson.dumps(v).decode()

    loads = orjson.loads
except ImportError:  # pragma: no cover
    import json

    def dumps(v: Any) -> str:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)

    loads = json.loads

from pydantic import ValidationError
from sqlalchemy import delete, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.bulk_insert import json_rows, sqlite_json_insert, sqlite_timestamp
from common.errors import Problem, field_error
from common.errors import translate_validation_errors
from svc_metrics.events.models import StoredEvent
from svc_metrics.events.registry import REGISTRY, Envelope
from svc_metrics.kpis import rollup
from svc_metrics.kpis.observations import Ev, Obs, derive
from svc_metrics.kpis.models import Observation

CHUNK = 400


def _too_large(n: int, max_events: int) -> Problem:
    return Problem(413, "batch_too_large", (f"一批最多 {max_events} 个事件，本批 {n} 个",
                                           f"At most {max_events} events per batch; got {n}"),
                   errors=[field_error("events", "too_long", f"最多 {max_events} 个事件", f"At most {max_events} events")])


def validate_batch(raw: list[Any], max_events: int) -> list[tuple[Envelope, str, str]]:
    """Every event checked; any error refuses the whole batch with 422 naming `events[i].field`."""
    if len(raw) > max_events:
        raise _too_large(len(raw), max_events)
    errors: list[dict[str, Any]] = []
    out: list[tuple[Envelope, str, str]] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"events[{i}]"
        if not isinstance(item, dict):
            errors.append(field_error(where, "dict_type", "应为对象", "Must be an object"))
            continue
        try:
            env = Envelope.model_validate(item)
        except ValidationError as exc:
            for e in translate_validation_errors([{**x, "loc": ("body", *x["loc"])} for x in exc.errors()]):
                e["field"] = f"{where}.{e['field']}"
                e["in"] = "body"
                errors.append(e)
            continue
        spec = REGISTRY.get(env.type)
        if spec is None:
            errors.append(field_error(f"{where}.type", "event.unknown_type", f"未知的事件类型：{env.type}",
                                      f"Unknown event type: {env.type}"))
            continue
        if spec.subject_required and not env.subject:
            errors.append(field_error(f"{where}.subject", "missing", "此事件类型须提供 subject",
                                      "This event type needs a subject"))
            continue
        try:
            data = spec.data.model_validate(env.data)
        except ValidationError as exc:
            for e in translate_validation_errors([{**x, "loc": ("body", *x["loc"])} for x in exc.errors()]):
                e["field"] = f"{where}.data.{e['field']}"
                e["in"] = "body"
                errors.append(e)
            continue
        if env.grid and env.community and not env.grid.startswith(env.community):
            errors.append(field_error(f"{where}.grid", "event.grid_outside_community", "网格编码不属于该社区",
                                      "The grid code does not lie in the community"))
            continue
        entity = spec.entity(env, data)
        if not entity:
            errors.append(field_error(f"{where}.subject", "missing", "无法确定事件所属对象",
                                      "Cannot tell which entity the event belongs to"))
            continue
        if env.event_id in seen:
            continue  # the same event twice in one batch: store it once
        seen.add(env.event_id)
        out.append((env, spec.entity_kind, str(entity)[:96]))
    if errors:
        first = errors[0]["field"]
        raise Problem(422, "validation_failed",
                      (f"事件批次有误，整批未接收（首个错误：{first}）",
                       f"The batch was refused as a whole (first error: {first})"), errors=errors[:50])
    return out


def _insert(dialect: str):
    return pg_insert if dialect == "postgresql" else sqlite_insert


def _sqlite_dt(v: Any) -> datetime:
    d = v if isinstance(v, datetime) else datetime.fromisoformat(v)
    return d.replace(tzinfo=timezone.utc) if d.tzinfo is None else d.astimezone(timezone.utc)


async def _lock_entities(session: AsyncSession, keys: list[str]) -> None:
    """PostgreSQL: serialise concurrent batches touching the same entity (sorted, so no deadlock)."""
    if session.bind.dialect.name != "postgresql" or not keys:
        return
    await session.execute(text(
        "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM "
        "(SELECT unnest(CAST(:keys AS text[])) AS k ORDER BY 1) s"), {"keys": sorted(set(keys))})


EVENT_COLUMNS = ("event_id", "type", "occurred_at", "received_at", "source", "community", "grid", "subject",
                 "entity_kind", "entity_id", "data")
# One statement per batch (common.bulk_insert.sqlite_json_insert): no per-row GIL handover in the driver thread.
SQLITE_INSERT_EVENTS = sqlite_json_insert("events", EVENT_COLUMNS, "ON CONFLICT (event_id) DO NOTHING")
OBS_COLUMNS = ("kpi", "mode", "entity_kind", "entity_id", "at", "end_at", "place", "category", "channel", "groups",
               "num", "den", "value", "key")
SQLITE_INSERT_OBS = sqlite_json_insert("kpi_observations", OBS_COLUMNS)


def sqlite_event_rows(fresh: list[tuple[Envelope, str, str]], now: datetime) -> list[tuple]:
    """The rows of SQLITE_INSERT_EVENTS (encoded with common.bulk_insert.json_rows)."""
    received = sqlite_timestamp(now)
    return [(env.event_id, env.type, sqlite_timestamp(env.occurred_at), received, env.source, env.community, env.grid,
             env.subject, kind, eid, dumps(env.data)) for env, kind, eid in fresh]


def as_ev(env: Envelope) -> Ev:
    """A fresh event as the derivations read it (from memory: never decoded back from the database)."""
    return Ev(env.event_id, env.type, env.occurred_at.astimezone(timezone.utc), env.community, env.grid,
              env.subject, env.data)


async def ingest(session: AsyncSession, events: list[tuple[Envelope, str, str]], now: datetime) -> dict[str, int]:
    """Store the new events (one executemany, ON CONFLICT DO NOTHING), bring the observations of every entity
    they touch up to date and move the month rollups by the difference, all in the caller's transaction.

    The touched entities' earlier events are read before the insert, and the batch's new events are added from
    memory, so the fresh payloads are never decoded back from the database. The observations before the batch
    are derived from the earlier events (the same pure function that stored them), so only the rows that change
    are written and the rollup moves by exactly new - old."""
    if not events:
        return {"received": 0, "accepted": 0, "duplicates": 0}
    dialect = session.bind.dialect.name
    entities = sorted({(kind, eid) for _, kind, eid in events})
    await _lock_entities(session, [f"{k}:{i}" for k, i in entities])
    conn = await session.connection()
    # Every stored event of these entities is read anyway (to derive their observations), so an event already
    # stored is found among them without a lookup of its own. (One stored under another entity would show up
    # as a conflict on insert, and then everything is read back.)
    before = await _load_events(session, entities)
    stored = {e.event_id for evs in before.values() for e in evs}
    fresh = [t for t in events if t[0].event_id not in stored]
    if not fresh:
        return {"received": len(events), "accepted": 0, "duplicates": len(events)}
    entities = sorted({(kind, eid) for _, kind, eid in fresh})
    before = {k: before[k] for k in entities}
    if dialect == "sqlite":
        new = (await conn.exec_driver_sql(SQLITE_INSERT_EVENTS, (json_rows(sqlite_event_rows(fresh, now)),))).rowcount
    else:
        rows = [{"event_id": env.event_id, "type": env.type, "occurred_at": env.occurred_at, "received_at": now,
                 "source": env.source, "community": env.community, "grid": env.grid, "subject": env.subject,
                 "entity_kind": kind, "entity_id": eid, "data": env.data} for env, kind, eid in fresh]
        table = StoredEvent.__table__
        stmt = _insert(dialect)(table).on_conflict_do_nothing(index_elements=["event_id"]).returning(table.c.event_id)
        new = len((await conn.execute(stmt, rows)).scalars().all())
    if new != len(fresh):  # another writer stored some of them meanwhile: read everything back instead
        await refresh_entities(session, entities)
    else:
        old = {k: derive(k[0], evs) if evs else [] for k, evs in before.items()}
        for env, kind, eid in fresh:
            before[(kind, eid)].append(as_ev(env))
        acc: dict = {}
        await _write_observations(session, {k: (old[k], derive(k[0], evs)) for k, evs in before.items()}, acc)
        await rollup.apply(session, acc)
    return {"received": len(events), "accepted": new, "duplicates": len(events) - new}


def _by_kind(chunk: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind, eid in chunk:
        out.setdefault(kind, []).append(eid)
    return out


async def _load_events(session: AsyncSession, chunk: list[tuple[str, str]]) -> dict[tuple[str, str], list[Ev]]:
    by_entity: dict[tuple[str, str], list[Ev]] = {k: [] for k in chunk}
    conn = await session.connection()
    sqlite = session.bind.dialect.name == "sqlite"
    for kind, ids in _by_kind(chunk).items():
        if sqlite:
            # The data column as raw JSON text, decoded with orjson; no per-row type processing.
            result = await conn.exec_driver_sql(
                "SELECT entity_id, event_id, type, occurred_at, community, grid, subject, data FROM events "
                f"WHERE entity_kind = ? AND entity_id IN ({', '.join('?' * len(ids))})", (kind, *ids))
            for eid, event_id, type_, occurred, community, grid, subject, data in result:
                by_entity[(kind, eid)].append(Ev(event_id, type_, _sqlite_dt(occurred), community, grid, subject,
                                                 loads(data) if data else {}))
        else:
            result = await session.execute(
                select(StoredEvent.entity_id, StoredEvent.event_id, StoredEvent.type, StoredEvent.occurred_at,
                       StoredEvent.community, StoredEvent.grid, StoredEvent.subject, StoredEvent.data)
                .where(StoredEvent.entity_kind == kind, StoredEvent.entity_id.in_(ids)))
            for eid, event_id, type_, occurred, community, grid, subject, data in result:
                by_entity[(kind, eid)].append(Ev(event_id, type_, occurred, community, grid, subject, data or {}))
    return by_entity


def _obs_row(o: Obs) -> tuple:
    return (o.kpi, o.mode, o.at, o.end_at, o.place or "", o.category, o.channel, o.groups, o.num, o.den, o.value,
            o.key)


def _plan_observations(changes: dict[tuple[str, str], tuple[list[Obs] | None, list[Obs]]], acc: dict, *,
                       sqlite: bool, remove: list | None = None) -> tuple[list[tuple[str, str]], list]:
    """What bringing the stored observations of these entities from `old` to `new` takes (old None: unknown,
    replace them all): the entities whose rows are deleted and the rows inserted; the difference goes into the
    rollup accumulator `acc`.

    An entity that only gains observations (most events: a response, a rating) gets just the inserts; one that
    loses or changes any has its rows deleted and written again — or, when `remove` is given (SQLite), only the
    rows that went are deleted (their keys appended to `remove`, see SQLITE_DELETE_OBS) and only the new ones
    inserted, as long as each is told apart from the entity's other rows by its key (no float compared)."""
    replace: list[tuple[str, str]] = []
    obs_rows: list = []
    for (kind, eid), (old, new) in changes.items():
        if old is None or not old:
            if old is None:
                replace.append((kind, eid))
            add = new
            rollup.contribute(acc, new, 1)
        else:
            objs = {_obs_row(o): o for o in (*old, *new)}
            before = Counter(_obs_row(o) for o in old)
            after = Counter(_obs_row(o) for o in new)
            gone, added = before - after, after - before
            if not gone and not added:
                continue
            rollup.contribute(acc, [objs[r] for r, c in gone.items() for _ in range(c)], -1)
            rollup.contribute(acc, [objs[r] for r, c in added.items() for _ in range(c)], 1)
            if gone and remove is not None and all(c == 1 for c in gone.values()) and _keys_unique(old):
                remove.extend((kind, eid, *_obs_key(objs[r])) for r in gone)
                add = [objs[r] for r, c in added.items() for _ in range(c)]
            elif gone:
                replace.append((kind, eid))
                add = new
            else:
                add = [objs[r] for r, c in added.items() for _ in range(c)]
        for o in add:
            if sqlite:
                obs_rows.append((o.kpi, o.mode, kind, eid, sqlite_timestamp(o.at), sqlite_timestamp(o.end_at),
                                 o.place or "", o.category, o.channel, o.groups, o.num, o.den, o.value, o.key))
            else:
                obs_rows.append({"kpi": o.kpi, "mode": o.mode, "entity_kind": kind, "entity_id": eid, "at": o.at,
                                 "end_at": o.end_at, "place": o.place or "", "category": o.category,
                                 "channel": o.channel, "groups": o.groups, "num": o.num, "den": o.den,
                                 "value": o.value, "key": o.key})
    return replace, obs_rows


def _obs_key(o: Obs) -> tuple:
    """What tells an observation from the others of its entity, without its numbers (timestamps as stored)."""
    return (o.kpi, o.mode, sqlite_timestamp(o.at), sqlite_timestamp(o.end_at), o.place or "", o.category, o.channel,
            o.groups)


def _keys_unique(observations: list[Obs]) -> bool:
    keys = [_obs_key(o) for o in observations]
    return len(set(keys)) == len(keys)


# The rows of _obs_key (after entity_kind, entity_id), one statement per batch (found through the entity index).
SQLITE_DELETE_OBS = (
    "DELETE FROM kpi_observations WHERE id IN (SELECT o.id FROM json_each(?) j JOIN kpi_observations o "
    "ON o.entity_kind = j.value ->> 0 AND o.entity_id = j.value ->> 1 AND o.kpi = j.value ->> 2 "
    "AND o.mode = j.value ->> 3 AND o.at = j.value ->> 4 AND o.end_at IS j.value ->> 5 AND o.place = j.value ->> 6 "
    "AND o.category IS j.value ->> 7 AND o.channel IS j.value ->> 8 AND o.groups = j.value ->> 9)")


async def _store_observations(session: AsyncSession, replace: list[tuple[str, str]], obs_rows: list) -> int:
    conn = await session.connection()
    for i in range(0, len(replace), CHUNK):
        for kind, ids in _by_kind(replace[i:i + CHUNK]).items():
            await conn.execute(delete(Observation).where(Observation.entity_kind == kind,
                                                         Observation.entity_id.in_(ids)))
    if obs_rows:
        if session.bind.dialect.name == "sqlite":
            await conn.exec_driver_sql(SQLITE_INSERT_OBS, (json_rows(obs_rows),))
        else:  # Core executemany (not the ORM bulk path)
            for i in range(0, len(obs_rows), 2000):
                await conn.execute(insert(Observation.__table__), obs_rows[i:i + 2000])
    return len(obs_rows)


async def _write_observations(session: AsyncSession, changes: dict[tuple[str, str], tuple[list[Obs] | None, list[Obs]]],
                              acc: dict) -> int:
    replace, rows = _plan_observations(changes, acc, sqlite=session.bind.dialect.name == "sqlite")
    return await _store_observations(session, replace, rows)


async def _stored_observations(session: AsyncSession, chunk: list[tuple[str, str]]) -> dict[tuple[str, str], list[Obs]]:
    out: dict[tuple[str, str], list[Obs]] = {k: [] for k in chunk}
    o = Observation
    for kind, ids in _by_kind(chunk).items():
        rows = await session.execute(select(o.entity_id, o.kpi, o.mode, o.at, o.end_at, o.place, o.category, o.channel,
                                            o.groups, o.num, o.den, o.value, o.key)
                                     .where(o.entity_kind == kind, o.entity_id.in_(ids)))
        for eid, kpi, mode, at, end_at, place, cat, ch, groups, num, den, value, key in rows:
            out[(kind, eid)].append(Obs(kpi, at, mode=mode, end_at=end_at, place=place, category=cat, channel=ch,
                                        groups=groups, num=num, den=den, value=value, key=key))
    return out


async def refresh_entities(session: AsyncSession, entities: Iterable[tuple[str, str]]) -> int:
    """Recompute the observations of these entities from their stored events, and the rollup with them."""
    entities = list(entities)
    written = 0
    for i in range(0, len(entities), CHUNK):
        chunk = entities[i:i + CHUNK]
        old = await _stored_observations(session, chunk)
        evs = await _load_events(session, chunk)
        acc: dict = {}
        written += await _write_observations(session, {k: (None, derive(k[0], evs[k])) for k in chunk}, acc)
        rollup.contribute(acc, (o for k in chunk for o in old[k]), -1)
        await rollup.apply(session, acc)
    return written


async def rebuild(session: AsyncSession) -> dict[str, int]:
    """Throw the observations and the rollup away and recompute both from the event store: the same numbers
    as the incremental path (a test and the benchmark check it)."""
    await session.execute(delete(Observation))
    await rollup.rebuild(session)
    entities = [(k, i) for k, i in (await session.execute(
        select(StoredEvent.entity_kind, StoredEvent.entity_id).distinct())).all()]
    written = 0
    acc: dict = {}
    for i in range(0, len(entities), CHUNK):
        chunk = entities[i:i + CHUNK]
        evs = await _load_events(session, chunk)
        written += await _write_observations(session, {k: ([], derive(k[0], evs[k])) for k in chunk}, acc)
        if len(acc) > 200_000:
            await rollup.apply(session, acc)
            acc = {}
    await rollup.apply(session, acc)
    return {"entities": len(entities), "observations": written}
