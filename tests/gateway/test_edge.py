"""The gateway's edge (`gateway.edge`): nginx with the Lua module in front of the Python gateway.

The `edge` fixture serves the department emulators, a small header-echoing upstream (as `matching`) and the
gateway under real uvicorn servers, starts nginx (`EdgeProcess`) in front of the gateway and the tests talk to
nginx's port over TCP. Which path answered a call is proven with the edge's own counter (`answered`, from its
control listener): it counts the calls the edge answered itself; the gateway's own API and refused, masked or
unauthenticated calls go through to the Python gateway and leave it unchanged. The edge ships its message-log
records every 0.1 s, so the log is polled, and its records may be chained after later ones of the gateway.

Covered: a granted call answered at the edge (ids, headers the caller may not set, the message-log record and
its hashes, the chain); immediate revocation of a grant and of a member; partial grants masked by the gateway;
bad tokens and the gateway's own API through the edge; rate limits in memory and in Redis (shared with the
gateway); an upstream down, timing out, the breaker opening and closing; records shipped on a graceful stop;
calls before the gateway pushed any state; the internal endpoints' secret and decisions (in process, with the
`exchange` fixture); a secret nginx would misread refused, and settings that would end the Lua string.

Skipped where nginx or its Lua modules are missing (`find_runtime()` says which); the Redis test needs
ONENET_TEST_REDIS_URL.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import time
import uuid
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import httpx
import jwt
import pytest
from sqlalchemy import select

from common.clock import FrozenClock
from common.clock import Clock
from tests.conftest import TEST_ASSERTION_KEY, gateway_auth
from tests.gateway.conftest import member_headers, START, _seed, fresh_gateway_db_and_emulators, serve_in_process
from tests.components import missing

ID = "110105194703210823"
QUERY = "/departments/renshe/v1/queries"
BODY = json.dumps({"id_number": ID}).encode()
ECHO = "/matching/v1/echo"
TRACE = "0af7651916cd43dd8448eb211c80319c"
PURPOSE = "养老核验"
PARTIAL = ["department", "department_name", "data.pension"]
REDIS_URL = os.environ.get("ONENET_TEST_REDIS_URL")
LOG_WAIT_SECONDS = 5.0


def _free_port() -> int:
    """A loopback port nothing listens on (also what a "closed" upstream or control URL points at)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _echo(scope, receive, send) -> None:
    """An upstream that answers every call with what it received: method, paths, raw headers, body."""
    assert scope["type"] == "http"
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    doc = {"method": scope["method"], "path": scope["path"], "raw_path": scope.get("raw_path", b"").decode("latin-1"),
           "query": scope.get("query_string", b"").decode("latin-1"),
           "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
           "body": body.decode("utf-8", "replace")}
    out = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


# ---- the fixture ----------------------------------------------------------------------------------------------

