"""The gateway's assertion (ADR 0013) as the Python forwarder makes it and a service checks it: over the pooled
connections (real sockets, as deployed) and the injected transport (the in-process tests), for paths and
queries that are escaped on the wire; a caller's own copy never reaches the service."""
from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, Request

from common.app import create_service_app
from common.assertion import GatewayAssertion
from common.auth import Principal
from common.http_client import CircuitBreaker
from common.settings import ServiceSettings
from gateway.routing.forwarder import Forwarder, Upstream
from tests.conftest import TEST_ASSERTION_KEY
from tests.gateway.conftest import serve_in_process

router = APIRouter()


@router.api_route("/t/v1/{rest:path}", methods=["GET", "POST", "DELETE"])
async def echo(rest: str, request: Request) -> dict:
    return {"path": request.scope["path"], "query": request.url.query,
            "assertions": request.headers.getlist("x-onenet-assertion")}


PATHS = ["/t/v1/plain", "/t/v1/幸福社区 a", "/t/v1/a;b=c,d", "/t/v1/百分号%25", "/t/v1/q?mark", "/t/v1/x#y"]
QUERIES = [b"", b"page=2&q=%E5%B9%B8", b"a=%2F&b=+"]


def _service():
    settings = ServiceSettings(service_name="t", jwks_url=None, gateway_assertion_key=TEST_ASSERTION_KEY)
    return create_service_app(settings=settings, package=None, title="t", description="t", routers=[router])


def _forwarder(url: str, *, key: str = TEST_ASSERTION_KEY, transport=None) -> Forwarder:
    upstream = Upstream("t", url, timeout=5.0, retries=0, breaker=CircuitBreaker(), transport=transport,
                        assertion=GatewayAssertion(key))
    return Forwarder({"t": upstream}, verifier=None, revoked_members=set())  # type: ignore[arg-type]


PRINCIPAL = Principal(member="app-test", user="u-1", role="resident")
CALLER_HEADERS = [(b"authorization", b"Bearer some-token"), (b"x-onenet-assertion", b"v1.1.forged")]


async def _forward(fw: Forwarder, method: str, path: str, query: bytes, headers=CALLER_HEADERS):
    return await fw.forward("t", PRINCIPAL, method=method, path=path, query=query, headers=headers,
                            client=("127.0.0.1", 1), body=b"")


@pytest.fixture
async def served():
    app = _service()
    async with app.router.lifespan_context(app):
        server, serving, port = await serve_in_process(app, lifespan="off")
        try:
            yield app, f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await serving


async def test_the_forwarders_assertion_holds_at_the_service_over_the_pooled_connections(served):
    """Every path and query, escaped on the wire as the forwarder escapes them, is taken by the service; the
    service saw one assertion, the gateway's, not the caller's."""
    _, url = served
    fw = _forwarder(url)
    try:
        for path in PATHS:
            for query in QUERIES:
                for method in ("GET", "POST", "DELETE"):
                    resp = await _forward(fw, method, path, query)
                    assert resp.status_code == 200, (method, path, query, bytes(resp.body))
                    seen = httpx.Response(200, content=bytes(resp.body)).json()
                    assert seen["path"] == path and len(seen["assertions"]) == 1, seen
                    assert seen["assertions"][0] != "v1.1.forged"
    finally:
        await fw.aclose()


async def test_the_forwarders_assertion_holds_over_the_injected_transport():
    app = _service()
    async with app.router.lifespan_context(app):
        fw = _forwarder("http://svc", transport=httpx.ASGITransport(app=app))
        try:
            for path in PATHS:
                for query in QUERIES:
                    resp = await _forward(fw, "GET", path, query)
                    assert resp.status_code == 200, (path, query, bytes(resp.body))
        finally:
            await fw.aclose()


async def test_an_upstream_with_another_key_refuses_the_gateways_calls(served):
    """The key is the upstream's own: an assertion made with another service's key is refused (401 problem)."""
    _, url = served
    fw = _forwarder(url, key="another-upstreams-key-0001")
    try:
        resp = await _forward(fw, "GET", "/t/v1/plain", b"")
        assert resp.status_code == 401
        body = httpx.Response(401, content=bytes(resp.body)).json()
        assert body["code"] == "not_through_gateway" and "网关" in body["detail"], body
    finally:
        await fw.aclose()


def test_an_assertion_is_bound_to_each_part_of_the_call_and_reads_back_one_way():
    """Only the path can hold a line break, so moving text between the parts makes another message."""
    a = GatewayAssertion(TEST_ASSERTION_KEY)
    value = a.sign("GET", b"/t/v1/a\nb", b"", b"Bearer t", b"rid", at=1_700_000_000)
    headers = [(b"x-onenet-assertion", value), (b"authorization", b"Bearer t"), (b"x-request-id", b"rid")]
    a.clock.timestamp = lambda: 1_700_000_010  # type: ignore[method-assign]
    assert a.refusal("GET", b"/t/v1/a\nb", b"", headers) is None
    assert a.refusal("GET", b"/t/v1/a", b"b", headers) == "invalid"
    assert a.refusal("GET", b"/t/v1/a\nb", b"", [*headers[:2], (b"x-request-id", b"other")]) == "invalid"
    assert a.refusal("GET", b"/t/v1/a\nb", b"", headers[1:]) == "missing"
    a.clock.timestamp = lambda: 1_700_000_031  # type: ignore[method-assign]
    assert a.refusal("GET", b"/t/v1/a\nb", b"", headers) == "stale"


def test_while_a_key_is_rotated_the_service_takes_the_new_and_the_previous_key():
    new, old = "the-new-assertion-key-0001", "the-old-assertion-key-0001"
    service = GatewayAssertion(new, previous=old)
    for signer in (GatewayAssertion(new), GatewayAssertion(old)):
        value = signer.sign("GET", b"/t/v1/a", b"", b"Bearer t", b"rid")
        headers = [(b"x-onenet-assertion", value), (b"authorization", b"Bearer t"), (b"x-request-id", b"rid")]
        assert service.refusal("GET", b"/t/v1/a", b"", headers) is None
    value = GatewayAssertion("a-third-assertion-key-0001").sign("GET", b"/t/v1/a", b"", b"Bearer t", b"rid")
    headers = [(b"x-onenet-assertion", value), (b"authorization", b"Bearer t"), (b"x-request-id", b"rid")]
    assert service.refusal("GET", b"/t/v1/a", b"", headers) == "invalid"
    assert GatewayAssertion(new).refusal(
        "GET", b"/t/v1/a", b"", [(b"x-onenet-assertion", GatewayAssertion(old).sign(
            "GET", b"/t/v1/a", b"", b"Bearer t", b"rid")), (b"authorization", b"Bearer t"),
                                 (b"x-request-id", b"rid")]) == "invalid"  # once the rotation is over
