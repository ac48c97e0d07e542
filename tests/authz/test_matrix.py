"""Every endpoint of svc_services (with its Open311 face), svc_matching, svc_metrics and the gateway's own
/exchange/v1 and /auth/v1 × every role, through the gateway, on the demo district.

The endpoint list comes from the apps' own OpenAPI (through the gateway's aggregated document): an endpoint with
no row in MATRIX fails the test, and so does a row for an endpoint that no longer exists.

Each row is one letter per caller in ROLES order, what the call must come to:
  o  past authorisation (2xx, or 400/409/412/422/428 about the input or state)
  d  refused: 403
  h  hidden: 404 (an object outside the caller's reach is not even confirmed to exist)
  -  either o or h (the answer depends on data, e.g. a list filtered to nothing vs. a record of one's own)
No call may ever answer 5xx. Object-level cases (another resident's ids, another grid / community, a proxy beyond
their person) and token failures are in test_objects.py and test_tokens.py.

Writes that check the role only after validating their body (VALID below) are sent a valid body, built per role
(a resident's request for themselves, a catalogue edit on the current version, …), so their row tells the allowed
roles (2xx, or a 409 that shows the state machine was reached) from the refused ones; for them an answer about the
input (400/412/422/428) fails the test. A transition goes to a request of its own per role (submitted by ops1 for
resident1, in grid A1 of 幸福), so that one role's move does not decide the next one's answer. The need and offer
rows meet a need and an offer recorded in the fixture (conftest.need_and_offer).
Other writes are sent with an empty body or ids that do not exist where they would change shared state (revoking a
member), so an allowed role gets 422 / 404 and nothing the other rows rely on changes.
"""
from __future__ import annotations

import os
from typing import Any

from deploy.demo import person_id
from svc_services.catalogue.schemas import ItemContent

ROLES = ("resident1", "proxy1", "grid1", "staff1", "street1", "dept_mz", "provider1", "evaluator1", "ops1",
         "system")
PREFIXES = ("/services/", "/open311/", "/matching/", "/metrics/", "/exchange/", "/auth/")
PUBLIC = {"POST /auth/v1/token"}  # anonymous by design (it is how a token is obtained)