@pytest.fixture
async def edge(db_url, gateway_keys_dir, sqlite_template, tmp_path, request, monkeypatch):
    """Emulators, an echo upstream (`matching`), the gateway and nginx in front of it. `request.param` overrides
    settings, plus: `down` (departments at a closed port), `push` (False: the gateway pushes its state to a
    closed port, so the edge never gets any), `flush_seconds` (the edge's shipping interval), `stale_after` (how
    long the edge goes on deciding without hearing from the gateway), `redis` (buckets
    in ONENET_TEST_REDIS_URL under the test's own prefix), `secret` (the edge's, else a random URL-safe one)."""
    from gateway.app import create_app
    from gateway.edge import config as edge_config
    from gateway.settings import GatewaySettings

    runtime = edge_config.find_runtime()
    if isinstance(runtime, str):
        missing("edge", runtime)
    if db_url.startswith("postgresql"):
        # what the edge does does not touch the gateway's database; the log writer it feeds is tested on both
        # backends (test_log_process, test_exchange, test_served), and this file costs a minute per backend
        pytest.skip("the edge is the same on both backends: run on SQLite")
    extra = dict(getattr(request, "param", None) or {})
    down = extra.pop("down", False)
    push = extra.pop("push", True)
    flush_seconds = extra.pop("flush_seconds", None)
    stale_after = extra.pop("stale_after", None)
    secret = extra.pop("secret", None) or secrets.token_urlsafe(24)
    if extra.pop("redis", False):  # this test's own prefix in ONENET_TEST_REDIS_URL (skipped without it)
        extra.update(redis_url=REDIS_URL, redis_prefix=request.getfixturevalue("redis_prefix"))
    if flush_seconds is not None or stale_after is not None:
        render_settings = edge_config.lua_settings

        def other_timings(*args, **kwargs):
            conf = render_settings(*args, **kwargs)
            if flush_seconds is not None:
                conf["audit"]["flush_seconds"] = flush_seconds
            if stale_after is not None:
                conf["stale_after_seconds"] = stale_after
            return conf

        monkeypatch.setattr(edge_config, "lua_settings", other_timings)

    emulators = await fresh_gateway_db_and_emulators(db_url, sqlite_template, gateway_keys_dir)
    servers: list = []
    proc = None
    try:
        emu_server, emu_serving, emu_port = await serve_in_process(emulators)
        servers.append((emu_server, emu_serving))
        echo_server, echo_serving, echo_port = await serve_in_process(_echo, lifespan="off")
        servers.append((echo_server, echo_serving))
        edge_port, control_port = _free_port(), _free_port()
        pushed_to = control_port if push else _free_port()
        settings = GatewaySettings(**{
            "database_url": db_url, "keys_dir": gateway_keys_dir, "outbox_relay_enabled": False,
            "catalogue_from_openapi": False, "upstream_retries": 0, "upstream_timeout_seconds": 10.0,
            "upstream_departments": f"http://127.0.0.1:{_free_port() if down else emu_port}",
            "upstream_matching": f"http://127.0.0.1:{echo_port}",
            "edge_secret": secret, "edge_control_url": f"http://127.0.0.1:{pushed_to}/_edge/state", **extra})
        gw = create_app(settings, clock=FrozenClock(START))
        await _seed(gw)
        gw_server, gw_serving, gw_port = await serve_in_process(gw)
        servers.insert(0, (gw_server, gw_serving))
        proc = edge_config.EdgeProcess(settings, listen=f"127.0.0.1:{edge_port}", control_port=control_port,
                                       gateway=f"http://127.0.0.1:{gw_port}", secret=secret,
                                       prefix=tmp_path / "edge", runtime=runtime)
        proc.start()
        await asyncio.to_thread(proc.wait_ready)
        if push:
            await gw.state.edge.changed()  # the start-up push may have come before nginx listened
            assert gw.state.edge.pushed == gw.state.edge.generation

        def h(member: str, **headers) -> dict:
            return member_headers(gw, member, **headers)

        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_port}", timeout=10))
            control = await stack.enter_async_context(httpx.AsyncClient(timeout=5))
            yield SimpleNamespace(app=gw, client=client, control=control, edge=proc, secret=secret, h=h,
                                  emulators=emulators, settings=settings, edge_port=edge_port, gw_port=gw_port)
    finally:
        if proc is not None:
            await asyncio.to_thread(proc.stop)  # before the gateway: it ships its last records there
            print("---- the edge's error.log ----\n" + proc.error_log())  # shown when the test fails
        for server, serving in servers:  # the gateway first, then the upstreams
            server.should_exit = True
            await serving


# ---- helpers --------------------------------------------------------------------------------------------------

async def _state(x) -> dict:
    r = await x.control.get(x.edge.control_url, headers={"X-OneNet-Edge-Secret": x.secret})
    assert r.status_code == 200, r.text
    return r.json()


async def _answered(x) -> int:
    return (await _state(x))["answered"]


async def _grant(x, member: str = "community-xf", **body) -> dict:
    r = await x.client.post("/exchange/v1/grants", json={"resource": "renshe.insurance", "purpose": "核验", **body},
                            headers=x.h(member))
    assert r.status_code == 201 and r.json()["status"] == "approved", r.text
    return r.json()


async def _ask(x, auth: dict | str, **headers) -> httpx.Response:
    """POST the renshe query as `auth` (a member's code: a fresh token; or headers with a token to reuse)."""
    auth = x.h(auth) if isinstance(auth, str) else auth
    return await x.client.post(QUERY, content=BODY, headers={**auth, "content-type": "application/json", **headers})


async def _log(x) -> list:
    from gateway.exchange.models import MessageLog

    await x.app.state.audit.flush()
    async with x.app.state.db.session() as s:
        return list((await s.execute(select(MessageLog).order_by(MessageLog.seq))).scalars())


async def _wait_log(x, n: int) -> list:
    """The message log once it holds `n` records (the edge ships its records every 0.1 s, asynchronously)."""
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    rows = await _log(x)
    while len(rows) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        rows = await _log(x)
    assert len(rows) == n, [(r.member, r.path, r.status) for r in rows]
    return rows


