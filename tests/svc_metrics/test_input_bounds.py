"""Bad input to the KPI endpoints is a 4xx problem naming the field (issue 23, findings 7 and 10): a period in a
year no calendar here reaches, a target that is no number (NaN, 1e309 read as infinity), a target outside what
its indicator can be (a rate below 0 or above 100 %, a negative duration, a score off the 1–5 scale)."""
from __future__ import annotations

import pytest

from tests.svc_metrics.conftest import C1

TARGET = f"/metrics/v1/kpis/{{code}}/targets/{C1}"


def _names(r, field: str, where: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [(e["field"], e["in"]) for e in r.json()["errors"]] == [(field, where)], r.json()


@pytest.mark.parametrize("period", ["0001", "0001-01", "0001-01-01", "0001-W01", "0001-Q1", "9999-12-31", "1999"])
@pytest.mark.parametrize("path", ["/metrics/v1/kpis", "/metrics/v1/kpis/response_time", "/metrics/v1/exchange/calls"])
async def test_period_outside_the_years_kept_is_422(client, ops, path, period):
    r = await client.get(path, params={"period": period}, headers=ops)
    _names(r, "period", "query")


@pytest.mark.parametrize("period", ["２０２６-Q1", "2026-０3", "٢٠٢٦"])
async def test_a_period_in_other_digits_than_ascii_is_422(client, ops, period):
    """A period is written in ASCII digits (2026-Q1, 2026-03, …): fullwidth or Arabic-Indic digits, which a regular
    expression's \\d would take, are refused naming the parameter."""
    r = await client.get("/metrics/v1/kpis/response_time", params={"period": period}, headers=ops)
    _names(r, "period", "query")


async def test_periods_inside_the_years_kept_answer(client, ops):
    for period in ("2000", "2000-W01", "2026-03", "2999-Q4"):
        r = await client.get("/metrics/v1/kpis/response_time", params={"period": period, "trend": 24}, headers=ops)
        assert r.status_code == 200, (period, r.text)


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"])
async def test_target_that_is_no_number_is_422(client, ops, raw):
    r = await client.put(TARGET.format(code="response_time"), headers={**ops, "Content-Type": "application/json"},
                         content=f'{{"value": {raw}, "source": "考核办法"}}')
    _names(r, "value", "body")
    assert (await client.get("/metrics/v1/targets", headers=ops)).json()["items"] == []


@pytest.mark.parametrize("code,value", [
    ("resolution_rate", -1e308), ("resolution_rate", 100.5), ("resolution_rate", -0.1),   # percentages 0–100
    ("response_time", -1), ("response_time", 1e308),                                        # hours, not negative
    ("emergency_ack_time", -5),                                                             # minutes
    ("departments_connected", -1),                                                          # a count
    ("satisfaction_score", 0), ("satisfaction_score", 6),                                   # ratings 1–5
])
async def test_target_outside_its_indicators_range_is_422(client, ops, code, value):
    r = await client.put(TARGET.format(code=code), headers=ops, json={"value": value, "source": "考核办法"})
    _names(r, "value", "body")
    assert r.json()["errors"][0]["code"] == "target.out_of_range"
    assert (await client.get("/metrics/v1/targets", headers=ops)).json()["items"] == []


@pytest.mark.parametrize("code,value", [("resolution_rate", 0), ("resolution_rate", 100), ("response_time", 0.5),
                                        ("satisfaction_score", 4.5), ("departments_connected", 12)])
async def test_target_inside_its_range_is_kept(client, ops, code, value):
    r = await client.put(TARGET.format(code=code), headers=ops, json={"value": value, "source": "考核办法"})
    assert r.status_code == 200 and r.json()["value"] == value, r.text


async def test_a_bad_target_outside_the_callers_scope_is_403_not_422(client, auth):
    """The scope is checked before the value: a caller without the place learns nothing from the value check."""
    street = auth(role="street_staff", scopes=["street:110105002"])
    r = await client.put(TARGET.format(code="resolution_rate"), headers=street, json={"value": 900, "source": "x"})
    assert r.status_code == 403
