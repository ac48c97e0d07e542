"""The notification stream (ADR 0017) through the gateway as one held connection, served over real TCP: svc_residents
under uvicorn, the gateway under another, alone or behind its edge (real nginx). Several messages arrive on one
connection in the order and at the time they are committed, heartbeats keep it open past the gateway's upstream
timeout (meant for whole answers), a reconnect with Last-Event-ID is sent what it missed, a client that goes away
releases svc_residents' subscription, and a token that expires ends the stream. A revoked caller's open stream
ends within seconds, quiet or not, on both paths (the edge hands the stream's route to the gateway, ADR 0012):
signed out everywhere, a refresh token replayed, the account disabled, a session revoked by another replica."""
from __future__ import annotations

import asyncio
import json
import time
from contextlib import AsyncExitStack
from types import SimpleNamespace

import httpx
import pytest

from common.clock import FrozenClock
from common.keys import jwks_document, load_signing_keys
from tests.conftest import POSTGRES_URL, TEST_ASSERTION_KEY, _create_pg_database, start_service
from tests.gateway.conftest import START, _seed, member_headers, serve_in_process
from tests.svc_residents.conftest import P

PATH = "/residents/v1/notifications/stream"
UPSTREAM_TIMEOUT = 1.0  # for whole answers: a stream's quiet stretches outlast it
HEARTBEAT = 1.5  # longer than that, shorter than the stream's read timeout
STREAM_READ = 3.0
INBOX = f"person:{P('P3')}"


@pytest.fixture
def stream_timing() -> tuple[float, float]:
    """(svc_residents' heartbeat, the gateway's stream read timeout); a test may parametrize it."""
    return HEARTBEAT, STREAM_READ


@pytest.fixture
async def served(db_url, tmp_path, gateway_keys_dir, edge_or_not, stream_timing):
    from gateway.app import create_app
    from gateway.settings import GatewaySettings
    from svc_residents.seed import seed_demo
    from tests.conftest import migrate_database

    jwks = jwks_document(load_signing_keys(gateway_keys_dir))
    heartbeat, stream_read = stream_timing
    async with AsyncExitStack() as stack:
        residents_url = f"sqlite+aiosqlite:///{tmp_path}/res.db"
        if db_url.startswith("postgresql"):  # a database of its own, as the gateway's is
            residents_url, drop = await _create_pg_database(POSTGRES_URL)
            stack.push_async_callback(drop)
        residents = (await start_service(stack, "svc_residents", residents_url, jwks,
                                         field_keys_file=tmp_path / "fields.json", notify_dispatch_enabled=False,
                                         notify_stream_heartbeat_seconds=heartbeat)).app
        residents.state.clock = FrozenClock(START)
        await seed_demo(residents.state.db, residents.state.protection, clock=residents.state.clock)
        res_server, res_serving, res_port = await serve_in_process(residents, lifespan="off")
        stack.push_async_callback(_stop, res_server, res_serving)
        gw_db = db_url
        await migrate_database("gateway", gw_db)
        settings = GatewaySettings(
            database_url=gw_db, keys_dir=gateway_keys_dir, outbox_relay_enabled=False, catalogue_from_openapi=False,
            upstream_residents=f"http://127.0.0.1:{res_port}", gateway_assertion_key=TEST_ASSERTION_KEY,
            upstream_retries=0, upstream_timeout_seconds=UPSTREAM_TIMEOUT, stream_read_timeout_seconds=stream_read,
            rate_limit_enabled=False, audit_writer_process=False, **edge_or_not.settings_extra)
        gw = create_app(settings, clock=FrozenClock(START))
        await _seed(gw)
        from gateway.members.models import Member

        async with gw.state.db.session() as s, s.begin():  # the residents' app, a member of the exchange
            s.add(Member(code="app-resident", name="居民端", kind="app", role="resident", scopes=[],
                         secret_hash=None, status="active", created_at=START))
        gw_server, gw_serving, port = await serve_in_process(gw)
        stack.push_async_callback(_stop, gw_server, gw_serving)
        stack.push_async_callback(edge_or_not.stop)  # the edge before the gateway behind it
        port = await edge_or_not.front(settings, gw, port)
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10))

        def token(ttl: int | None = None) -> dict:
            tok = gw.state.token_issuer.issue(subject="resident3", member="app-resident", role="resident",
                                              scopes=[INBOX, "household:x"], ttl=ttl)["access_token"]
            return {"Authorization": f"Bearer {tok}", "Accept": "text/event-stream"}

        yield SimpleNamespace(client=client, residents=residents, hub=residents.state.notification_hub, gw=gw,
                              token=token, edge=edge_or_not.edge, mode=edge_or_not.mode)