def _is_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert r.json()["code"] == code and r.json()["status"] == status, r.text


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _raw_post(x, target: str, auth: dict) -> tuple[int, bytes]:
    """POST `{}` to the edge with the request target exactly as given (httpx would normalise it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", x.edge_port)
    head = [f"POST {target} HTTP/1.1", "host: edge", "content-type: application/json", "content-length: 2",
            "connection: close", *(f"{k}: {v}" for k, v in auth.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n{}").encode())
    try:
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# ---- answered at the edge --------------------------------------------------------------------------------------

async def test_a_granted_call_is_answered_by_the_edge_and_logged_with_hashes(edge):
    """A granted call: forwarded by nginx, with the request id, a child trace and the service named; its record
    (member, user, resource, owner, decoded purpose, hashes of both bodies, request id) chains with the rest."""
    from gateway.exchange.audit import verify_chain
    from gateway.exchange.models import MessageLog

    x = edge
    await _grant(x)
    before = await _answered(x)
    # the emulator's own answer (asked as the gateway would: it answers nothing else)
    async with httpx.AsyncClient(base_url=x.settings.upstream_departments, auth=gateway_auth()) as direct:
        expected = (await direct.post(QUERY, content=BODY, headers=x.h("community-xf", **{
            "content-type": "application/json"}))).json()
    r = await _ask(x, "community-xf", **{"X-Request-Id": "req-edge-1", "X-OneNet-Purpose": quote(PURPOSE),
                                         "traceparent": f"00-{TRACE}-b7ad6b7169203331-01"})
    assert r.status_code == 200, r.text
    assert r.json() == expected and r.json()["id_number"] == ID
    assert r.headers["x-request-id"] == "req-edge-1"
    tp = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]", r.headers["traceparent"])
    assert tp and tp[1] == TRACE and tp[2] != "b7ad6b7169203331"  # the same trace, the edge's own span
    assert r.headers["x-onenet-service"] == "departments"
    assert await _answered(x) == before + 1

    # an unsafe request id is replaced by a fresh one
    r2 = await _ask(x, "community-xf", **{"X-Request-Id": "bad id; drop"})
    assert r2.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r2.headers["x-request-id"])
    assert await _answered(x) == before + 2

    rows = await _wait_log(x, 2)
    row = next(row for row in rows if row.request_id == "req-edge-1")
    assert (row.member, row.user, row.resource, row.owner) == ("community-xf", "community-xf", "renshe.insurance",
                                                               "dept-renshe")
    assert row.purpose == PURPOSE
    assert (row.method, row.path, row.status) == ("POST", QUERY, 200)
    assert row.request_hash == _sha256(BODY)
    assert row.response_hash == _sha256(r.content)
    assert {rw.request_id for rw in rows} == {"req-edge-1", r2.headers["x-request-id"]}
    result = await verify_chain(x.app.state.db, MessageLog)
    assert result.ok and result.count == 2, result


async def test_headers_the_caller_may_not_set_do_not_reach_the_upstream(edge):
    """`X-OneNet-Client`, `-User`, `-Resource`, `-Service` and proxy certificate headers sent by a caller are
    replaced (or dropped) at the edge: the upstream sees who the token says, once."""
    x = edge
    before = await _answered(x)
    forged = {"X-OneNet-Client": "someone-else", "X-OneNet-User": "someone-else", "X-OneNet-Resource": "fake.res",
              "X-OneNet-Service": "fake", "X-SSL-Client-SHA256": "ab" * 32, "X-Request-Id": "req-echo-1"}
    r = await x.client.post(ECHO, json={"q": 1}, headers=x.h("community-xf", **forged))
    assert r.status_code == 200, r.text
    assert await _answered(x) == before + 1
    seen = r.json()
    values: dict[str, list[str]] = {}
    for k, v in seen["headers"]:
        values.setdefault(k, []).append(v)
    assert values["x-onenet-client"] == ["community-xf"]
    assert values["x-onenet-user"] == ["community-xf"]
    assert values["x-onenet-service"] == ["matching"]
    assert values["x-request-id"] == ["req-echo-1"]
    assert "fake.res" not in values.get("x-onenet-resource", [])
    assert "x-ssl-client-sha256" not in values
    assert seen["path"] == ECHO and json.loads(seen["body"]) == {"q": 1}
    rows = await _wait_log(x, 1)
    assert (rows[0].member, rows[0].resource, rows[0].path, rows[0].status) == ("community-xf", None, ECHO, 200)


def _assertion_refusal(seen: dict, *, method: str | None = None, key: str = TEST_ASSERTION_KEY) -> str | None:
    """What a service would say of the gateway's assertion on the call the echo upstream received."""
    from common.assertion import GatewayAssertion, scope_path

    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in seen["headers"]]
    return GatewayAssertion(key).refusal(method or seen["method"], scope_path({"raw_path": seen["raw_path"].encode(
        "latin-1")}), seen["query"].encode("latin-1"), headers)


