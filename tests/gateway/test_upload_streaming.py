"""File uploads pass the gateway as a stream (issue 27): served over real TCP (uvicorn), the gateway forwards the
first bytes of an upload to the service before the client has sent the rest, with the caller's Content-Length,
never holding the whole body, alone and behind its edge (nginx streams these routes to it unbuffered); the upload
routes' own body limit (common.storage.uploads) applies there and
nowhere else, whether the size is declared or only found while streaming."""
from __future__ import annotations

import asyncio
import hashlib
from types import SimpleNamespace

import httpx
import pytest

from common.clock import FrozenClock
from common.storage.uploads import UPLOAD_BODY_LIMIT
from tests.gateway.conftest import START, _seed, fresh_gateway_db_and_emulators, serve_in_process

PATH = "/services/v1/requests/r-1/photos"
CHUNK = 64 * 1024


def recording_upstream(seen: dict):
    """A bare ASGI service: counts the body's bytes as they arrive, answers with their size and SHA-256."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        h = hashlib.sha256()
        seen["bytes"] = 0
        seen["headers"] = dict(scope["headers"])
        while True:
            msg = await receive()
            body = msg.get("body", b"")
            seen["bytes"] += len(body)
            h.update(body)
            if not msg.get("more_body"):
                break
        import json
        out = json.dumps({"size": seen["bytes"], "sha256": h.hexdigest()}).encode()
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    return app


@pytest.fixture
async def served(db_url, gateway_keys_dir, sqlite_template, edge_or_not):
    """The recording service behind the gateway over TCP, alone or behind its edge (real nginx)."""
    from gateway.app import create_app
    from gateway.settings import GatewaySettings

    seen: dict = {}
    await fresh_gateway_db_and_emulators(db_url, sqlite_template, gateway_keys_dir)
    up_server, up_serving, up_port = await serve_in_process(recording_upstream(seen))
    settings = GatewaySettings(database_url=db_url, keys_dir=gateway_keys_dir, outbox_relay_enabled=False,
                               catalogue_from_openapi=False, upstream_services=f"http://127.0.0.1:{up_port}",
                               upstream_retries=0, upstream_timeout_seconds=20.0, rate_limit_enabled=False,
                               **edge_or_not.settings_extra)
    gw = create_app(settings, clock=FrozenClock(START))
    await _seed(gw)
    gw_server, gw_serving, port = await serve_in_process(gw)
    try:
        port = await edge_or_not.front(settings, gw, port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            # a resident through the platform's app (the owning service decides what they may do)
            tok = gw.state.token_issuer.issue(subject="resident1", member="community-xf", role="resident",
                                              scopes=["person:person-1"])["access_token"]
            yield SimpleNamespace(client=client, seen=seen, h={"Authorization": f"Bearer {tok}"}, port=port,
                                  edge=edge_or_not.edge is not None)
    finally:
        await edge_or_not.stop()
        for server, serving in ((gw_server, gw_serving), (up_server, up_serving)):
            server.should_exit = True
            await serving


async def test_upload_reaches_the_service_before_the_client_finishes(served):
    total = 6 * 1024 * 1024
    data = bytes(range(256)) * (total // 256)
    waited = {}

    async def body():
        for i in range(0, total, CHUNK):
            yield data[i:i + CHUNK]
            if i == 2 * 1024 * 1024:  # hold the rest back until the service has had most of what was sent
                for _ in range(500):
                    if served.seen.get("bytes", 0) >= 1024 * 1024:
                        break
                    await asyncio.sleep(0.01)
                waited["upstream_had"] = served.seen.get("bytes", 0)

    r = await served.client.post(PATH, content=body(), headers={
        **served.h, "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(total)})
    assert r.status_code == 201, r.text
    assert r.json() == {"size": total, "sha256": hashlib.sha256(data).hexdigest()}
    assert waited["upstream_had"] >= 1024 * 1024   # streamed: a buffering gateway would have passed nothing yet
    assert served.seen["headers"][b"content-length"] == str(total).encode()
    assert served.seen["headers"][b"x-onenet-assertion"]  # signed for the service as every call (ADR 0013)


async def test_upload_limits_declared_and_streamed(served):
    # declared too large: refused before a byte of the body is sent (a raw socket: clients insist on sending it)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    writer.write(f"POST {PATH} HTTP/1.1\r\nHost: gw\r\nAuthorization: {served.h['Authorization']}\r\n"
                 f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {UPLOAD_BODY_LIMIT + 1}\r\n\r\n"
                 .encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413") and b"application/problem+json" in head
    assert "bytes" not in served.seen
    if served.edge:  # far past it: the edge's own problem
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(f"POST {PATH} HTTP/1.1\r\nHost: gw\r\nAuthorization: {served.h['Authorization']}\r\n"
                     f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {3 * UPLOAD_BODY_LIMIT}"
                     "\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        assert head.startswith(b"HTTP/1.1 413") and b"application/problem+json" in head

    # chunked, no length: refused once the stream crosses the limit, the service told nothing more
    async def endless():
        for _ in range(UPLOAD_BODY_LIMIT // CHUNK + 10):
            yield bytes(CHUNK)

    r = await served.client.post(PATH, content=endless(), headers={
        **served.h, "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert served.seen.get("bytes", 0) <= UPLOAD_BODY_LIMIT

    # within the upload limit but above the default: fine on an upload route, refused on any other
    body = bytes(2 * 1024 * 1024)
    ok = await served.client.post(PATH, content=body, headers={**served.h, "Content-Type": "multipart/form-data; boundary=x"})
    assert ok.status_code == 201 and ok.json()["size"] == len(body)
    other = await served.client.post("/services/v1/requests", content=body + bytes(len(body) if served.edge else 0),
                                     headers={**served.h, "Content-Type": "application/json"})
    assert other.status_code == 413  # (past the edge's general limit of twice the default, nginx's own answer)
    other = await served.client.post("/services/v1/requests", content=b"--x--",
                                     headers={**served.h, "Content-Type": "multipart/form-data; boundary=x"})
    assert other.status_code == 415  # multipart only on the upload routes


def multipart(fields: list[tuple[str, bytes, str | None]], boundary: bytes = b"b0undary") -> bytes:
    out = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--" + boundary + f"\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


async def test_open311_media_post_streams_with_its_api_key_from_the_form(served):
    """GeoReport's multipart POST (a `media` photo): the api_key field ahead of the file names the caller at the
    gateway, and the body reaches the service whole and unchanged, streamed (the key's bytes in front)."""
    key = served.h["Authorization"].removeprefix("Bearer ")
    photo = bytes(range(256)) * (3 * 1024 * 1024 // 256)
    ctype = {"Content-Type": "multipart/form-data; boundary=b0undary"}
    body = multipart([("service_code", b"WG-SJ-001", None), ("api_key", key.encode(), None),
                      ("media", photo, "lamp.jpg")])
    for fmt in ("json", "xml"):
        r = await served.client.post(f"/open311/v2/requests.{fmt}", content=body, headers=ctype)
        assert r.status_code == 201, r.text
        assert r.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        assert served.seen["headers"][b"authorization"] == f"Bearer {key}".encode()
    # the key in the query works the same; a key only after the file, or none, is refused in Open311's format
    late = multipart([("media", photo, "lamp.jpg"), ("api_key", key.encode(), None)])
    served.seen.clear()
    r = await served.client.post(f"/open311/v2/requests.json?api_key={key}", content=late, headers=ctype)
    assert r.status_code == 201 and r.json()["size"] == len(late)
    served.seen.clear()
    r = await served.client.post("/open311/v2/requests.xml", content=late, headers=ctype)
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/xml") and b"<errors>" in r.content
    assert "bytes" not in served.seen
    # a plain form keeps the default body limit on this route, answered in Open311's format
    r = await served.client.post("/open311/v2/requests.json", content=b"api_key=" + b"x" * (1024 * 1024 + 1),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and r.json()[0]["code"] == 413


async def test_an_upload_may_take_longer_to_answer_than_a_call():
    """After an upload's last byte the service examines and stores the file (a large photo decoded and re-encoded),
    so the gateway waits `upload_read_timeout_seconds` for its answer, not a call's `upstream_timeout_seconds`."""
    from common.http_client import CircuitBreaker, UpstreamTimeout
    from gateway.routing.forwarder import StreamedBody, Upstream

    async def slow(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        await asyncio.sleep(1.5)  # the examination, after the whole body arrived
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server, serving, port = await serve_in_process(slow)
    up = Upstream("services", f"http://127.0.0.1:{port}", timeout=0.5, retries=0, upload_read=5.0,
                  breaker=CircuitBreaker(failure_threshold=5, reset_timeout=10))

    async def chunks():
        for _ in range(8):
            yield bytes(CHUNK)
    try:
        status, _, body = await up.send("POST", PATH, b"", [(b"content-type", b"multipart/form-data; boundary=x")],
                                        StreamedBody(chunks(), str(8 * CHUNK).encode()))
        assert (status, body) == (201, b"ok")
        with pytest.raises(UpstreamTimeout):   # the same wait for a call: past its deadline
            await up.send("POST", "/services/v1/requests", b"", [(b"content-type", b"application/json")], b"{}")
    finally:
        await up.aclose()
        server.should_exit = True
        await serving
