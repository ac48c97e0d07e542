"""Forwarding: verified tokens cached (common.auth.TokenCache, tested in tests/common/test_kit.py) without delaying member revocation; the
forward route's request ids, problems and body limits; an upstream over a real socket."""
from __future__ import annotations

from types import SimpleNamespace

import pytest


ID = "110105194703210823"


async def test_a_token_is_verified_once_and_revocation_still_applies_at_once(exchange):
    x = exchange
    forwarder = x.app.state.forwarder
    calls = []
    verify = forwarder.verifier.verify

    async def counting(token):
        calls.append(token)
        return await verify(token)

    forwarder.verifier = SimpleNamespace(verify=counting)
    headers = x.h("community-xf")
    await x.client.post("/exchange/v1/grants", json={"resource": "renshe.insurance", "purpose": "核验"},
                        headers=headers)
    for _ in range(3):
        r = await x.client.post("/departments/renshe/v1/queries", json={"id_number": ID}, headers=headers)
        assert r.status_code == 200, r.text
    assert len(calls) == 1
    # a forged token is never cached: refused every time
    bad = {"Authorization": headers["Authorization"][:-4] + "AAAA"}
    for _ in range(2):
        r = await x.client.post("/departments/renshe/v1/queries", json={"id_number": ID}, headers=bad)
        assert r.status_code == 401
    assert len(calls) == 3
    # revoking the member stops the cached token on the next call
    r = await x.client.post("/exchange/v1/members/community-xf/revoke", headers=x.h("ops-console", role="ops"))
    assert r.status_code == 200
    r = await x.client.post("/departments/renshe/v1/queries", json={"id_number": ID}, headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "member_revoked"


async def test_the_forward_route_keeps_request_ids_problems_and_body_limits(exchange):
    x = exchange
    r = await x.client.post("/departments/renshe/v1/queries", json={"id_number": ID},
                            headers={"X-Request-Id": "req-fast-1"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["x-request-id"] == "req-fast-1"
    r = await x.client.post("/departments/renshe/v1/queries", content=b"x" * (2 * 1024 * 1024),
                            headers={**x.h("community-xf"), "content-type": "application/json"})
    assert r.status_code == 413
    r = await x.client.post("/departments/renshe/v1/queries", content=b"id=1",
                            headers={**x.h("community-xf"), "content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    # not an upstream: FastAPI answers as before
    assert (await x.client.get("/nowhere/at/all", headers=x.h("community-xf"))).status_code == 404
    assert (await x.client.get("/healthz")).status_code == 200


async def _raw_server(reply: bytes, seen: list, delay: float = 0.0):
    import asyncio

    async def handle(reader, writer):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            seen.append(head + await reader.readexactly(length))
            await asyncio.sleep(delay)
            writer.write(reply)
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_upstream_over_a_real_socket_keeps_bytes_headers_and_failure_semantics():
    """The upstream's own transport (httpx's pool, as deployed): the request goes out as sent (no headers of the
    client's own), the answer comes back untouched (no decompression, hop-by-hop and server headers dropped),
    timeouts and refusals map to 504/503."""
    import gzip
    import json

    from common.http_client import CircuitBreaker, UpstreamTimeout, UpstreamUnavailable
    from gateway.exchange.policy import MASK, REMOVE
    from gateway.routing.forwarder import Upstream, _response

    body = json.dumps({"id_number": ID, "name": "张三", "secret": "x"}).encode()
    zipped = gzip.compress(body)
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nServer: x\r\n"
             b"Connection: keep-alive\r\nContent-Length: " + str(len(zipped)).encode() + b"\r\n\r\n" + zipped)
    seen: list[bytes] = []
    server, url = await _raw_server(reply, seen)
    up = Upstream("t", url, timeout=0.5, retries=0, breaker=CircuitBreaker())
    try:
        for _ in range(2):  # the second call reuses the pooled connection
            status, raw, content = await up.send("POST", "/a b/ü", b"q=1%202", [(b"content-type", b"application/json")],
                                                 b'{"x":1}')
            assert status == 200 and content == zipped
        assert seen[0].startswith(b"POST /a%20b/%C3%BC?q=1%202 HTTP/1.1\r\n") and seen[0].endswith(b'{"x":1}')
        assert b"accept-encoding" not in seen[0].lower() and b"content-type: application/json" in seen[0].lower()
        plain = _response("t", status, raw, content, ())
        assert plain.body == zipped and plain.headers["content-encoding"] == "gzip"
        assert "server" not in plain.headers and "connection" not in plain.headers
        assert plain.headers["x-onenet-service"] == "t" and plain.headers["content-length"] == str(len(zipped))
        masked = _response("t", status, raw, content, ((("name",), MASK, "name"), (("secret",), REMOVE, None)))
        assert "content-encoding" not in masked.headers
        assert json.loads(masked.body) == {"id_number": ID, "name": "张*"}
    finally:
        await up.aclose()
        server.close()
    slow, slow_url = await _raw_server(reply, [], delay=2.0)
    up = Upstream("t", slow_url, timeout=0.2, retries=0, breaker=CircuitBreaker())
    try:
        with pytest.raises(UpstreamTimeout):
            await up.send("GET", "/", b"", [], b"")
    finally:
        await up.aclose()
        slow.close()
    up = Upstream("t", url, timeout=0.5, retries=0, breaker=CircuitBreaker())  # server closed: refused
    try:
        with pytest.raises(UpstreamUnavailable):
            await up.send("GET", "/", b"", [], b"")
    finally:
        await up.aclose()