async def test_the_edge_adds_the_gateways_assertion_bound_to_the_call(edge):
    """A call the edge passes on carries one `X-OneNet-Assertion`, the edge's own (a caller's copy is replaced),
    which a service takes for this method, path, query and token only (ADR 0013)."""
    x = edge
    forged = "v1.1700000000." + "0" * 64
    r = await x.client.post(f"{ECHO}?page=2&q=%E5%B9%B8", json={"q": 1},
                            headers=x.h("community-xf", **{"X-OneNet-Assertion": forged}))
    assert r.status_code == 200, r.text
    seen = r.json()
    values = [v for k, v in seen["headers"] if k == "x-onenet-assertion"]
    assert len(values) == 1 and values[0] != forged, values
    assert re.fullmatch(r"v1\.\d{10}\.[0-9a-f]{64}", values[0]), values
    assert _assertion_refusal(seen) is None
    assert _assertion_refusal(seen, method="DELETE") == "invalid"
    assert _assertion_refusal({**seen, "query": "page=3"}) == "invalid"
    assert _assertion_refusal({**seen, "raw_path": "/matching/v1/other"}) == "invalid"
    other_token = [[k, "Bearer x" if k == "authorization" else v] for k, v in seen["headers"]]
    assert _assertion_refusal({**seen, "headers": other_token}) == "invalid"
    assert _assertion_refusal(seen, key="another-upstreams-key-0001") == "invalid"


async def test_the_upstream_gets_the_path_the_edge_decided_on_and_logged(edge):
    """A request target nginx normalises (dot segments, an encoded slash) is either left to the gateway or sent
    upstream as the path the edge decided on and logged."""
    x = edge
    auth = x.h("community-xf")
    for target in ("/departments/renshe/v1/../../../matching/v1/echo", "/matching/v1/a%2F..%2Fecho"):
        before = await _answered(x)
        log_before = len(await _log(x))
        status, body = await _raw_post(x, target, auth)
        if await _answered(x) == before:
            continue  # the gateway answered: it checks, logs and forwards one and the same path
        assert status == 200, body
        row = (await _wait_log(x, log_before + 1))[-1]
        assert json.loads(body)["path"] == row.path, (target, row.path)
        assert _assertion_refusal(json.loads(body)) is None  # signed for the path sent, as the service reads it


# ---- revocation -----------------------------------------------------------------------------------------------

async def test_a_revoked_grant_applies_at_the_edge_on_the_very_next_call(edge):
    """After a call answered at the edge (its decision cached), revoking the grant through the edge refuses the
    very next call with the same token: 403 exchange.no_grant from the gateway, logged as refused."""
    x = edge
    grant = await _grant(x)
    auth = x.h("community-xf")
    before = await _answered(x)
    assert (await _ask(x, auth)).status_code == 200
    assert (await _ask(x, auth)).status_code == 200  # from the cached decision
    assert await _answered(x) == before + 2
    r = await x.client.post(f"/exchange/v1/grants/{grant['id']}/revoke", json={"reason": "核验结束"},
                            headers=x.h("community-xf"))
    assert r.status_code == 200 and r.json()["status"] == "revoked", r.text
    r = await _ask(x, auth)
    _is_problem(r, 403, "exchange.no_grant")
    assert await _answered(x) == before + 2  # the gateway answered it
    assert sorted((row.member, row.resource, row.status) for row in await _wait_log(x, 3)) == [
        ("community-xf", "renshe.insurance", 200)] * 2 + [("community-xf", "renshe.insurance", 403)]


async def test_a_revoked_member_applies_at_the_edge_on_the_very_next_call(edge):
    """A member revoked by ops (through the edge) is refused on its very next call: 403 member_revoked."""
    x = edge
    auth = x.h("dept-renshe")  # the owner: no grant needed
    before = await _answered(x)
    assert (await _ask(x, auth)).status_code == 200
    assert await _answered(x) == before + 1
    r = await x.client.post("/exchange/v1/members/dept-renshe/revoke", headers=x.h("ops-console"))
    assert r.status_code == 200 and r.json()["status"] == "revoked", r.text
    r = await _ask(x, auth)
    _is_problem(r, 403, "member_revoked")
    r = await x.client.post(ECHO, json={}, headers=auth)  # another scope, never decided before: refused too
    _is_problem(r, 403, "member_revoked")
    assert await _answered(x) == before + 1
    # the edge ships its records every 0.1 s: the gateway's own may be chained before them (log order is
    # arrival order); a refused member's record names no member ("-"), as the gateway logs it
    assert sorted((row.status, row.path, row.member) for row in await _wait_log(x, 3)) == [
        (200, QUERY, "dept-renshe"), (403, QUERY, "-"), (403, ECHO, "-")]


# ---- answered by the gateway ----------------------------------------------------------------------------------

async def test_a_partial_grant_is_masked_by_the_gateway(edge):
    """A grant limited to some fields: the gateway answers (the edge does not mask) and the answer is masked."""
    x = edge
    await _grant(x, fields=PARTIAL)
    before = await _answered(x)
    for _ in range(2):  # the second from the edge's cached "gateway" decision
        r = await _ask(x, "community-xf")
        assert r.status_code == 200, r.text
        assert "id_number" not in r.json() and r.json()["data"]["insured"] is None
        assert r.json()["department"] == "renshe" and isinstance(r.json()["data"]["pension"], bool)
    assert await _answered(x) == before
    assert [(row.member, row.status) for row in await _wait_log(x, 2)] == [("community-xf", 200)] * 2