# role order:      res prx grd stf str dpt prv evl ops sys
MATRIX: dict[str, str] = {
    "DELETE /services/v1/catalogue/items/{code}": "ddddddddod",
    "DELETE /services/v1/requester_profiles/{person_id}": "ddddddddod",
    "GET /exchange/v1/catalogue": "oooooooooo",
    "GET /exchange/v1/catalogue/{code}": "oooooooooo",
    "GET /exchange/v1/grants": "dddoooddoo",
    "GET /exchange/v1/grants/{grant_id}": "dddhhhddoh",
    "GET /exchange/v1/log": "dddoooddoo",
    "GET /exchange/v1/members": "dddddddood",
    "GET /matching/v1/hsds/": "oooooooooo",
    "GET /matching/v1/hsds/organizations": "oooooooooo",
    "GET /matching/v1/hsds/organizations/{org_id}": "oooooooooo",
    "GET /matching/v1/hsds/services": "oooooooooo",
    "GET /matching/v1/hsds/services/{service_id}": "oooooooooo",
    "GET /matching/v1/hsds/taxonomy_terms": "oooooooooo",
    "GET /matching/v1/needs": "ddooodddod",
    "GET /matching/v1/needs/{need_id}": "ohooohohoh",
    "GET /matching/v1/offers": "dddoodddod",
    "GET /matching/v1/offers/{offer_id}": "hhhoohohoh",
    # the person-place feed (ADR 0014): ops, or svc_residents' own member (the matrix's system is a kiosk)
    "DELETE /matching/v1/person_places/{person_id}": "ddddddddod",
    "GET /matching/v1/person_places/{person_id}": "ddddddddhd",
    "PUT /matching/v1/person_places/{person_id}": "ddddddddod",
    "GET /matching/v1/reports/duplicates": "dddddodood",
    "GET /matching/v1/reports/gaps": "dddddodood",
    "GET /matching/v1/services/{service_id}": "oooooooooo",
    "GET /matching/v1/timebank/accounts": "ooooodddod",
    "GET /matching/v1/timebank/accounts/{account_id}": "hhhoohhhoh",
    "GET /matching/v1/timebank/accounts/{account_id}/statement": "hhhoohhhoh",
    "GET /matching/v1/volunteers/{volunteer_id}": "hhhoohhhoh",
    "GET /metrics/v1/catalogue": "ddoooodood",
    "GET /metrics/v1/dashboard": "ddoooddood",
    "GET /metrics/v1/exchange/calls": "ddddddddod",
    "GET /metrics/v1/kpis": "ddddddddod",
    "GET /metrics/v1/kpis/{code}": "ddddddddhd",
    "GET /metrics/v1/rectifications": "ddoooodood",
    "GET /metrics/v1/rectifications/{case_id}": "ddhhhhdhhd",
    "GET /metrics/v1/report": "ddddddddod",
    "GET /metrics/v1/targets": "ddoooodood",
    "GET /metrics/v1/warnings": "ddoooodood",
    "GET /open311/v2/discovery.{fmt}": "oooooooooo",
    "GET /open311/v2/requests.{fmt}": "oooooooooo",
    "GET /open311/v2/requests/{request_id}.{fmt}": "oooooooooo",
    "GET /open311/v2/services.{fmt}": "oooooooooo",
    "GET /open311/v2/services/{service_code}.{fmt}": "hhhhhhhhhh",
    "GET /open311/v2/tokens/{token}.{fmt}": "hhhhhhhhhh",
    "GET /services/v1/catalogue/items": "oooooooooo",
    "GET /services/v1/catalogue/items/{code}": "oooooooooo",
    "GET /services/v1/catalogue/items/{code}/versions": "oooooooooo",
    "GET /services/v1/grids": "oooooooooo",
    "GET /services/v1/requester_profiles/{person_id}": "ddddddddhd",
    "GET /services/v1/requests": "ooooooodoo",
    "GET /services/v1/requests/{request_id}": "ohooohhhoo",
    "GET /services/v1/requests/{request_id}/candidates": "dhooohhhod",
    "GET /services/v1/requests/{request_id}/duplicates": "ohooohhhoo",
    "GET /services/v1/requests/{request_id}/materials": "ohooohhhoo",
    "GET /services/v1/requests/{request_id}/timeline": "ohooohhhoo",
    "PATCH /exchange/v1/members/{code}": "ddddddddhd",
    "POST /exchange/v1/catalogue/refresh": "ddddddddod",
    "POST /exchange/v1/grants": "dddoooddoo",
    "POST /exchange/v1/grants/{grant_id}/approve": "dddoooddoo",
    "POST /exchange/v1/grants/{grant_id}/check": "dddhhhdddh",
    "POST /exchange/v1/grants/{grant_id}/refuse": "dddoooddoo",
    "POST /exchange/v1/grants/{grant_id}/revoke": "dddhhhddoh",
    "POST /exchange/v1/members": "ddddddddod",
    "POST /exchange/v1/members/{code}/revoke": "ddddddddhd",
    "POST /exchange/v1/members/{code}/rotate-secret": "ddddddddhd",
    "POST /matching/v1/match/batch": "dddoodddod",
    "POST /matching/v1/needs": "ddooodddod",
    "POST /matching/v1/needs/{need_id}/candidates": "ddooodddod",
    "POST /matching/v1/needs/{need_id}/match": "dddoodddod",
    "POST /matching/v1/offers/expire": "ddddddddoo",
    "POST /matching/v1/offers/{offer_id}/accept": "hhhoohohoh",
    "POST /matching/v1/offers/{offer_id}/complete": "hhhoohdhoh",
    "POST /matching/v1/offers/{offer_id}/decline": "hhhoohohoh",
    "POST /matching/v1/organizations": "dddoooddod",
    "POST /matching/v1/organizations/{org_id}/locations": "dddoooddod",
    "POST /matching/v1/services": "dddoooddod",
    "POST /matching/v1/services/{service_id}/status": "dddoooddod",
    "POST /matching/v1/taxonomy_terms": "dddoooddod",
    "POST /matching/v1/timebank/credits": "dddoodddod",
    "POST /matching/v1/timebank/postings": "ddddodddod",
    "POST /matching/v1/timebank/redemptions": "hhdoodddod",
    "POST /matching/v1/volunteers": "ddooodddod",
    "POST /matching/v1/volunteers/{volunteer_id}/hours_offers": "hhhoohhhoh",
    "POST /metrics/v1/events": "ddddddddoo",
    "POST /metrics/v1/rebuild": "ddddddddod",
    "POST /metrics/v1/rectifications/{case_id}/advance": "ddoooodood",
    "POST /metrics/v1/warnings/scan": "ddddddddoo",
    "POST /metrics/v1/warnings/{warning_id}/acknowledge": "dddhhdddhd",
    "POST /open311/v2/requests.{fmt}": "ooooooddoo",
    "POST /services/v1/catalogue/items": "ddddddddod",
    "POST /services/v1/catalogue/items/{code}/activate": "ddddddddod",
    "POST /services/v1/requests": "ooooooddoo",
    "POST /services/v1/requests/{request_id}/materials/fetch": "dhooohhhoo",
    "POST /services/v1/requests/{request_id}/transitions": "dhooohhhod",
    "PUT /metrics/v1/kpis/{code}/targets/{scope}": "ddddodddod",
    "PUT /services/v1/catalogue/items/{code}": "ddddddddod",
    "PUT /services/v1/grids/{code}": "dddoodddod",
    "PUT /services/v1/requester_profiles/{person_id}": "ddddddddod",
    "PUT /services/v1/requests/{request_id}/publication": "dddoodddod",
}


