"""common.bulk_insert.RowsInsert: on SQLite one statement stores exactly what SQLAlchemy's executemany stores, column
type by column type; what it cannot write exactly goes through SQLAlchemy."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import (JSON, BigInteger, Boolean, Column, Float, Integer, MetaData, String, Table, Text, event, insert,
                        text)

import pytest

from common.bulk_insert import RowsInsert
from common.db import Database, UTCDateTime


def _table(meta: MetaData, name: str, **extra) -> Table:
    return Table(name, meta,
                 Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
                 Column("id", String(36), unique=True), Column("label", Text), Column("n", Integer),
                 Column("x", Float), Column("flag", Boolean), Column("doc", JSON),
                 Column("maybe_doc", JSON(none_as_null=True)), Column("at", UTCDateTime()),
                 Column("later", UTCDateTime(), nullable=True), **extra)


T0 = datetime(2026, 11, 29, 9, 30, 1, 123456, tzinfo=timezone.utc)
ROWS = [
    {"id": "a", "label": "普通文本 <b>", "n": 2**53 + 1, "x": 1.25, "flag": True,
     "doc": {"k": ["引号\"", "反斜杠\\", 1, None, True], "n": {"deep": 1.5}}, "maybe_doc": {"a": 1}, "at": T0,
     "later": None},
    {"id": "b", "label": "", "n": -7, "x": -0.0, "flag": False, "doc": None, "maybe_doc": None,
     "at": T0.astimezone(timezone(timedelta(hours=8))), "later": T0 + timedelta(days=1)},
    {"id": "c", "label": None, "n": None, "x": None, "flag": None, "doc": [], "maybe_doc": None,
     "at": T0 + timedelta(microseconds=1), "later": None},
]
READ = ("SELECT seq, id, label, typeof(label), n, typeof(n), x, typeof(x), flag, typeof(flag), doc, typeof(doc), "
        "maybe_doc, typeof(maybe_doc), at, later, typeof(later) FROM {} ORDER BY seq")


async def test_one_statement_stores_what_executemany_stores(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/rows.db")
    meta = MetaData()
    fast, slow = _table(meta, "fast"), _table(meta, "slow")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(meta.create_all)
            statements: list[str] = []
            event.listen(conn.sync_connection, "before_cursor_execute", lambda *a: statements.append(a[2]))
            await RowsInsert(fast)(conn, [dict(r) for r in ROWS])
            assert len(statements) == 1 and "json_each" in statements[0]  # one statement, not executemany
            await conn.execute(insert(slow), [dict(r) for r in ROWS])
            got = (await conn.execute(text(READ.format("fast")))).all()
            want = (await conn.execute(text(READ.format("slow")))).all()
        assert got == want and len(got) == 3
        async with db.engine.connect() as conn:  # and it reads back through SQLAlchemy the same
            back = (await conn.execute(fast.select().order_by(fast.c.seq))).all()
        assert [r.at for r in back] == [r["at"] for r in ROWS] and back[0].doc == ROWS[0]["doc"]
        assert back[1].doc is None and back[2].flag is None and back[0].flag is True
    finally:
        await db.dispose()


async def test_what_it_cannot_write_exactly_goes_through_sqlalchemy(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/rows.db")
    meta = MetaData()
    t = _table(meta, "t")
    t.append_column(Column("kind", String(8), default="plain"))  # a Python-side default, left out below
    statements: list[str] = []
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(meta.create_all)
            event.listen(conn.sync_connection, "before_cursor_execute", lambda *a: statements.append(a[2]))
            await RowsInsert(t)(conn, [dict(r) for r in ROWS])  # `kind` left out: SQLAlchemy fills the default
            assert (await conn.execute(text("SELECT count(*) FROM t WHERE kind = 'plain'"))).scalar() == 3
            assert not any("json_each" in s for s in statements)
            statements.clear()
            await RowsInsert(t)(conn, [{**r, "id": r["id"] + "2", "kind": "k"} for r in ROWS])
            assert any("json_each" in s for s in statements)
    finally:
        await db.dispose()


async def _writer_setup(db_url: str):
    """A database with tables `fast` and `slow` (alike) and `child` (a foreign key to fast), its writer threads
    with the statements they send, and ROWS fitted to a 32-bit INTEGER (PostgreSQL's `n`)."""
    from sqlalchemy import ForeignKey

    db = Database(db_url)
    meta = MetaData()
    tables = (_table(meta, "fast"), _table(meta, "slow"),
              Table("child", meta, Column("id", String(36), primary_key=True),
                    Column("parent", String(36), ForeignKey("fast.id")), Column("at", UTCDateTime())))
    async with db.engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    threads = db.writer_threads()
    statements: list[str] = []
    event.listen(threads.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    rows = [{**r, "n": 2**31 - 1} if r["id"] == "a" else dict(r) for r in ROWS]
    return db, threads, tables, statements, rows


PG_READ = ("SELECT seq, id, label, n, x, flag, doc::text, json_typeof(doc), doc IS NULL, maybe_doc::text, "
           "maybe_doc IS NULL, at, later FROM {} ORDER BY seq")


async def test_postgres_blocking_form_stores_what_executemany_stores(db_url):
    """Through psycopg (`WriterThreads`): one `json_to_recordset` statement per table, and several tables in one
    statement (`blocking_together`, a child row beside its parent), storing what SQLAlchemy's executemany
    stores: JSON null for a None in a JSON column, SQL NULL where none_as_null, timestamps to the microsecond."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the PostgreSQL form")
    db, threads, (fast, slow, child), statements, rows = await _writer_setup(db_url)
    try:
        def write(conn):
            RowsInsert.blocking_together(conn, [(RowsInsert(fast), [dict(r) for r in rows]),
                                                (RowsInsert(child), [{"id": "c1", "parent": "a", "at": T0}])])
            conn.execute(insert(slow), [dict(r) for r in rows])
            prepared = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()
            return (conn.execute(text(PG_READ.format("fast"))).all(), conn.execute(text(PG_READ.format("slow"))).all(),
                    prepared)

        got, want, prepared = await threads.run(write)
        assert got == want and len(got) == 3
        assert len([s for s in statements if "json_to_recordset" in s]) == 1  # both tables, one statement
        # kept on the server at once (its plan is the same whatever the rows: `PREPARED`)
        assert [s for s in prepared if "json_to_recordset" in s], prepared
        assert got[1][7] == "null" and got[1][8] is False and got[1][10] is True  # JSON null vs SQL NULL
        with pytest.raises(ValueError, match="naive"):
            await threads.run(lambda conn: RowsInsert(slow).blocking(conn, [{**rows[0], "id": "z",
                                                                              "at": T0.replace(tzinfo=None)}]))
    finally:
        await threads.close()
        await db.dispose()


async def test_rows_encoded_beforehand_store_the_same(db_url, backend):
    """`RowsInsert.encode` on the caller's thread, then `blocking` / `blocking_together` on a writer thread
    (svc_services' intake): the same rows stored as from the dicts, on either backend."""
    db, threads, (fast, slow, child), statements, rows = await _writer_setup(db_url)
    insert_fast, insert_child = RowsInsert(fast), RowsInsert(child)
    encoded = [insert_fast.encode(backend, r) for r in rows]
    children = [insert_child.encode(backend, {"id": "c1", "parent": "a", "at": T0})]
    assert insert_fast.encode("mysql", rows[0]) is None  # a dialect it has no form for: the caller keeps dicts
    read = READ if backend == "sqlite" else PG_READ
    try:
        def write(conn):
            RowsInsert.blocking_together(conn, [(insert_fast, encoded), (insert_child, children)])
            conn.execute(insert(slow), [dict(r) for r in rows])
            return conn.execute(text(read.format("fast"))).all(), conn.execute(text(read.format("slow"))).all()

        got, want = await threads.run(write)
        assert got == want and len(got) == 3
        assert not any(s.lstrip().upper().startswith("INSERT INTO FAST (") and "SELECT" not in s.upper()
                       for s in statements)  # never row by row
        mixed = [insert_fast.encode(backend, {**rows[0], "id": "m1"}),
                 insert_fast.encode(backend, {k: v for k, v in rows[0].items() if k != "later"} | {"id": "m2"})]
        with pytest.raises(ValueError, match="same keys"):
            await threads.run(lambda conn: RowsInsert(fast).blocking(conn, mixed))
    finally:
        await threads.close()
        await db.dispose()
