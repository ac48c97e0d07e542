"""The stream's reads (svc_residents/notifications/stream.py) on the real database: a connection reads forward from
the last message it sent, in pages, so a burst of any size between two wake-ups reaches it whole, in order, each
message once; a reconnect with Last-Event-ID is sent at most CATCH_UP of what it missed, the newest, and is told
that older ones were left out. The generator is driven directly, so "between two wake-ups" is exact."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from svc_residents.notifications import stream
from svc_residents.notifications.service import Message, notify_many
from svc_residents.notifications.stream import Plan, events
from tests.svc_residents.conftest import P

INBOX = f"person:{P('P3')}"
# no heartbeat, poll or end of its own within the test: only wake-ups make it read
PLAN = Plan(heartbeat=3600, poll=3600, seconds=3600, retry=1000)


async def _store(app, keys: list[str]) -> list[str]:
    """Messages for INBOX in one transaction (one wake-up when it commits), their ids in id order."""
    async with app.state.db.session() as s, s.begin():
        stored = await notify_many(s, [Message(INBOX, "request.accepted", {"number": k, "item": "助餐"}, k)
                                       for k in keys], now=app.state.clock.now())
    return sorted(st.id for st in stored)


async def _frames(gen, n: int) -> list[dict]:
    """The next `n` frames of the stream, parsed (event, id, data)."""
    out = []
    while len(out) < n:
        chunk = await asyncio.wait_for(anext(gen), 10)
        fields = dict(line.split(": ", 1) for line in chunk.decode().strip().split("\n") if ": " in line
                      and not line.startswith(":"))
        if "event" in fields:
            out.append({**fields, "data": orjson.loads(fields["data"])})
    return out


async def test_a_burst_between_two_wake_ups_reaches_the_stream_whole_in_order_once(app):
    hub = app.state.notification_hub
    before = await _store(app, ["old"])  # already there: not sent without Last-Event-ID
    gen = events(hub, app.state.db.session, INBOX, None, PLAN)
    try:
        assert (await anext(gen)).endswith(b": connected\n\n")  # the first read is done
        burst = await _store(app, [f"b{n:03d}" for n in range(120)])  # 120 between this read and the next
        got = await _frames(gen, 120)
        assert [f["id"] for f in got] == burst  # in order, none left out, none twice
        assert all(f["event"] == "notification" for f in got) and before[0] not in burst
        more = await _store(app, ["after"])  # and the connection reads on from there
        assert [f["id"] for f in await _frames(gen, 1)] == more
        with pytest.raises(TimeoutError):  # nothing else is due: nothing sent again
            await asyncio.wait_for(anext(gen), 0.5)
    finally:
        await gen.aclose()
    assert hub.connections() == 0


async def test_a_reconnect_gets_at_most_catch_up_of_what_it_missed_and_is_told(app, monkeypatch):
    monkeypatch.setattr(stream, "CATCH_UP", 5)
    hub = app.state.notification_hub
    seen = await _store(app, ["seen"])
    missed = await _store(app, [f"m{n}" for n in range(8)])
    gen = events(hub, app.state.db.session, INBOX, seen[0], PLAN)
    try:
        await anext(gen)
        got = await _frames(gen, 6)
        assert got[0]["event"] == "truncated" and "id" not in got[0]  # an id would move the client's Last-Event-ID
        assert got[0]["data"] == {"catch_up": 5, "oldest_sent": missed[3]}
        assert [f["id"] for f in got[1:]] == missed[3:]  # the newest five, oldest first
        later = await _store(app, ["later"])  # the three left out are never sent on this connection
        assert [f["id"] for f in await _frames(gen, 1)] == later
    finally:
        await gen.aclose()
    gen = events(hub, app.state.db.session, INBOX, missed[-1], PLAN)  # missed less than CATCH_UP: no notice
    try:
        await anext(gen)
        assert [(f["event"], f["id"]) for f in await _frames(gen, 1)] == [("notification", later[0])]
    finally:
        await gen.aclose()
    gen = events(hub, app.state.db.session, INBOX, "z" * 36, PLAN)  # not one of ours: what comes is still sent
    try:
        await anext(gen)
        last = await _store(app, ["last"])
        assert [f["id"] for f in await _frames(gen, 1)] == last
    finally:
        await gen.aclose()
