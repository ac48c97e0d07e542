"""The gateway as deployed behind its edge or alone: under a real uvicorn server, the department emulators under
another, clients over real TCP and the upstream reached over its own pooled connections (no injected transport).
Exchange calls, the gateway's own API, keep-alive, `Connection: close`, HTTP/1.0, pipelining, upstream failures,
a root path and the request metrics."""
from __future__ import annotations

import asyncio
import json
import re
import socket
from contextlib import AsyncExitStack
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import select

from common.clock import FrozenClock
from tests.conftest import METRICS_AUTH
from tests.gateway.conftest import member_headers, fresh_gateway_db_and_emulators, START, _seed, serve_in_process

ID = "110105194703210823"
QUERY = "/departments/renshe/v1/queries"
BODY = json.dumps({"id_number": ID}).encode()
MAX_BODY = 1024
TRACE = "0af7651916cd43dd8448eb211c80319c"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def gwx(db_url, gateway_keys_dir, sqlite_template, request):
    """The gateway served over TCP; `request.param` overrides settings (`down`: no upstream)."""
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    extra = dict(getattr(request, "param", None) or {})
    down = extra.pop("down", False)
    root_path = extra.pop("root_path", "")
    emulators = await fresh_gateway_db_and_emulators(db_url, sqlite_template, gateway_keys_dir)
    servers = []
    try:
        emu_server, emu_serving, emu_port = await serve_in_process(emulators)
        servers.append((emu_server, emu_serving))
        upstream = f"http://127.0.0.1:{_closed_port() if down else emu_port}"
        settings = GatewaySettings(**{
            "database_url": db_url, "keys_dir": gateway_keys_dir, "outbox_relay_enabled": False,
            "catalogue_from_openapi": False, "upstream_departments": upstream, "upstream_retries": 0,
            "upstream_timeout_seconds": 10.0, "max_body_bytes": MAX_BODY, **extra})
        gw = create_app(settings, clock=FrozenClock(START))  # no injected transport: the pooled path
        await _seed(gw)
        gw_server, gw_serving, port = await serve_in_process(gw, root_path=root_path)  # + lifespan
        servers.insert(0, (gw_server, gw_serving))
        assert not gw.state.forwarder.upstreams["departments"].injected

        def h(member: str, **headers) -> dict:
            return member_headers(gw, member, **headers)

        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10))
            yield SimpleNamespace(app=gw, client=client, port=port, h=h,
                                  emulators=emulators)
    finally:
        for server, serving in servers:  # the gateway first, then the emulators
            server.should_exit = True
            await serving


async def _grant(x, member: str = "community-xf", **body) -> None:
    r = await x.client.post("/exchange/v1/grants", json={"resource": "renshe.insurance", "purpose": "核验", **body},
                            headers=x.h(member))
    assert r.status_code == 201 and r.json()["status"] == "approved", r.text


async def _ask(x, member: str, **headers) -> httpx.Response:
    return await x.client.post(QUERY, content=BODY, headers={**x.h(member), "content-type": "application/json",
                                                             **headers})


async def _log(x) -> list:
    from gateway.exchange.models import MessageLog

    await x.app.state.audit.flush()
    async with x.app.state.db.session() as s:
        return list((await s.execute(select(MessageLog).order_by(MessageLog.seq))).scalars())


def _is_problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code and r.json()["status"] == status


# ---- exchange calls -------------------------------------------------------------------------------------------