async def _answered_by_edge(x, wait: float = 5) -> int:
    from gateway.edge.link import SECRET_HEADER

    deadline = time.monotonic() + wait
    while True:  # counted in the log phase, just after the connection ends
        r = await asyncio.to_thread(httpx.get, x.edge.control_url, headers={SECRET_HEADER: x.gw.state.edge.secret})
        if r.json()["answered"] or time.monotonic() > deadline:
            return r.json()["answered"]
        await asyncio.sleep(0.05)


async def _stop(server, serving) -> None:
    server.should_exit = True
    await serving


async def _notify(x, n: int) -> str:
    from svc_residents.notifications.service import notify

    async with x.residents.state.db.session() as s, s.begin():
        result = await notify(s, recipient=INBOX, template="request.accepted", event_key=f"stream-{n}",
                              variables={"number": f"S{n}", "item": "助餐"}, now=x.residents.state.clock.now())
    return result.notification.id


class Reader:
    """An EventSource's view of one response: events (id, event, data) and comments, as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()
        self.comments: list[str] = []
        self.retry: int | None = None

    async def event(self, timeout: float = 5.0) -> dict | None:
        """The next event, or None when the stream ended."""
        fields: dict = {}
        while True:
            try:
                line = await asyncio.wait_for(anext(self.lines), timeout)
            except StopAsyncIteration:
                return None
            if not line:
                if "data" in fields:
                    return fields
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                self.comments.append(value)
            elif name == "retry":
                self.retry = int(value)
            else:
                fields[name] = value


async def _released(x, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while x.hub.connections():
        assert time.monotonic() < deadline, f"still subscribed: {x.hub.local}"
        await asyncio.sleep(0.05)


async def _connected(x, n: int = 1) -> None:
    deadline = time.monotonic() + 10
    while x.hub.connections() < n:
        assert time.monotonic() < deadline, "the stream did not reach svc_residents"
        await asyncio.sleep(0.02)


async def test_messages_arrive_on_one_held_connection_and_a_reconnect_gets_what_it_missed(served):
    x = served
    async with x.client.stream("GET", PATH, headers=x.token()) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-onenet-service"] == "residents"
        reader = Reader(r)
        await _connected(x)
        ids, delays = [], []
        for n in range(3):
            # quiet past the upstream timeout and a heartbeat: still open, kept so by the heartbeat
            await asyncio.sleep(HEARTBEAT + UPSTREAM_TIMEOUT if n == 1 else 0.05)
            t0 = time.monotonic()
            note = await _notify(x, n)
            got = await reader.event()
            delays.append(time.monotonic() - t0)
            assert got is not None and got["id"] == note and got["event"] == "notification"
            assert json.loads(got["data"])["id"] == note
            ids.append(note)
        assert ids == sorted(ids) and reader.retry == 1000
        assert "keep-alive" in reader.comments  # the heartbeat passed unbuffered
        assert x.hub.connections() == 1  # one connection all along (no reconnect between the messages)
        late = ids[-1]
    await _released(x)  # the client went away: svc_residents let go of its subscription
    missed = [await _notify(x, n) for n in (3, 4)]
    async with x.client.stream("GET", PATH, params={"max_events": 2},
                               headers={**x.token(), "Last-Event-ID": late}) as r:
        reader = Reader(r)
        got = [await reader.event(), await reader.event()]
        assert [e["id"] for e in got] == missed
        assert await reader.event() is None  # max_events: ended by svc_residents
    await _released(x)
    if x.edge is not None:  # handed by nginx to the gateway, unbuffered: the edge answered none of them itself
        assert await _answered_by_edge(x, wait=0) == 0
    print(f"{x.mode}: commit → event on the held connection, s: {[round(d, 3) for d in delays]}")


async def test_a_stream_ends_at_its_token_expiry(served):
    x = served
    t0 = time.monotonic()
    async with x.client.stream("GET", PATH, headers=x.token(ttl=2)) as r:
        assert r.status_code == 200
        reader = Reader(r)
        await _connected(x)
        note = await _notify(x, 10)
        got = await reader.event()
        assert got is not None and got["id"] == note
        assert await reader.event(timeout=6) is None  # ended: nothing past the token
    assert time.monotonic() - t0 < 5
    await _released(x)


async def test_the_stream_still_asks_for_an_event_stream(served):
    r = await served.client.get(PATH, headers={**served.token(), "Accept": "application/json"})
    assert r.status_code == 406 and r.json()["code"] == "notification.stream_accept"
    r = await served.client.get(PATH, headers={"Accept": "text/event-stream"})
    assert r.status_code == 401


async def test_a_revoked_member_is_cut_off(served):
    """The gateway checks the caller before each chunk it passes: once the member is revoked its open stream ends
    without the next message, on both paths; a reconnect is refused at once."""
    x = served
    async with x.client.stream("GET", PATH, headers=x.token()) as r:
        reader = Reader(r)
        await _connected(x)
        first = await _notify(x, 20)
        assert (await reader.event())["id"] == first
        ops = member_headers(x.gw, "ops-console")
        revoked = await x.client.post("/exchange/v1/members/app-resident/revoke", headers=ops)
        assert revoked.status_code == 200, revoked.text
        await _notify(x, 21)
        assert await reader.event() is None  # ended, the message not passed
    r = await x.client.get(PATH, headers=x.token())
    assert r.status_code == 403 and r.json()["code"] == "member_revoked"
    await _released(x)


QUIET = (60.0, 90.0)  # a heartbeat and a read timeout far beyond the end a revocation must bring (REVOKED_WITHIN)
# how long a revoked session's stream may take to end: the gateway re-checks every second and reloads another
# replica's revocations every 2 s; the rest is headroom for a machine loaded many-fold (it ends in 1-3 s idle)
REVOKED_WITHIN = 25.0


async def _signed_in(x, username: str, role: str = "resident", scopes: list | None = None, **start) -> dict:
    """A real session of a gateway account (its access token carries the session id), as a sign-in makes it."""
    from gateway.identity.tokens import hash_secret
    from gateway.members.models import User

    now = x.gw.state.clock.now()
    async with x.gw.state.db.session() as s, s.begin():
        if await s.get(User, username) is None:
            s.add(User(username=username, display_name=username, password_hash=hash_secret("Correct-Horse-9-x"),
                       role=role, scopes=[INBOX, "household:x"] if scopes is None else scopes,
                       admin=role == "ops", member_code="app-resident", status="active", created_at=now))
    async with x.gw.state.db.session() as s:
        user = await s.get(User, username)
    out = await x.gw.state.sessions.start(user, "app-resident", now, source=None, user_agent=None,
                                          mfa=role == "ops", **start)
    out["h"] = {"Authorization": f"Bearer {out['access_token']}"}
    return out


async def _revoke(x, how: str, session: dict) -> None:
    from sqlalchemy import update

    from gateway.accounts.models import AuthSession

    if how == "sign_out_everywhere":
        r = await x.client.post("/auth/v1/sign-out-everywhere", headers=session["h"])
        assert r.status_code == 200 and r.json()["revoked_sessions"] == [session["session_id"]], r.text
    elif how == "refresh_reused":  # the first refresh token used twice: someone holds a copy, the family ends
        form = {"grant_type": "refresh_token", "refresh_token": session["refresh_token"]}
        assert (await x.client.post("/auth/v1/token", data=form)).status_code == 200
        r = await x.client.post("/auth/v1/token", data=form)
        assert r.status_code == 400 and r.json()["code"] == "refresh_token.reused", r.text
    elif how == "account_disabled":  # a platform administrator disables the account
        ops = await _signed_in(x, "ops_admin", role="ops", scopes=[], amr=["pwd", "otp"])
        r = await x.client.patch("/auth/v1/accounts/resident3", headers=ops["h"],
                                 json={"version": 1, "status": "disabled"})
        assert r.status_code == 200 and r.json()["status"] == "disabled", r.text
    else:  # another gateway replica signed it out: only the database says so here
        assert how == "another_replica"
        async with x.gw.state.db.session() as s, s.begin():
            await s.execute(update(AuthSession).where(AuthSession.id == session["session_id"]).values(
                revoked_at=x.gw.state.clock.now(), revoked_reason="sign_out"))


@pytest.mark.parametrize("stream_timing", [QUIET])
@pytest.mark.parametrize("how", ["sign_out_everywhere", "refresh_reused", "account_disabled", "another_replica"])
async def test_a_revoked_session_ends_its_open_stream_within_seconds(served, how):
    """A stream quiet for longer than the test waits (heartbeat 60 s): a revocation ends it within a few seconds,
    through the gateway alone and through the edge, and nothing committed after it is passed. The gateway checks
    its live sets before each chunk and every second between chunks; another replica's revocation reaches them by
    the 2 s reload (a message committed before that may still pass)."""
    x = served
    session = await _signed_in(x, "resident3")
    reading = httpx.Timeout(10, read=REVOKED_WITHIN + 5)  # the client's own read timeout is not what ends it
    async with x.client.stream("GET", PATH, headers={**session["h"], "Accept": "text/event-stream"},
                               timeout=reading) as r:
        assert r.status_code == 200
        reader = Reader(r)
        await _connected(x)
        first = await _notify(x, 40)
        assert (await reader.event())["id"] == first  # a live stream, on the session's token
        await _revoke(x, how, session)
        await _notify(x, 41)
        got = await reader.event(timeout=REVOKED_WITHIN)
        if how == "another_replica" and got is not None:
            got = await reader.event(timeout=REVOKED_WITHIN)  # committed before this replica's reload read the revocation
        assert got is None  # ended long before the heartbeat; here, nothing committed after it passed
    await _released(x)
    r = await x.client.get(PATH, headers={**session["h"], "Accept": "text/event-stream"})
    assert r.status_code == 401 and r.json()["code"] == "session_revoked"  # and its reconnect refused at once


@pytest.mark.parametrize("stream_timing", [QUIET])
async def test_a_quiet_stream_of_a_session_not_revoked_stays_open(served):
    """The control: the same quiet stream lasts while nothing of its own is revoked (another session's sign-out
    ends only that one), so the end above is the revocation's."""
    x = served
    mine, other = await _signed_in(x, "resident3"), await _signed_in(x, "resident3")
    async with x.client.stream("GET", PATH, headers={**mine["h"], "Accept": "text/event-stream"}) as r:
        reader = Reader(r)
        await _connected(x)
        r2 = await x.client.post("/auth/v1/sign-out", headers=other["h"])
        assert r2.status_code == 200 and r2.json()["revoked_sessions"] == [other["session_id"]], r2.text
        nxt = asyncio.create_task(reader.event(timeout=30))
        done, _ = await asyncio.wait((nxt,), timeout=6)
        assert not done  # open and quiet past the re-checks and a reload
        note = await _notify(x, 50)
        assert (await nxt)["id"] == note
