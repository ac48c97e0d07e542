"""A place code is ASCII digits (common.validators' code types): pydantic reads `\\d` as any Unicode digit, so a
pattern of a route's own would take `١١٠١٠٥` (Arabic-Indic) and store or compare it beside `110105`. Such a code
is a 422 naming the field, in the query and in a body; no declared pattern of any service says `\\d`."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.svc_matching.conftest import STAFF

XF = "110105001001"
ARABIC_INDIC = XF.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
FULLWIDTH = XF[:-1] + "１"


def _names(r, field: str, where: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [(e["field"], e["in"]) for e in r.json()["errors"]] == [(field, where)], r.json()


@pytest.mark.parametrize("code", [ARABIC_INDIC, FULLWIDTH])
@pytest.mark.parametrize("path", ["/matching/v1/activities", "/matching/v1/bookable_resources"])
async def test_a_place_code_filter_of_other_digits_is_422(client, auth, path, code):
    _names(await client.get(path, params={"place_code": code}, headers=auth(**STAFF)), "place_code", "query")
    assert (await client.get(path, params={"place_code": XF}, headers=auth(**STAFF))).status_code == 200


@pytest.mark.parametrize("code", [ARABIC_INDIC, FULLWIDTH])
async def test_a_place_code_of_other_digits_in_a_body_is_422_and_nothing_is_written(client, auth, code):
    now = client.app.state.clock.now()
    body = {"title": "老年人智能手机课堂", "category": "education", "organiser_kind": "community", "place_code": code,
            "venue": "幸福社区活动室", "starts_at": (now + timedelta(days=2)).isoformat(),
            "ends_at": (now + timedelta(days=2, hours=2)).isoformat(), "capacity": 2}
    _names(await client.post("/matching/v1/activities", json=body, headers=auth(**STAFF)), "place_code", "body")
    listed = await client.get("/matching/v1/activities", headers=auth(**STAFF))
    assert listed.status_code == 200 and listed.json()["items"] == [], listed.text


@pytest.mark.parametrize("package", ["svc_matching", "svc_services", "svc_residents", "svc_metrics", "gateway"])
async def test_no_declared_pattern_takes_any_unicode_digit(service_client, package):
    doc = (await (await service_client(package)).get("/openapi.json")).json()
    patterns: list[str] = []

    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("pattern"), str):
                patterns.append(x["pattern"])
            for value in x.values():
                walk(value)
        elif isinstance(x, list):
            for value in x:
                walk(value)

    walk(doc)
    assert patterns
    assert [p for p in patterns if "\\d" in p] == []