async def test_bad_tokens_and_the_gateways_own_api_pass_through_the_edge(edge):
    """No token, a garbage and a forged token: 401 problems from the gateway; /healthz, the catalogue and the
    token endpoint answer through the edge; none of them counts as answered at the edge."""
    x = edge
    await _grant(x)
    good = x.h("community-xf")
    before = await _answered(x)
    r = await x.client.post(QUERY, content=BODY, headers={"content-type": "application/json",
                                                          "X-Request-Id": "req-anon-1"})
    _is_problem(r, 401, "unauthenticated")
    assert r.headers["x-request-id"] == "req-anon-1"
    r = await _ask(x, {"Authorization": "Bearer not-a-token"})
    _is_problem(r, 401, "invalid_token")
    assert r.headers["www-authenticate"].startswith("Bearer")
    forged = {"Authorization": good["Authorization"][:-4] + "AAAA"}
    _is_problem(await _ask(x, forged), 401, "invalid_token")
    _is_problem(await _ask(x, forged), 401, "invalid_token")  # its cached "gateway" decision
    r = await x.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "service": "gateway"}
    r = await x.client.get("/exchange/v1/catalogue", headers=good)
    assert r.status_code == 200 and "renshe.insurance" in {i["code"] for i in r.json()["items"]}
    r = await x.client.post("/auth/v1/token", data={"grant_type": "client_credentials", "client_id": "nobody",
                                                    "client_secret": "wrong"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client", r.text
    r = await x.client.get("/_edge/decide")  # the edge's internal location is not reachable from outside
    assert r.status_code == 404
    assert await _answered(x) == before
    assert [row.status for row in await _wait_log(x, 4)] == [401] * 4


# ---- rate limits ----------------------------------------------------------------------------------------------

LIMITS = {"rate_member_burst": 3, "rate_member_per_second": 0.5, "rate_user_burst": 100,
          "rate_user_per_second": 0.5}


def _is_limited(r: httpx.Response) -> None:
    _is_problem(r, 429, "rate_limited")
    seconds = r.headers["retry-after"]
    assert seconds.isdigit() and int(seconds) >= 1
    assert f"{seconds} 秒" in r.json()["detail"] and "本单位" in r.json()["detail"], r.json()
    assert r.headers["content-language"] == "zh"


@pytest.mark.parametrize("edge", [LIMITS], indirect=True)
async def test_the_member_rate_limit_is_kept_at_the_edge_in_memory(edge):
    """Burst 3 at 0.5 per second: the 4th call is a 429 problem with Retry-After, answered and logged at the edge."""
    x = edge
    await _grant(x)
    auth = x.h("community-xf")
    before = await _answered(x)
    statuses = [(await _ask(x, auth)).status_code for _ in range(3)]
    assert statuses == [200] * 3
    r = await _ask(x, auth, **{"X-Request-Id": "req-limited"})
    _is_limited(r)
    assert r.json()["request_id"] == "req-limited" and r.json()["instance"] == QUERY
    assert await _answered(x) == before + 4
    rows = await _wait_log(x, 4)
    assert [row.status for row in rows] == [200, 200, 200, 429]
    assert rows[-1].response_hash == _sha256(r.content)


@pytest.fixture
def redis_prefix():
    if not REDIS_URL:
        missing("redis", "Redis not configured (set ONENET_TEST_REDIS_URL)")
    prefix = f"onenet:rl:edge-{uuid.uuid4().hex[:12]}:"
    yield prefix
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(prefix + "*"))
    if keys:
        r.delete(*keys)
    r.close()


@pytest.mark.redis
@pytest.mark.parametrize("edge", [{**LIMITS, "redis": True}], indirect=True)
async def test_the_member_rate_limit_is_kept_in_redis_and_shared_with_the_gateway(edge, redis_prefix):
    """With Redis the edge takes from the gateway's own buckets (same script, same keys): two calls the gateway
    answers (masked) and one the edge answers use up the burst of 3; the next, at the edge, is 429."""
    import redis

    x = edge
    await _grant(x, fields=PARTIAL)  # renshe calls: masked, so answered by the gateway
    auth = x.h("community-xf")
    before = await _answered(x)
    assert [(await _ask(x, auth)).status_code for _ in range(2)] == [200, 200]
    assert await _answered(x) == before
    r = await x.client.post(ECHO, json={}, headers=auth)  # uncatalogued: answered at the edge
    assert r.status_code == 200, r.text
    assert await _answered(x) == before + 1
    r = await x.client.post(ECHO, json={}, headers=auth)
    _is_limited(r)
    assert await _answered(x) == before + 2
    client = redis.Redis.from_url(REDIS_URL)
    try:
        key = f"{redis_prefix}m:community-xf"
        assert client.exists(key), sorted(client.scan_iter(redis_prefix + "*"))
        assert float(client.hget(key, "tokens")) < 1
    finally:
        client.close()
    assert sorted(row.status for row in await _wait_log(x, 4)) == [200, 200, 200, 429]


# ---- upstream failures ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("edge", [{"down": True}], indirect=True)
async def test_an_upstream_down_is_a_503_problem_from_the_edge(edge):
    """Nothing listens on the departments' port: 503 upstream_unavailable with Retry-After, answered and logged
    at the edge."""
    x = edge
    before = await _answered(x)
    r = await _ask(x, "dept-renshe", **{"X-Request-Id": "req-down"})
    _is_problem(r, 503, "upstream_unavailable")
    assert "departments" in r.json()["detail"] and r.headers["retry-after"].isdigit()
    assert r.json()["request_id"] == "req-down"
    assert r.headers["x-request-id"] == "req-down" and r.headers["x-onenet-service"] == "departments"
    assert await _answered(x) == before + 1
    rows = await _wait_log(x, 1)
    assert [(row.member, row.status, row.request_id) for row in rows] == [("dept-renshe", 503, "req-down")]
    assert rows[0].response_hash == _sha256(r.content)


TIMEOUT_S = 0.3
RESET_S = 1.0


@pytest.mark.parametrize("edge", [{"upstream_timeout_seconds": TIMEOUT_S, "breaker_failures": 2,
                                   "breaker_reset_seconds": RESET_S}], indirect=True)
async def test_a_slow_upstream_times_out_opens_the_breaker_and_recovers(edge):
    """Slowed past the timeout: 504 upstream_timeout twice, then the breaker is open: 503 at once with Retry-After,
    without waiting for the upstream; after the reset time, the upstream fast again, calls succeed."""
    x = edge
    auth = x.h("dept-renshe")
    assert (await _ask(x, auth)).status_code == 200
    x.emulators.state.settings.emulator_latency_ms = 1500
    for lang, words in (("zh", "超时"), ("en", "timed out")):
        r = await _ask(x, auth, **{"Accept-Language": lang})
        _is_problem(r, 504, "upstream_timeout")
        assert words in r.json()["detail"] and r.headers["content-language"] == lang
    x.emulators.state.settings.emulator_latency_ms = 1000  # still slow: only an open breaker answers fast
    started = time.monotonic()
    r = await _ask(x, auth)
    elapsed = time.monotonic() - started
    _is_problem(r, 503, "upstream_unavailable")
    assert elapsed < TIMEOUT_S, elapsed  # asking the upstream would have taken the whole timeout
    assert r.headers["retry-after"] == "1"
    x.emulators.state.settings.emulator_latency_ms = 0
    await asyncio.sleep(RESET_S + 0.1)
    r = await _ask(x, auth)  # the trial call
    assert r.status_code == 200, r.text
    assert (await _ask(x, auth)).status_code == 200  # closed again
    assert [row.status for row in await _wait_log(x, 6)] == [200, 504, 504, 503, 200, 200]


# ---- the message log on a graceful stop -----------------------------------------------------------------------

@pytest.mark.parametrize("edge", [{"flush_seconds": 3600}], indirect=True)
async def test_a_graceful_stop_ships_the_pending_records(edge):
    """Records still pending when the edge is stopped (QUIT) reach the message log: here the periodic shipping
    is slowed to once an hour, so only the stop can ship them."""
    x = edge
    await _grant(x)
    auth = x.h("community-xf")
    ids = [f"req-stop-{i}" for i in range(3)]
    for rid in ids:
        assert (await _ask(x, auth, **{"X-Request-Id": rid})).status_code == 200
    state = await _state(x)
    assert state["answered"] == 3 and state["pending"] == 3, state
    await asyncio.sleep(0.3)
    assert await _log(x) == []  # not shipped: the interval is an hour
    await asyncio.to_thread(x.edge.stop)
    rows = await _wait_log(x, 3)
    assert [(row.request_id, row.status) for row in rows] == [(rid, 200) for rid in ids]


async def test_a_record_the_gateway_cannot_read_holds_back_neither_the_others_nor_the_stop(edge):
    """A purpose header that is not UTF-8 (the gateway itself reads headers as Latin-1): the call is answered, and
    it and the calls after it reach the message log; the edge still stops gracefully."""
    x = edge
    auth = x.h("community-xf")
    r = await x.client.post(ECHO, json={}, headers={**auth, "X-OneNet-Purpose": b"\xff\xfe", "X-Request-Id": "bad"})
    assert r.status_code == 200, r.text
    r = await x.client.post(ECHO, json={}, headers={**auth, "X-OneNet-Purpose": quote(PURPOSE),
                                                    "X-Request-Id": "good"})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 1.5  # ten shipping intervals
    while time.monotonic() < deadline and "good" not in {row.request_id for row in await _log(x)}:
        await asyncio.sleep(0.05)
    started = time.monotonic()
    await asyncio.to_thread(x.edge.stop, 3.0)  # killed after 3 s
    stopped_in = time.monotonic() - started
    rows = {row.request_id: row for row in await _log(x)}  # stopped: nothing more will come
    assert set(rows) == {"bad", "good"}, [(row.request_id, row.status) for row in rows.values()]
    assert rows["good"].purpose == PURPOSE and rows["bad"].status == 200
    assert stopped_in < 2.5, stopped_in


# ---- before the gateway pushed any state ----------------------------------------------------------------------

@pytest.mark.parametrize("edge", [{"push": False}], indirect=True)
async def test_before_any_state_is_pushed_the_gateway_answers(edge):
    """The gateway's pushes go to a closed port: the edge has no state, so it answers nothing itself, and a
    granted call is still answered (by the gateway) and logged."""
    x = edge
    assert x.app.state.edge.pushed is None
    await _grant(x)
    r = await _ask(x, "community-xf", **{"X-Request-Id": "req-nostate"})
    assert r.status_code == 200 and r.json()["id_number"] == ID, r.text
    assert r.headers["x-request-id"] == "req-nostate"
    state = await _state(x)
    assert state["answered"] == 0 and state.get("generation") is None, state
    rows = await _wait_log(x, 1)
    assert (rows[0].request_id, rows[0].status) == ("req-nostate", 200)


@pytest.mark.parametrize("edge", [{"stale_after": 1.0}], indirect=True)
async def test_an_edge_that_stops_hearing_from_the_gateway_leaves_the_calls_to_it(edge):
    """Pushes that stop arriving (the gateway cannot reach the control listener, so revocations elsewhere would not
    reach the edge either): after `stale_after` the edge decides nothing and the gateway answers every call."""
    x = edge
    await _grant(x)
    auth = x.h("community-xf")
    assert (await _ask(x, auth)).status_code == 200
    answered = await _answered(x)
    assert answered >= 1  # answered at the edge while it hears from the gateway
    x.app.state.edge.control_url = f"http://127.0.0.1:{_free_port()}/_edge/state"  # pushes now go nowhere
    await asyncio.sleep(1.6)
    r = await _ask(x, auth, **{"X-Request-Id": "req-stale"})
    assert r.status_code == 200 and r.json()["id_number"] == ID, r.text
    assert await _answered(x) == answered  # the gateway answered it
    rows = await _wait_log(x, 2)
    assert "req-stale" in {row.request_id for row in rows}


def test_a_secret_nginx_could_misread_is_refused_with_the_settings_name():
    """The secret is written into nginx's configuration: one with characters nginx reads specially (`$`, `"`) is
    refused where it is set, naming the setting, and by the renderer."""
    import pydantic

    from gateway.edge.config import find_runtime, render
    from gateway.settings import GatewaySettings

    with pytest.raises(pydantic.ValidationError) as err:
        GatewaySettings(edge_secret='edge$secret"12345678', edge_control_url="http://127.0.0.1:1/_edge/state")
    assert "edge_secret" in str(err.value)
    runtime = find_runtime()
    if isinstance(runtime, str):
        missing("edge", runtime)
    with pytest.raises(ValueError, match="ONENET_EDGE_SECRET"):
        render(GatewaySettings(), runtime, listen="127.0.0.1:1", control_port=2, gateway="http://127.0.0.1:3",
               secret='edge$secret"12345678', prefix=Path("/tmp"))


def test_a_setting_that_would_end_the_lua_string_leaves_the_configuration_valid(tmp_path):
    """Settings reach the Lua module as JSON inside a Lua long string: a value holding `]==]` gets a longer
    bracket, and nginx accepts the configuration (`nginx -t` runs its init_by_lua)."""
    from gateway.edge.config import find_runtime, render
    from gateway.settings import GatewaySettings

    runtime = find_runtime()
    if isinstance(runtime, str):
        missing("edge", runtime)
    settings = GatewaySettings(redis_url="redis://127.0.0.1:6379/15", redis_prefix="odd]==]prefix:")
    conf = render(settings, runtime, listen=f"127.0.0.1:{_free_port()}", control_port=_free_port(),
                  gateway="http://127.0.0.1:1", secret=secrets.token_urlsafe(24), prefix=tmp_path)
    assert "configure([===[" in conf and "odd]==]prefix:" in conf
    (tmp_path / "nginx.conf").write_text(conf)
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / d).mkdir()
    done = subprocess.run([runtime.nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path),
                           "-e", str(tmp_path / "error.log")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


# ---- the internal endpoints, in process -----------------------------------------------------------------------

# an edge nothing listens for: the gateway's pushes fail, its internal endpoints answer as with one
EDGE_SETTINGS = {"edge_secret": "edge-secret-for-tests",
                 "edge_control_url": f"http://127.0.0.1:{_free_port()}/_edge/state"}


async def test_the_internal_endpoints_answer_404_without_an_edge(exchange):
    """No edge configured: both internal endpoints are 404, whatever secret is sent."""
    x = exchange
    assert x.app.state.edge is None
    for path in ("/exchange/internal/edge/decide", "/exchange/internal/edge/log"):
        r = await x.client.post(path, content=b"{}", headers={"X-OneNet-Edge-Secret": "anything",
                                                               "content-type": "application/json"})
        assert r.status_code == 404, r.text


@pytest.mark.parametrize("exchange", [EDGE_SETTINGS], indirect=True)
async def test_the_internal_endpoints_refuse_a_wrong_or_missing_secret(exchange):
    """Missing, wrong or empty secret: 403 on both endpoints; the right one is answered."""
    x = exchange
    call = json.dumps({"authorization": x.h("community-xf")["Authorization"], "method": "POST", "path": QUERY,
                       "service": "departments"}).encode()
    for headers in ({}, {"X-OneNet-Edge-Secret": "wrong"}, {"X-OneNet-Edge-Secret": ""}):
        r = await x.client.post("/exchange/internal/edge/decide", content=call,
                                headers={"content-type": "application/json", **headers})
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        r = await x.client.post("/exchange/internal/edge/log", content=b"",
                                headers={"content-type": "application/x-ndjson", **headers})
        assert r.status_code == 403, r.text
    r = await x.client.post("/exchange/internal/edge/decide", content=call,
                            headers={"content-type": "application/json", "X-OneNet-Edge-Secret": EDGE_SETTINGS[
                                "edge_secret"]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("exchange", [EDGE_SETTINGS], indirect=True)
async def test_decide_lets_the_edge_answer_only_full_grants_of_live_members(exchange):
    """`edge` for a full grant (ttl within the token's life), `gateway` for no grant, a partial grant, a revoked
    member and a bad token; each decision carries the pushed generation and the path's scope."""
    x = exchange
    link = x.app.state.edge

    async def decide(member: str | None, path: str = QUERY, service: str = "departments", token: str | None = None):
        auth = token or (x.h(member)["Authorization"] if member else None)
        r = await x.client.post("/exchange/internal/edge/decide", headers={
            "X-OneNet-Edge-Secret": EDGE_SETTINGS["edge_secret"], "content-type": "application/json"},
            content=json.dumps({"authorization": auth, "method": "POST", "path": path, "service": service}))
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["generation"] == link.generation
        return d

    d = await decide("community-xf")
    assert d["mode"] == "gateway" and d["scope"] == "r:renshe.insurance"  # no grant yet
    r = await x.client.post("/exchange/v1/grants", json={"resource": "renshe.insurance", "purpose": "核验"},
                            headers=x.h("community-xf"))
    assert r.status_code == 201 and r.json()["status"] == "approved"
    token = x.h("community-xf")["Authorization"]
    left = jwt.decode(token[7:], options={"verify_signature": False})["exp"] - Clock().timestamp()
    d = await decide(None, token=token)
    assert d["mode"] == "edge", d
    assert left - 5 < d["ttl"] <= left + 0.5, (d, left)  # the token's remaining life, not more
    assert (d["member"], d["user"], d["resource"], d["owner"]) == ("community-xf", "community-xf",
                                                                   "renshe.insurance", "dept-renshe")
    d = await decide("community-ak")
    assert d["mode"] == "gateway"
    d = await decide("community-xf", ECHO, "matching")
    assert d["mode"] == "edge" and d["scope"] == "u:matching" and d["resource"] == ""
    d = await decide(None, token="Bearer not-a-token")
    assert d["mode"] == "gateway"
    d = await decide(None)
    assert d["mode"] == "gateway"

    # a grant that ends before the token does: the decision ends with it (the gateway's clock is frozen)
    r = await x.client.post("/exchange/v1/grants", json={
        "resource": "renshe.insurance", "purpose": "核验",
        "expires_at": (START + timedelta(seconds=120)).isoformat()}, headers=x.h("dept-minzheng"))
    assert r.status_code == 201 and r.json()["status"] == "approved", r.text
    d = await decide("dept-minzheng")
    assert d["mode"] == "edge" and d["ttl"] == pytest.approx(120), d

    # a partial grant (the other community's)
    r = await x.client.post("/exchange/v1/grants", json={"resource": "renshe.insurance", "purpose": "核验",
                                                         "fields": PARTIAL}, headers=x.h("community-ak"))
    assert r.status_code == 201 and r.json()["status"] == "approved"
    assert (await decide("community-ak"))["mode"] == "gateway"

    # a revoked member: every decision is "gateway", with a new generation
    generation = link.generation
    r = await x.client.post("/exchange/v1/members/community-xf/revoke", headers=x.h("ops-console"))
    assert r.status_code == 200
    assert link.generation > generation
    assert (await decide("community-xf"))["mode"] == "gateway"
    assert (await decide("community-xf", ECHO, "matching"))["mode"] == "gateway"
