"""svc_services' data plane (`svc_services.requests.plane`) under a real uvicorn server on
`common.dataplane.PlaneHttpProtocol`, over real TCP. Each test checks which path answered: the plane (its
`answered` count) or the app behind it, and that the answers are the app's own either way."""
from __future__ import annotations

import json

import httpx

from common.dataplane import plane_state
from tests.conftest import gateway_auth
from tests.gateway.conftest import serve_in_process
from tests.svc_services.conftest import GRID1, RES1

BODY = {"item_code": "SH-WX-001", "channel": "kiosk", "description": "楼道灯坏了", "location": {"grid": GRID1}}
TRACE = "0af7651916cd43dd8448eb211c80319c"


async def _served(app):
    from common.dataplane import PlaneHttpProtocol

    server, serving, port = await serve_in_process(app, http=PlaneHttpProtocol, lifespan="off")
    server.lifespan.state.update(plane_state(app.state.intake_plane))  # the app's lifespan runs in the fixture
    return server, serving, port


async def test_submissions_answered_on_the_plane_errors_by_the_app(ready, auth):
    app = ready.app
    plane = app.state.intake_plane
    server, serving, port = await _served(app)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=gateway_auth()) as c:
            h = {**auth(**RES1), "Idempotency-Key": "kiosk-7", "X-Request-Id": "rid-plane-1",
                 "traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
            r = await c.post("/services/v1/requests", json=BODY, headers=h)
            assert r.status_code == 201, r.text
            assert plane.answered == 1
            assert r.headers["content-type"] == "application/json" and r.headers["x-request-id"] == "rid-plane-1"
            assert r.headers["traceparent"].split("-")[1] == TRACE and r.headers["idempotency-replayed"] == "false"
            first = r.json()
            assert first["state"] == "submitted" and first["possible_duplicates"] == [] and first["allowed_actions"]
            # the retry replays it, on the plane too
            again = await c.post("/services/v1/requests", json=BODY, headers=h)
            assert (again.status_code, again.json(), again.headers["idempotency-replayed"]) == (201, first, "true")
            assert plane.answered == 2
            # a second submission sees the first as a possible duplicate
            other = await c.post("/services/v1/requests", json=BODY, headers=auth(**RES1))
            assert [d["id"] for d in other.json()["possible_duplicates"]] == [first["id"]]
            # a problem raised by the endpoint is the app's own problem, answered here
            r = await c.post("/services/v1/requests", json={**BODY, "item_code": "NOPE"}, headers=auth(**RES1))
            assert r.status_code == 422 and r.json()["errors"][0]["code"] == "item.unknown"
            assert r.headers["content-type"].startswith("application/problem+json") and r.headers["x-request-id"]
            assert plane.answered == 4
            # through the app: malformed JSON, an invalid field, a bad token, an over-long body, no body type match
            r = await c.post("/services/v1/requests", content=b'{"item_code": ',
                             headers={**auth(**RES1), "content-type": "application/json"})
            assert r.status_code == 400 and r.json()["code"] == "malformed_json" and r.headers["x-request-id"]
            r = await c.post("/services/v1/requests", json={**BODY, "channel": "fax"}, headers=auth(**RES1))
            assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["channel"]
            r = await c.post("/services/v1/requests", json=BODY, headers={"Authorization": "Bearer not-a-token"})
            assert r.status_code == 401
            r = await c.post("/services/v1/requests", json={**BODY, "description": "x" * 2_000_000},
                             headers=auth(**RES1))
            assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
            r = await c.post("/services/v1/requests", content=json.dumps(BODY).encode(),
                             headers={**auth(**RES1), "content-type": "text/plain"})
            assert r.status_code == 415
            assert plane.answered == 4
            # other operations are the app's, on the same connection
            r = await c.get(f"/services/v1/requests/{first['id']}", headers=auth(**RES1))
            assert r.status_code == 200 and r.json()["id"] == first["id"]
    finally:
        server.should_exit = True
        await serving


async def test_a_failing_token_check_is_answered_by_the_app(ready, auth):
    """An unexpected error while the plane checks a submission (the verifier failing) is not the plane's to
    answer: the app answers it as it would (a 500 problem with the request id), and the connection stays usable."""
    app = ready.app
    server, serving, port = await _served(app)
    verifier, real = app.state.verifier, app.state.verifier.verify

    async def broken(token):
        raise RuntimeError("key store unavailable")

    verifier.verify = broken
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=gateway_auth()) as c:
            r = await c.post("/services/v1/requests", json=BODY, headers={**auth(**RES1), "X-Request-Id": "rid-500"})
            assert r.status_code == 500 and r.json()["code"] == "internal_error"
            assert r.headers["x-request-id"] == "rid-500" and "key store" not in r.text
            verifier.verify = real
            r = await c.post("/services/v1/requests", json=BODY, headers=auth(**RES1))
            assert r.status_code == 201 and app.state.intake_plane.answered == 1
    finally:
        verifier.verify = real
        server.should_exit = True
        await serving


async def test_a_submission_around_the_gateway_is_refused_not_answered_on_the_plane(ready, auth):
    """Straight at svc_services without the gateway's assertion (or with one made for another path): the plane
    leaves it to the app, which refuses it (401 not_through_gateway); nothing is recorded (ADR 0013)."""
    from common.assertion import GatewayAssertion
    from tests.conftest import TEST_ASSERTION_KEY

    app = ready.app
    server, serving, port = await _served(app)
    h = auth(**RES1)
    other_path = GatewayAssertion(TEST_ASSERTION_KEY).sign("POST", b"/services/v1/requests/x", b"",
                                                           h["Authorization"].encode(), b"")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            for headers in (h, {**h, "X-OneNet-Assertion": other_path.decode()}):
                r = await c.post("/services/v1/requests", json=BODY, headers=headers)
                assert r.status_code == 401 and r.json()["code"] == "not_through_gateway", r.text
            assert app.state.intake_plane.answered == 0
            mine = await c.get("/services/v1/requests", headers=h)
            assert mine.status_code == 401
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=gateway_auth()) as c:
            assert (await c.get("/services/v1/requests", headers=h)).json()["items"] == []
    finally:
        server.should_exit = True
        await serving