def fill(path: str, ids: dict[str, str]) -> str:
    if path.startswith("/services/v1/catalogue/items/{code}"):
        path = path.replace("{code}", "SH-WX-001")
    elif path.startswith("/services/v1/requester_profiles/{person_id}"):
        path = path.replace("{person_id}", "authz-profile-probe")  # no demo person's profile is touched
    elif path.startswith("/services/v1/grids/{code}"):
        path = path.replace("{code}", "110105001001001")
    elif path.startswith("/exchange/v1/members/{code}"):
        path = path.replace("{code}", "no-such-member")
    elif path.startswith("/exchange/v1/catalogue/{code}"):
        path = path.replace("{code}", "gongan.hukou")
    elif path.startswith("/metrics/v1/kpis/{code}"):
        path = path.replace("{code}", "request_volume").replace("{scope}", "110105001001")
    path = path.replace("{fmt}", "json").replace("{service_code}", "SH-WX-001").replace("{token}", "no-such-token")
    path = path.replace("{request_id}", ids["request_id"])
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    return path


def classify(status: int) -> str:
    return {401: "u", 403: "d", 404: "h"}.get(status, "E" if status >= 500 else "o")


def endpoints(pt) -> list[str]:
    doc = pt.request("GET", "/openapi.json").json()
    assert not doc["info"].get("x-onenet-unavailable")
    out = []
    for path, item in doc["paths"].items():
        if path.startswith(PREFIXES) and not path.startswith("/residents/"):
            out += [f"{m.upper()} {path}" for m in item if m in ("get", "post", "put", "patch", "delete")]
    return sorted(out)


GRID_A1, COMMUNITY_XF = "110105001001001", "110105001001"
REQUEST_BODY = {"item_code": "SH-WX-001", "channel": "app", "description": "authz matrix: 厨房水管漏水",
                "location": {"grid": GRID_A1}, "attributes": {"appliance": "plumbing"}}
# endpoints sent a valid body (built by valid_body): an answer about the input fails the row
VALID = {
    "POST /matching/v1/needs",
    "POST /matching/v1/timebank/credits",
    "POST /matching/v1/timebank/postings",
    "POST /matching/v1/timebank/redemptions",
    "POST /matching/v1/volunteers/{volunteer_id}/hours_offers",
    "POST /open311/v2/requests.{fmt}",
    "POST /services/v1/catalogue/items",
    "POST /services/v1/requests",
    "POST /services/v1/requests/{request_id}/transitions",
    "PUT /services/v1/catalogue/items/{code}",
    "PUT /services/v1/grids/{code}",
}


def _ops(pt, method: str, url: str, **kw):
    r = pt.request(method, url, headers=pt.platform.headers("ops1"), **kw)
    assert r.status_code < 300, (url, r.status_code, r.text)
    return r.json()


