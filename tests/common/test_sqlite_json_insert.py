"""common.bulk_insert.sqlite_json_insert: a batch written as one INSERT … SELECT over a JSON array stores exactly what
executemany stores (why it exists — no GIL per row — is measured in ADR 0008, not asserted on time here)."""
from __future__ import annotations

import sqlite3

from common.bulk_insert import json_rows, sqlite_json_insert

COLUMNS = ("id", "label", "amount", "big", "maybe", "doc")
ROWS = [
    (1, "普通文本", 1.5, 2**53 + 1, None, '{"a": [1, 2], "s": "引号\\"和\\\\反斜杠"}'),
    (2, 'quotes " and \\ and \n newline', -0.0, -(2**62), 3, "[]"),
    (3, "", 1e-12, 0, 2.0, ""),
    (4, "<script>alert(1)</script>", 123456789.123456, 7, "text", '{"nested": {"deep": true}}'),
]


def _table(conn: sqlite3.Connection, name: str) -> None:
    conn.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, label TEXT, amount REAL, big INTEGER, maybe, doc TEXT)")


def test_json_insert_stores_what_executemany_stores():
    conn = sqlite3.connect(":memory:")
    _table(conn, "a")
    _table(conn, "b")
    conn.executemany("INSERT INTO a VALUES (?, ?, ?, ?, ?, ?)", ROWS)
    cur = conn.execute(sqlite_json_insert("b", COLUMNS), (json_rows(ROWS),))
    assert cur.rowcount == len(ROWS)
    typed = "SELECT id, label, amount, big, maybe, typeof(maybe), doc FROM {} ORDER BY id"
    assert conn.execute(typed.format("b")).fetchall() == conn.execute(typed.format("a")).fetchall()


def test_on_conflict_tail_applies_per_row():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)")
    upsert = sqlite_json_insert("t", ("k", "n"), "ON CONFLICT (k) DO UPDATE SET n = n + excluded.n")
    conn.execute(upsert, (json_rows([("x", 1), ("y", 2)]),))
    conn.execute(upsert, (json_rows([("x", 10), ("z", 3)]),))
    assert conn.execute("SELECT k, n FROM t ORDER BY k").fetchall() == [("x", 11), ("y", 2), ("z", 3)]
    ignore = sqlite_json_insert("t", ("k", "n"), "ON CONFLICT (k) DO NOTHING")
    assert conn.execute(ignore, (json_rows([("x", 5), ("w", 1)]),)).rowcount == 1   # only the new row counts
