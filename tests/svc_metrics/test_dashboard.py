"""Dashboard and quarterly report: HTML with inline SVG, numbers equal to the API, scope picker, sign-in."""
from __future__ import annotations

import re
from datetime import timedelta

from svc_metrics.kpis.service import catalogue_file
from tests.svc_metrics.conftest import C1, C2, G1, G3, T0, request_flow

H = timedelta(hours=1)


def shown_values(html: str, table_id: str = "kpis") -> dict[str, str]:
    table = html.split(f'id="{table_id}"', 1)[1]
    return dict(re.findall(r'class="num value" data-code="([a-z_0-9]+)">([^<]*)<', table))


def fmt(v):
    return "—" if v is None else f"{v:.2f}".rstrip("0").rstrip(".")


async def feed(post):
    events = []
    for i, r in enumerate([5, 4, 2]):
        events += request_flow(f"a{i}", T0, grid=G1, rating=r, due=48 * H,
                               steps={"accepted": (i + 1) * H, "resolved": 5 * H, "rated": 6 * H})
    events += request_flow("b", T0, grid=G3, rating=1, steps={"accepted": 20 * H, "rated": 21 * H})
    await post(events)


async def test_dashboard_numbers_match_the_api_for_the_picked_scope(client, ops, post):
    await feed(post)
    for scope in ("all", C1):
        r = await client.get("/metrics/v1/dashboard", params={"scope": scope, "period": "2026-03"}, headers=ops)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        html = r.text
        assert "<svg" in html and "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
        api = (await client.get("/metrics/v1/kpis", params={"scope": scope, "period": "2026-03"}, headers=ops)).json()
        shown = shown_values(html)
        assert len(shown) == len(catalogue_file())
        assert shown == {i["code"]: fmt(i["value"]) for i in api["items"]}
        assert f'<option value="{C1}" selected>' in html or scope == "all"
    assert shown["satisfaction_rate"] == "66.67"


async def test_staff_picker_lists_only_their_places(client, auth, post):
    await feed(post)
    staff = auth(role="community_staff", scopes=[f"community:{C1}"])
    r = await client.get("/metrics/v1/dashboard", params={"scope": C1, "period": "2026-03"}, headers=staff)
    assert r.status_code == 200
    options = re.findall(r'<option value="(\d+|all)"', r.text)
    assert C1 in options and G1 in options and C2 not in options and "all" not in options
    r = await client.get("/metrics/v1/dashboard", params={"scope": C2}, headers=staff)
    assert r.status_code == 403


async def test_sign_in_with_a_token_sets_a_cookie(client, make_token, post):
    await feed(post)
    r = await client.get("/metrics/v1/dashboard", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status_code == 401 and "访问令牌" in r.text and r.headers["content-type"].startswith("text/html")
    # an API client (no text/html in Accept) gets the usual problem, not a page
    r = await client.get("/metrics/v1/dashboard", headers={"Accept": "application/json"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    token = make_token("evaluator", user="eval1")
    r = await client.post("/metrics/v1/dashboard/session",
                          data={"token": token, "next": "/metrics/v1/dashboard?period=2026-03"})
    assert r.status_code == 303 and r.headers["location"] == "/metrics/v1/dashboard?period=2026-03"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    r = await client.get("/metrics/v1/dashboard?period=2026-03")
    assert r.status_code == 200 and "达标" in r.text
    r = await client.post("/metrics/v1/dashboard/session", data={"token": make_token("resident")})
    assert r.status_code == 403


async def test_quarterly_report_is_printable_and_matches_the_api(client, ops, post):
    await feed(post)
    await client.post("/metrics/v1/warnings/scan", params={"period": "2026-Q1"}, headers=ops)
    r = await client.get("/metrics/v1/report", params={"period": "2026-03", "scope": "all"}, headers=ops)
    assert r.status_code == 200
    html = r.text
    assert "2026-Q1 季度通报" in html and "@media print" in html
    api = (await client.get("/metrics/v1/kpis", params={"period": "2026-Q1"}, headers=ops)).json()
    assert shown_values(html, "report") == {i["code"]: fmt(i["value"]) for i in api["items"]}
    assert "整改" in html and C1 in html   # C1's satisfaction 66.67% opened a rectification case