def valid_body(pt, endpoint: str, role: str, ids: dict[str, str]) -> tuple[str, dict[str, Any], str | None]:
    """(path, request keywords, request id to use) for an endpoint of VALID, as `role` would send it."""
    i = ROLES.index(role)
    if endpoint == "POST /services/v1/catalogue/items":
        item = _ops(pt, "GET", "/services/v1/catalogue/items/SH-WX-001")
        content = {k: item[k] for k in ItemContent.model_fields}
        return endpoint, {"json": {**content, "code": f"AUTHZ-{i:02d}", "name": f"authz matrix {role}"}}, None
    if endpoint == "PUT /services/v1/catalogue/items/{code}":  # the current content again, on the current version
        item = _ops(pt, "GET", "/services/v1/catalogue/items/SH-WX-001")
        content = {k: item[k] for k in ItemContent.model_fields}
        return endpoint, {"json": {**content, "version": item["current_version"]}}, None
    if endpoint == "PUT /services/v1/grids/{code}":  # the grid as it is
        grid = next(g for g in _ops(pt, "GET", "/services/v1/grids") if g["code"] == GRID_A1)
        return endpoint, {"json": {k: grid[k] for k in ("name", "lat", "long")}}, None
    if endpoint == "POST /services/v1/requests":  # residents and proxies file for themselves, staff for P1
        body = dict(REQUEST_BODY)
        if role not in ("resident1", "proxy1"):
            body["person_id"] = person_id("P1")
        return endpoint, {"json": body}, None
    if endpoint == "POST /services/v1/requests/{request_id}/transitions":  # accept a fresh request of resident1
        req = _ops(pt, "POST", "/services/v1/requests", json={**REQUEST_BODY, "person_id": person_id("P1")})
        return endpoint, {"json": {"action": "accept", "version": req["version"]}}, req["id"]
    if endpoint == "POST /open311/v2/requests.{fmt}":  # form-encoded, the caller's bearer token; not SH-WX-001,
        # withdrawn by the DELETE row until the activate row
        return endpoint, {"data": {"service_code": "WG-SJ-001", "address_id": GRID_A1,
                                   "description": "authz matrix: 楼道灯坏了",
                                   "attribute[event_type]": "facility"}}, None
    if endpoint == "POST /matching/v1/needs":
        return endpoint, {"json": {"category": "elderly_care", "person_id": person_id("P1"), "place_code": GRID_A1,
                                   "latitude": 39.9219, "longitude": 116.4436,
                                   "description": f"authz matrix: {role}"}}, None
    if endpoint == "POST /matching/v1/volunteers/{volunteer_id}/hours_offers":  # the demo volunteer (P5)
        return endpoint, {"json": {"minutes": 60, "period_start": "2026-11-28", "note": f"authz {role}"}}, None
    if endpoint == "POST /matching/v1/timebank/credits":  # a point for P5 (幸福) from 幸福's issuance
        return endpoint, {"json": {"posting_id": f"authz-credit-{i:02d}", "person_id": person_id("P5"),
                                   "community": COMMUNITY_XF, "unit": "point", "amount": 1,
                                   "memo": "authz matrix"}}, None
    if endpoint == "POST /matching/v1/timebank/postings":  # a minute from P5 (幸福) to P9 (安康), both volunteers
        to = _ops(pt, "GET", "/matching/v1/timebank/accounts", params={"person_id": person_id("P9")})[0]["id"]
        return endpoint, {"json": {"posting_id": f"authz-transfer-{i:02d}", "unit": "minute", "entries": [
            {"account_id": ids["account_id"], "amount": -1}, {"account_id": to, "amount": 1}]}}, None
    if endpoint == "POST /matching/v1/timebank/redemptions":  # from P5's account (the volunteer's)
        return endpoint, {"json": {"posting_id": f"authz-redeem-{i:02d}", "account_id": ids["account_id"],
                                   "community": COMMUNITY_XF, "amount": 1, "memo": "authz matrix"}}, None
    raise AssertionError(endpoint)


def call(pt, endpoint: str, ids: dict[str, str], role: str):
    method, path = endpoint.split(" ", 1)
    headers = pt.platform.headers(role)
    if endpoint in VALID:
        _, kw, request_id = valid_body(pt, endpoint, role, ids)
        url = fill(path, {**ids, "request_id": request_id} if request_id else ids)
        return pt.request(method, url, headers=headers, **kw)
    url = fill(path, ids)
    if method in ("GET", "DELETE"):
        return pt.request(method, url, headers=headers)
    return pt.request(method, url, headers=headers, json={})


def test_every_endpoint_has_a_row(pt):
    have = set(endpoints(pt)) - PUBLIC
    assert not (have - set(MATRIX)), f"endpoints without a row in MATRIX: {sorted(have - set(MATRIX))}"
    assert not (set(MATRIX) - have), f"rows for endpoints that no longer exist: {sorted(set(MATRIX) - have)}"
    assert all(len(v.replace(" ", "")) == len(ROLES) for v in MATRIX.values())


def test_role_matrix(pt, ids):
    observed: dict[str, str] = {}
    problems = []
    for endpoint in endpoints(pt):
        if endpoint in PUBLIC:
            continue
        row = ""
        for role in ROLES:
            r = call(pt, endpoint, ids, role)
            row += classify(r.status_code)
            if endpoint in VALID and r.status_code in (400, 412, 422, 428):
                problems.append(f"{endpoint} as {role}: the valid body was refused: {r.status_code} {r.text[:300]}")
            if r.status_code >= 400:
                assert r.headers["content-type"].startswith("application/problem+json") or \
                    endpoint.startswith("GET /open311") or endpoint.startswith("POST /open311"), (endpoint, role)
        observed[endpoint] = row
    if os.environ.get("ONENET_AUTHZ_OBSERVE"):  # prints the rows as observed, to review before pasting
        for k, v in observed.items():
            print(f'    "{k}": "{v}",')
    for endpoint, row in observed.items():
        want = MATRIX.get(endpoint, "?" * len(ROLES)).replace(" ", "")
        for role, got, exp in zip(ROLES, row, want):
            if got == "E" or not (got == exp or (exp == "-" and got in "oh")):
                problems.append(f"{endpoint} as {role}: got {got}, want {exp}")
    assert not problems, "\n".join(problems)
