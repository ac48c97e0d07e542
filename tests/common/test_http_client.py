from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Request

from common.context import bearer_token_var, request_id_var, traceparent_var
from common.http_client import (
    CircuitBreaker, ServiceClient, UpstreamTimeout, UpstreamUnavailable, child_traceparent,
)

PARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def counting(responses):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        r = responses[min(len(calls) - 1, len(responses) - 1)]
        if isinstance(r, Exception):
            raise r
        return httpx.Response(r)

    return calls, httpx.MockTransport(handler)


def client(transport, **kw):
    kw.setdefault("backoff", 0)
    return ServiceClient("svc_matching", "http://up", transport=transport, **kw)


async def test_propagates_request_id_trace_and_caller_token():
    calls, t = counting([200])
    tokens = [request_id_var.set("rid-1"), traceparent_var.set(PARENT), bearer_token_var.set("caller-tok")]
    try:
        async with client(t) as c:
            await c.get("/x")
    finally:
        bearer_token_var.reset(tokens[2])
        traceparent_var.reset(tokens[1])
        request_id_var.reset(tokens[0])
    h = calls[0].headers
    assert h["x-request-id"] == "rid-1" and h["authorization"] == "Bearer caller-tok"
    assert h["traceparent"].startswith("00-" + "a" * 32 + "-") and "b" * 16 not in h["traceparent"]


async def test_token_provider_when_no_caller_token():
    calls, t = counting([200])

    async def provider():
        return "service-tok"

    async with client(t, token_provider=provider) as c:
        await c.post("/events", json={})
    assert calls[0].headers["authorization"] == "Bearer service-tok"


async def test_get_retried_on_503_post_not():
    calls, t = counting([503, 503, 200])
    async with client(t, retries=2) as c:
        assert (await c.get("/x")).status_code == 200
    assert len(calls) == 3
    calls, t = counting([503, 200])
    async with client(t, retries=2) as c:
        assert (await c.post("/x", json={})).status_code == 503
    assert len(calls) == 1


async def test_post_not_retried_on_connect_error_but_idempotency_key_is():
    err = httpx.ConnectError("refused")
    calls, t = counting([err, 200])
    async with client(t) as c:
        with pytest.raises(UpstreamUnavailable):
            await c.post("/x", json={})
    assert len(calls) == 1
    calls, t = counting([err, 200])
    async with client(t) as c:
        assert (await c.post("/x", json={}, headers={"Idempotency-Key": "k"})).status_code == 200
    assert len(calls) == 2


async def test_timeout_maps_to_upstream_timeout():
    calls, t = counting([httpx.ReadTimeout("slow")])
    async with client(t, retries=1) as c:
        with pytest.raises(UpstreamTimeout) as exc:
            await c.get("/x")
    assert exc.value.upstream == "svc_matching" and len(calls) == 2


async def test_breaker_opens_rejects_half_opens_and_closes():
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=10, clock=lambda: now[0])
    calls, t = counting([500, 500, 200])
    async with client(t, retries=0, breaker=breaker) as c:
        await c.get("/x")
        await c.get("/x")
        assert breaker.state == "open"
        with pytest.raises(UpstreamUnavailable):
            await c.get("/x")
        assert len(calls) == 2  # refused without calling
        now[0] = 11
        assert breaker.state == "half-open"
        assert (await c.get("/x")).status_code == 200
        assert breaker.state == "closed"


async def test_4xx_does_not_trip_breaker():
    breaker = CircuitBreaker(failure_threshold=1)
    calls, t = counting([404])
    async with client(t, breaker=breaker) as c:
        for _ in range(3):
            assert (await c.get("/x")).status_code == 404
    assert breaker.state == "closed"


@pytest.mark.parametrize("bad", [None, "", "garbage", "00-" + "0" * 32 + "-" + "b" * 16 + "-01",
                                 "00-" + "a" * 32 + "-" + "0" * 16 + "-01", "01-" + "a" * 32 + "-" + "b" * 16 + "-01"])
def test_invalid_traceparent_starts_new_trace(bad):
    tp = child_traceparent(bad)
    parts = tp.split("-")
    assert len(parts) == 4 and parts[0] == "00" and len(parts[1]) == 32 and parts[1] != "0" * 32


async def test_against_a_real_asgi_app():
    app = FastAPI()

    @app.get("/echo")
    async def echo(request: Request):
        return {"rid": request.headers.get("x-request-id")}

    async with ServiceClient("echo", "http://echo", transport=httpx.ASGITransport(app=app)) as c:
        token = request_id_var.set("rid-9")
        try:
            assert (await c.get("/echo")).json() == {"rid": "rid-9"}
        finally:
            request_id_var.reset(token)


async def test_clients_share_one_verifying_tls_context():
    """Every ServiceClient of a process uses the one context (an app makes about ten as it starts), and it verifies."""
    import ssl

    from common.http_client import default_tls

    async with ServiceClient("a", "https://a.example") as a, ServiceClient("b", "https://b.example") as b:
        contexts = {id(c._client._transport._pool._ssl_context) for c in (a, b)}
        assert contexts == {id(default_tls())}
        assert default_tls().verify_mode == ssl.CERT_REQUIRED and default_tls().check_hostname
