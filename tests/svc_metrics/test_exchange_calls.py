"""Calls through the gateway's exchange, per resource, with the refused ones (`GET /metrics/v1/exchange/calls`),
from the gateway's `exchange.calls` events (counted per resource, member, outcome and minute) and from the older
one-per-call `exchange.call`."""
from __future__ import annotations

from datetime import timedelta

from tests.svc_metrics.conftest import T0, ev


def calls(at, resource, count, *, refused=False, member="community-xf"):
    return ev("exchange.calls", at, resource, grid=None, resource=resource, member=member, owner="dept-renshe",
              outcome="refused" if refused else "ok", refused=refused, count=count,
              statuses={"403" if refused else "200": count})


async def test_calls_per_resource_and_refused(client, post, ops, auth):
    await post([
        calls(T0, "renshe.insurance", 40),
        calls(T0 + timedelta(minutes=1), "renshe.insurance", 2, refused=True),
        calls(T0 + timedelta(days=3), "renshe.insurance", 8, member="community-ak"),
        calls(T0, "minzheng.assistance", 5),
        calls(T0, "minzheng.assistance", 5, refused=True),
        ev("exchange.call", T0, "gongan.hukou", grid=None, resource="gongan.hukou", member="community-xf",
           status=200, outcome="ok", refused=False),
        ev("exchange.call", T0, "/departments/x", grid=None, resource=None, member="-", status=401,
           outcome="refused", refused=True),
        calls(T0 + timedelta(days=40), "renshe.insurance", 100),  # April: another period
    ])
    r = await client.get("/metrics/v1/exchange/calls", params={"period": "2026-03"}, headers=ops)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["period"], body["calls"], body["refused"], body["refused_rate"]) == ("2026-03", 62, 8, 12.9)
    assert body["from"].startswith("2026-02-28T16:00:00")  # the month in Shanghai
    assert body["items"] == [
        {"resource": "renshe.insurance", "calls": 50, "refused": 2, "refused_rate": 4.0},
        {"resource": "minzheng.assistance", "calls": 10, "refused": 5, "refused_rate": 50.0},
        {"resource": None, "calls": 1, "refused": 1, "refused_rate": 100.0},
        {"resource": "gongan.hukou", "calls": 1, "refused": 0, "refused_rate": 0.0}]
    april = (await client.get("/metrics/v1/exchange/calls", params={"period": "2026-04"}, headers=ops)).json()
    assert (april["calls"], april["items"][0]["resource"]) == (100, "renshe.insurance")

    # rebuilt from the event store: the same figures
    assert (await client.post("/metrics/v1/rebuild", headers=ops)).status_code == 200
    again = (await client.get("/metrics/v1/exchange/calls", params={"period": "2026-03"}, headers=ops)).json()
    assert again == body

    # platform-wide: not for staff of one place; a bad period is a problem naming it
    staff = auth(role="community_staff", user="staff1", scopes=("community:110105001001",))
    assert (await client.get("/metrics/v1/exchange/calls", headers=staff)).status_code == 403
    r = await client.get("/metrics/v1/exchange/calls", params={"period": "March"}, headers=ops)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert "period" in r.text
