"""problem+json for every error path, on a tiny app built with the common factory (no database needed)."""
from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, Depends, Header
from pydantic import BaseModel, ConfigDict, Field

from common.app import create_service_app
from common.auth import Principal, TokenVerifier, get_principal
from common.errors import Problem
from common.http_client import UpstreamTimeout, UpstreamUnavailable
from common.i18n import EN, ZH, negotiate_language
from common.settings import ServiceSettings
from tests.conftest import gateway_auth

router = APIRouter(prefix="/t/v1")


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=10)
    count: int


@router.post("/things", status_code=201)
async def make(body: Thing, p: Principal = Depends(get_principal)):
    return body


@router.get("/boom")
async def boom(p: Principal = Depends(get_principal)):
    raise RuntimeError("secret internal detail: password=hunter2")


@router.get("/conflict")
async def conflict(if_match: str | None = Header(None)):
    if if_match is None:
        raise Problem(428, "precondition_required")
    raise Problem(412, "precondition_failed")


@router.get("/down")
async def down():
    raise UpstreamUnavailable("svc_matching")


@router.get("/slow")
async def slow():
    raise UpstreamTimeout("svc_matching")


@router.get("/busy")
async def busy(db_file: str):
    """A real pool of one connection, held while the same call asks for a second: the pool times out."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{db_file}", pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        async with engine.connect(), engine.connect():
            pass
    finally:
        await engine.dispose()


@router.get("/locked")
async def locked(db_file: str):
    """SQLite's busy timeout running out: one connection holds the write lock, another wants it."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{db_file}", connect_args={"timeout": 0.05})
    try:
        async with engine.connect() as a:
            await a.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
            await a.commit()
            await a.execute(text("INSERT INTO t VALUES (1)"))  # a's write transaction stays open
            async with engine.connect() as b:
                await b.execute(text("INSERT INTO t VALUES (2)"))
    finally:
        await engine.dispose()


@router.get("/limited")
async def limited():
    raise Problem(429, "rate_limited", headers={"Retry-After": "3"})


@pytest.fixture
async def client(jwks):
    settings = ServiceSettings(service_name="t", jwks_url=None)
    app = create_service_app(settings=settings, package=None, title="t", description="t", routers=[router],
                             verifier=TokenVerifier(settings, jwks=jwks))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                     base_url="http://t", auth=gateway_auth()) as c:
            yield c


def _is_problem(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["code"] == code and body["request_id"] and body["title"]
    assert body["type"] == f"urn:onenet:problem:{code}"
    return body


async def test_validation_names_each_field(client, auth):
    r = await client.post("/t/v1/things", json={"name": "", "count": "many", "extra": 1}, headers=auth())
    body = _is_problem(r, 422, "validation_failed")
    by_field = {e["field"]: e for e in body["errors"]}
    assert set(by_field) == {"name", "count", "extra"}
    assert by_field["extra"]["message"] == "不允许的字段" and by_field["count"]["code"] == "int_parsing"


async def test_english_on_request(client, auth):
    r = await client.post("/t/v1/things", json={"count": 1}, headers={**auth(), "Accept-Language": "en"})
    body = _is_problem(r, 422, "validation_failed")
    assert body["errors"][0]["message"] == "Field required" and body["title"] == "Validation failed"


async def test_malformed_json_and_media_type(client, auth):
    h = {**auth(), "content-type": "application/json"}
    _is_problem(await client.post("/t/v1/things", content=b"{nope", headers=h), 400, "malformed_json")
    _is_problem(await client.post("/t/v1/things", content=b"<x/>", headers={**auth(), "content-type": "application/xml"}),
                415, "unsupported_media_type")


async def test_body_limit_with_and_without_content_length(client, auth):
    big = b'{"name": "' + b"a" * (1024 * 1024 + 10) + b'", "count": 1}'
    _is_problem(await client.post("/t/v1/things", content=big, headers={**auth(), "content-type": "application/json"}),
                413, "payload_too_large")

    async def chunks():
        for _ in range(3):
            yield b"a" * (512 * 1024)

    r = await client.post("/t/v1/things", content=chunks(), headers={**auth(), "content-type": "application/json"})
    _is_problem(r, 413, "payload_too_large")


async def test_500_leaks_nothing(client, auth):
    body = _is_problem(await client.get("/t/v1/boom", headers=auth()), 500, "internal_error")
    assert "hunter2" not in str(body) and "RuntimeError" not in str(body)


async def test_status_codes_have_codes(client, auth, tmp_path):
    _is_problem(await client.get("/t/v1/nothing"), 404, "not_found")
    r = await client.put("/t/v1/things", json={})
    assert _is_problem(r, 405, "method_not_allowed") and "POST" in r.headers["allow"]
    _is_problem(await client.get("/t/v1/conflict"), 428, "precondition_required")
    _is_problem(await client.get("/t/v1/conflict", headers={"If-Match": "1"}), 412, "precondition_failed")
    _is_problem(await client.get("/t/v1/down"), 503, "upstream_unavailable")
    _is_problem(await client.get("/t/v1/slow"), 504, "upstream_timeout")
    r = await client.get("/t/v1/busy", params={"db_file": str(tmp_path / "busy.db")})
    assert _is_problem(r, 503, "service_unavailable") and r.headers["retry-after"] == "2"  # never a 500
    r = await client.get("/t/v1/locked", params={"db_file": str(tmp_path / "locked.db")})
    assert _is_problem(r, 503, "service_unavailable") and r.headers["retry-after"] == "2"
    r = await client.get("/t/v1/limited")
    assert _is_problem(r, 429, "rate_limited") and r.headers["retry-after"] == "3"
    _is_problem(await client.post("/t/v1/things", json={"name": "a", "count": 1}), 401, "unauthenticated")


@pytest.mark.parametrize("header,lang", [
    (None, ZH), ("", ZH), ("en", EN), ("en-US,en;q=0.9", EN), ("zh-CN,zh;q=0.9,en;q=0.8", ZH),
    ("fr, en;q=0.5", EN), ("en;q=0.2, zh;q=0.8", ZH), ("de", ZH), ("en;q=abc", ZH),
])
def test_language_negotiation(header, lang):
    assert negotiate_language(header) == lang


async def test_start_up_freezes_what_it_allocated_out_of_the_collectors_reach(jwks):
    import gc

    settings = ServiceSettings(service_name="t", jwks_url=None, gc_freeze_at_startup=True)
    app = create_service_app(settings=settings, package=None, title="t", description="t", routers=[router],
                             verifier=TokenVerifier(settings, jwks=jwks))
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    off = ServiceSettings(service_name="t", jwks_url=None, gc_freeze_at_startup=False)
    app = create_service_app(settings=off, package=None, title="t", description="t", routers=[router],
                             verifier=TokenVerifier(off, jwks=jwks))
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