async def test_a_granted_call_is_forwarded_with_ids_and_logged(gwx):
    """A granted exchange call: forwarded, echoes request id and trace, and logs it."""
    x = gwx
    await _grant(x)
    r = await _ask(x, "community-xf", **{"X-Request-Id": "req-served-1",
                                         "traceparent": f"00-{TRACE}-b7ad6b7169203331-01"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["department"] == "renshe" and body["id_number"] == ID and set(body["data"]) == {"insured", "pension"}
    assert r.headers["x-request-id"] == "req-served-1"
    tp = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]", r.headers["traceparent"])
    assert tp and tp[1] == TRACE and tp[2] != "b7ad6b7169203331"  # same trace, the gateway's own span
    assert r.headers["x-onenet-service"] == "departments"
    assert int(r.headers["content-length"]) == len(r.content)
    # an unsafe incoming id is replaced by a fresh one
    r = await _ask(x, "community-xf", **{"X-Request-Id": "bad id; drop"})
    assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    row = next(row for row in await _log(x) if row.request_id == "req-served-1")
    assert (row.member, row.resource, row.owner, row.status) == ("community-xf", "renshe.insurance", "dept-renshe", 200)
    assert (row.method, row.path) == ("POST", QUERY)


async def test_a_partial_grant_is_masked_and_no_grant_is_refused_in_both_languages(gwx):
    """Masking to a partial grant and the 403 for a member without a grant, both logged."""
    x = gwx
    await _grant(x, fields=["department", "department_name", "data.pension"])
    r = await _ask(x, "community-xf")
    assert r.status_code == 200, r.text
    assert "id_number" not in r.json() and r.json()["data"]["insured"] is None
    assert r.json()["department"] == "renshe" and isinstance(r.json()["data"]["pension"], bool)
    r = await _ask(x, "community-ak")
    _is_problem(r, 403, "exchange.no_grant")
    assert "授权" in r.json()["detail"]
    r = await _ask(x, "community-ak", **{"Accept-Language": "en"})
    _is_problem(r, 403, "exchange.no_grant")
    assert "No live grant" in r.json()["detail"]
    rows = [(row.member, row.resource, row.status) for row in await _log(x)]
    assert rows == [("community-xf", "renshe.insurance", 200)] + [("community-ak", "renshe.insurance", 403)] * 2


async def test_bad_tokens_and_a_revoked_member_are_refused(gwx):
    """Garbage and forged bearer tokens are 401 problems, a revoked member 403, all logged."""
    x = gwx
    await _grant(x)
    good = x.h("community-xf", **{"content-type": "application/json"})
    r = await x.client.post(QUERY, content=BODY, headers={"Authorization": "Bearer not-a-token"})
    _is_problem(r, 401, "invalid_token")
    assert r.headers["www-authenticate"].startswith("Bearer")
    forged = {"Authorization": good["Authorization"][:-4] + "AAAA"}
    _is_problem(await x.client.post(QUERY, content=BODY, headers=forged), 401, "invalid_token")
    assert (await x.client.post(QUERY, content=BODY, headers=good)).status_code == 200  # token now cached
    r = await x.client.post("/exchange/v1/members/community-xf/revoke", headers=x.h("ops-console"))
    assert r.status_code == 200
    _is_problem(await x.client.post(QUERY, content=BODY, headers=good), 403, "member_revoked")
    assert [row.status for row in await _log(x)] == [401, 401, 200, 403]


# ---- the rest -------------------------------------------------------------------------------------------------

async def test_own_api_no_token_forwarded_for_media_types_limits_chunked_and_head(gwx):
    """Own API, no token, X-Forwarded-For, non-JSON, oversized and chunked bodies, HEAD: each answered as before."""
    x = gwx
    await _grant(x)
    auth = x.h("community-xf", **{"content-type": "application/json"})
    r = await x.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "service": "gateway"}
    r = await x.client.get("/exchange/v1/catalogue", headers=auth)
    assert r.status_code == 200 and "renshe.insurance" in {i["code"] for i in r.json()["items"]}
    r = await x.client.post(QUERY, content=BODY, headers={"X-Request-Id": "req-app-1"})
    _is_problem(r, 401, "unauthenticated")
    assert r.headers["x-request-id"] == "req-app-1"
    r = await x.client.post(QUERY, content=BODY, headers={**auth, "X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200 and r.json()["id_number"] == ID and r.headers["x-onenet-service"] == "departments"
    r = await x.client.post(QUERY, content=b"id_number=1", headers={**auth, "content-type": "text/plain"})
    _is_problem(r, 415, "unsupported_media_type")
    big = json.dumps({"id_number": ID, "pad": "x" * MAX_BODY}).encode()
    r = await x.client.post(QUERY, content=big, headers=auth)
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")

    async def chunks():
        yield BODY

    r = await x.client.post(QUERY, content=chunks(), headers=auth)
    assert r.status_code == 200 and r.json()["id_number"] == ID  # Transfer-Encoding: chunked
    r = await x.client.head(QUERY, headers=auth)
    assert r.status_code == 405 and r.content == b""  # the emulator has no HEAD route; forwarded
    # the forwarded ones were logged as usual
    assert [row.status for row in await _log(x)] == [401, 200, 200, 405]


# ---- connections ----------------------------------------------------------------------------------------------

def _req(x, method: str = "POST", path: str = QUERY, *, version: str = "1.1", close: bool = False,
         auth: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/{version}", f"host: 127.0.0.1:{x.port}"]
    lines += [f"{k}: {v}" for k, v in (auth or {}).items()]
    if close:
        lines.append("connection: close")
    body = BODY if method == "POST" else b""
    if body:
        lines += ["content-type: application/json", f"content-length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read(reader: asyncio.StreamReader) -> tuple[int, dict, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 10)
    return int(status_line.split()[1]), headers, body


async def _closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 5) == b""


async def test_keep_alive_mixes_exchange_and_own_api_and_connection_close_is_honoured(gwx):
    """One keep-alive connection serves an exchange call then the gateway's own; `Connection: close` closes after the answer."""
    x = gwx
    await _grant(x)
    auth = x.h("community-xf")
    reader, writer = await asyncio.open_connection("127.0.0.1", x.port)
    writer.write(_req(x, auth=auth))
    status, headers, body = await _read(reader)
    assert status == 200 and json.loads(body)["id_number"] == ID and "connection" not in headers
    writer.write(_req(x, "GET", "/healthz"))
    status, _, body = await _read(reader)
    assert status == 200 and json.loads(body)["status"] == "ok"
    writer.write(_req(x, auth=auth, close=True))  # the same connection, a third time, forwarded
    status, headers, body = await _read(reader)
    assert status == 200 and headers["connection"] == "close" and json.loads(body)["department"] == "renshe"
    assert await _closed(reader)
    writer.close()


async def test_http_1_0_is_answered_then_closed(gwx):
    """An HTTP/1.0 exchange call gets `connection: close` and the connection ends."""
    x = gwx
    await _grant(x)
    reader, writer = await asyncio.open_connection("127.0.0.1", x.port)
    writer.write(_req(x, version="1.0", auth=x.h("community-xf")))
    status, headers, body = await _read(reader)
    assert status == 200 and json.loads(body)["id_number"] == ID and headers["connection"] == "close"
    assert await _closed(reader)
    writer.close()


@pytest.mark.parametrize("call_first", [True, False], ids=["call-then-health", "health-then-call"])
async def test_pipelined_requests_are_answered_in_order(gwx, call_first):
    """Two requests in one write are both answered in order."""
    x = gwx
    await _grant(x)
    call, health = _req(x, auth=x.h("community-xf")), _req(x, "GET", "/healthz")
    reader, writer = await asyncio.open_connection("127.0.0.1", x.port)
    writer.write(call + health if call_first else health + call)
    first, second = await _read(reader), await _read(reader)
    answers = [first, second] if call_first else [second, first]
    assert answers[0][0] == 200 and json.loads(answers[0][2])["id_number"] == ID
    assert answers[1][0] == 200 and json.loads(answers[1][2]) == {"status": "ok", "service": "gateway"}
    writer.write(_req(x, "GET", "/healthz", close=True))  # the connection still works after both
    assert (await _read(reader))[0] == 200 and await _closed(reader)
    writer.close()


# ---- upstream failures ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("gwx", [{"down": True}], indirect=True)
async def test_upstream_down_is_a_503_problem(gwx):
    """Nothing listens on the departments' port: 503 upstream_unavailable, and logs it."""
    x = gwx
    r = await _ask(x, "dept-renshe")
    _is_problem(r, 503, "upstream_unavailable")
    assert "departments" in r.json()["detail"] and r.headers["retry-after"]
    assert [(row.member, row.status) for row in await _log(x)] == [("dept-renshe", 503)]


@pytest.mark.parametrize("gwx", [{"upstream_timeout_seconds": 0.3}], indirect=True)
async def test_a_slow_upstream_is_a_504_problem(gwx):
    """The emulator slowed past the upstream timeout: 504 upstream_timeout, and logs it."""
    x = gwx
    assert (await _ask(x, "dept-renshe")).status_code == 200
    x.emulators.state.settings.emulator_latency_ms = 1000
    r = await _ask(x, "dept-renshe", **{"Accept-Language": "en"})
    _is_problem(r, 504, "upstream_timeout")
    assert "timed out" in r.json()["detail"]
    assert [row.status for row in await _log(x)] == [200, 504]


@pytest.mark.parametrize("gwx", [{"root_path": "/gw"}], indirect=True)
async def test_under_a_root_path_a_call_is_not_a_500_and_is_logged(gwx):
    """Served with a root path (behind a proxy that strips it), a call is checked, forwarded and logged by the
    path below it, with or without X-Forwarded-For."""
    x = gwx
    r = await _ask(x, "dept-renshe")
    assert r.status_code == 200, r.text
    r = await _ask(x, "dept-renshe", **{"X-Forwarded-For": "10.0.0.9"})
    assert r.status_code == 200, r.text
    assert [(row.status, row.path) for row in await _log(x)] == [(200, "/departments/renshe/v1/queries")] * 2


# ---- metrics --------------------------------------------------------------------------------------------------

def _count(text: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("onenet_http_requests_total{"):
            names, value = line.rsplit(" ", 1)
            got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', names))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(value)
    return total


async def test_exchange_calls_are_counted_under_the_forward_route(gwx):
    """An exchange call shows in /metrics as onenet_http_requests_total for the forward route's label."""
    x = gwx
    labels = {"service": "gateway", "method": "POST", "route": "/{service}/{rest:path}"}
    page = (await x.client.get("/metrics", headers=METRICS_AUTH)).text
    ok, refused = _count(page, **labels, status="200"), _count(page, **labels, status="403")
    await _grant(x)
    assert (await _ask(x, "community-xf")).status_code == 200
    assert (await _ask(x, "community-ak")).status_code == 403
    r = await x.client.get("/metrics", headers=METRICS_AUTH)
    assert r.status_code == 200
    assert _count(r.text, **labels, status="200") == ok + 1
    assert _count(r.text, **labels, status="403") == refused + 1
