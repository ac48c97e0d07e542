"""The dashboard in headless Chromium (Debian's package): it loads, a scope is picked, the numbers match the API."""
from __future__ import annotations

import asyncio
import os
import socket

import pytest

from tests.svc_metrics.conftest import C1
from tests.svc_metrics.test_dashboard import feed, fmt

CHROMIUM = os.environ.get("ONENET_TEST_CHROMIUM", "/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_dashboard_in_headless_chromium(client, ops, make_token, post):
    playwright = pytest.importorskip("playwright.async_api")
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
                                               args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page()
            await page.goto(f"{base}/metrics/v1/dashboard?period=2026-03")
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
