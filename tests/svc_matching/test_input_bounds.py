"""Bad input to svc_matching's lists is a 422 naming the field, not a 500 (issue 23, finding 7): an HSDS
`modified_after` without a UTC offset (it names no instant to compare stored times with), a cursor nested deeper
than the JSON parser goes."""
from __future__ import annotations

import base64

import pytest

NESTED = base64.urlsafe_b64encode(b"[" * 5_000 + b"]" * 5_000).decode()


def _names(r, field: str, where: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [(e["field"], e["in"]) for e in r.json()["errors"]] == [(field, where)], r.json()


@pytest.mark.parametrize("value", ["2026-11-01T00:00:00", "2026-11-01 08:00", "2026-11-01"])
async def test_hsds_modified_after_without_offset_is_422(client, staff, value):
    r = await client.get("/matching/v1/hsds/services", params={"modified_after": value}, headers=staff)
    _names(r, "modified_after", "query")


@pytest.mark.parametrize("value", ["2026-11-01T00:00:00Z", "2026-11-01T08:00:00+08:00"])
async def test_hsds_modified_after_with_offset_answers(client, staff, value):
    r = await client.get("/matching/v1/hsds/services", params={"modified_after": value}, headers=staff)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", ["/matching/v1/needs", "/matching/v1/offers"])
async def test_nested_cursor_is_422(client, auth, path):
    r = await client.get(path, params={"cursor": NESTED}, headers=auth(role="ops"))
    _names(r, "cursor", "query")


@pytest.mark.parametrize("value", ["12", "1767225600", "-1", "1767225600.5"])
async def test_hsds_modified_after_is_a_date_time_not_a_unix_timestamp(client, staff, value):
    """Declared `format: date-time` (issue 31): a number is not read as a Unix timestamp, as pydantic alone would."""
    r = await client.get("/matching/v1/hsds/services", params={"modified_after": value}, headers=staff)
    _names(r, "modified_after", "query")
