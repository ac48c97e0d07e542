"""The dashboard in headless Chromium (Debian's package): it loads, a scope is picked, the numbers match the API;
straight at svc_metrics (each request signed as the gateway would), and through the gateway with the sign-in form (password grant → HttpOnly cookie the gateway accepts
for the dashboard's GETs only)."""
from __future__ import annotations

import asyncio
import os
import socket


from tests.svc_metrics.conftest import C1
from tests.svc_metrics.test_dashboard import feed, fmt
from tests.components import missing, needs

CHROMIUM = os.environ.get("ONENET_TEST_CHROMIUM", "/usr/bin/chromium")
# playwright gives each launch a fresh, temporary user-data-dir; no background traffic on a closed network
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
pytestmark = needs("browser", os.path.exists(CHROMIUM), f"no Chromium at {CHROMIUM}")


def _playwright():
    try:
        import playwright.async_api
    except ImportError:
        missing("browser", "playwright is not installed")
    return playwright.async_api


async def _signed_as_the_gateway(route, request) -> None:
    """Adds the gateway's assertion to each request of the browser (svc_metrics answers nothing else)."""
    from urllib.parse import unquote_to_bytes, urlsplit

    from common.assertion import GatewayAssertion
    from tests.conftest import TEST_ASSERTION_KEY

    url = urlsplit(request.url)
    authorization = request.headers.get("authorization")
    value = GatewayAssertion(TEST_ASSERTION_KEY).sign(request.method, unquote_to_bytes(url.path), url.query.encode(),
                                                      authorization.encode() if authorization else None, None)
    await route.continue_(headers={**request.headers, "x-onenet-assertion": value.decode()})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_dashboard_in_headless_chromium(client, ops, make_token, post):
    playwright = _playwright()
    import uvicorn

    await feed(post)
    port = free_port()
    # The app's lifespan is already running (the fixture); serve the same app on a loopback port.
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        async with playwright.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=CHROMIUM_ARGS)
            page = await browser.new_page()
            await page.route("**/*", _signed_as_the_gateway)  # straight at svc_metrics, as the gateway calls it
            await page.goto(f"{base}/metrics/v1/dashboard?period=2026-03")
            await page.click("details summary")   # the token field is the fallback to user name and password
            await page.fill("textarea[name=token]", make_token("evaluator", user="eval1"))
            await page.click("button[type=submit]")
            await page.wait_for_selector("#kpis")
            assert await page.locator("svg.trend").count() == 1
            await page.select_option("#scope", C1)
            await page.click("#apply")
            await page.wait_for_url(f"**scope={C1}**")
            shown = {code: await page.locator(f'td.value[data-code="{code}"]').inner_text()
                     for code in ("satisfaction_rate", "response_time", "on_time_rate")}
            await browser.close()
    finally:
        server.should_exit = True
        await task
    api = (await client.get("/metrics/v1/kpis", params={"scope": C1, "period": "2026-03"}, headers=ops)).json()
    expected = {i["code"]: fmt(i["value"]) for i in api["items"] if i["code"] in shown}
    assert shown == expected and shown["satisfaction_rate"] == "66.67"


async def serve(app, port: int):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.02)
    return server, task


async def test_dashboard_through_the_gateway_with_the_sign_in_form(client, jwks, post, tmp_path):
    """A browser reaches svc_metrics only through the gateway: the page shows its sign-in form, the form gets a
    token from the gateway's POST /auth/v1/token, the cookie carries it on the dashboard's GETs, a scope is
    picked and the numbers equal the KPI API's (asked through the gateway with a bearer token)."""
    playwright = _playwright()
    import httpx
    from contextlib import AsyncExitStack

    from common.auth import TokenVerifier
    from deploy.demo import DEMO_PASSWORD
    from gateway.seed import seed_demo
    from tests.conftest import start_service

    await feed(post)
    m_port, g_port = free_port(), free_port()
    async with AsyncExitStack() as stack:
        gw = await start_service(stack, "gateway", f"sqlite+aiosqlite:///{tmp_path}/gateway.db", jwks,
                                 upstream_metrics=f"http://127.0.0.1:{m_port}", keys_dir=tmp_path / "gw-keys",
                                 catalogue_from_openapi=False)
        await seed_demo(gw.app.state.db)
        # svc_metrics trusts the gateway's signing keys (as in a deployment) besides the test's.
        client.app.state.verifier = TokenVerifier(client.app.state.settings, jwks={
            "keys": [*jwks["keys"], *gw.app.state.token_issuer.jwks()["keys"]]})
        servers = [await serve(client.app, m_port), await serve(gw.app, g_port)]
        base = f"http://127.0.0.1:{g_port}"
        try:
            async with playwright.async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS)
                context = await browser.new_context()
                page = await context.new_page()
                first = await page.goto(f"{base}/metrics/v1/dashboard?period=2026-03")
                assert first.status == 401 and await page.locator("#signin").count() == 1
                await page.fill("#username", "evaluator1")
                await page.fill("#password", DEMO_PASSWORD)
                await page.click("#signin-button")
                await page.wait_for_selector("#kpis")
                # evaluator1 works for district 110105, so the page opens on it rather than on "all"
                assert "110105" in await page.locator("#summary").inner_text()
                cookie = next(c for c in await context.cookies() if c["name"] == "onenet_metrics_token")
                assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/metrics/v1/"
                await page.select_option("#scope", C1)
                await page.click("#apply")
                await page.wait_for_url(f"**scope={C1}**")
                shown = {code: await page.locator(f'td.value[data-code="{code}"]').inner_text()
                         for code in ("satisfaction_rate", "response_time", "on_time_rate", "resolution_rate")}
                report = await page.goto(f"{base}/metrics/v1/report?scope={C1}&period=2026-Q1")
                assert report.status == 200 and "季度通报" in await page.content()
                await browser.close()
            async with httpx.AsyncClient(base_url=base) as http:
                tok = (await http.post("/auth/v1/token", data={"grant_type": "password", "username": "evaluator1",
                                                               "password": DEMO_PASSWORD})).json()["access_token"]
                api = (await http.get("/metrics/v1/kpis", params={"scope": C1, "period": "2026-03"},
                                      headers={"Authorization": f"Bearer {tok}"})).json()
                # The cookie stands in for the bearer token only on the pages' GETs.
                jar = {"Cookie": f"onenet_metrics_token={tok}"}
                assert (await http.get("/metrics/v1/dashboard", params={"scope": C1}, headers=jar)).status_code == 200
                assert (await http.get("/metrics/v1/kpis", params={"scope": C1}, headers=jar)).status_code == 401
                r = await http.post("/metrics/v1/dashboard/session", json={"token": tok}, headers=jar)
                assert r.status_code == 401
        finally:
            for server, task in servers:
                server.should_exit = True
            for server, task in servers:
                await task
    expected = {i["code"]: fmt(i["value"]) for i in api["items"] if i["code"] in shown}
    assert shown == expected and shown["satisfaction_rate"] == "66.67"
