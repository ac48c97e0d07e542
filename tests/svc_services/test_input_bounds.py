"""Input no column can hold is a 422 naming the field, not a 500 (issue 23, finding 7): a catalogue version past
what the version column holds (in the query and in the body), a cursor nested deeper than the JSON parser goes."""
from __future__ import annotations

import base64

import pytest

from tests.svc_services.conftest import MEAL, OPS, RES1

# every test reads or is refused: one svc_services per backend for the module
pytestmark = pytest.mark.asyncio(loop_scope="module")
ITEM = "/services/v1/catalogue/items/YL-ZC-001"
NESTED = base64.urlsafe_b64encode(b"[" * 5_000 + b"]" * 5_000).decode()


@pytest.fixture
def ready(module_ready):
    return module_ready


def _names(r, field: str, where: str) -> None:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [(e["field"], e["in"]) for e in r.json()["errors"]] == [(field, where)], r.json()


@pytest.mark.parametrize("version", [2 ** 31, 2 ** 63, 2 ** 64 + 1, 10 ** 30])
async def test_version_query_past_the_column_is_422(ready, auth, version):
    r = await ready.get(ITEM, params={"version": version}, headers=auth(**RES1))
    _names(r, "version", "query")


@pytest.mark.parametrize("version", [2 ** 31, 2 ** 63, 2 ** 64 + 1, 10 ** 30])
async def test_version_in_an_edit_past_the_column_is_422(ready, auth, version):
    edited = {k: v for k, v in MEAL.items() if k != "code"}
    r = await ready.put(ITEM, json={**edited, "version": version}, headers=auth(**OPS))
    _names(r, "version", "body")
    r = await ready.get(f"{ITEM}/versions", headers=auth(**RES1))
    assert [v["version"] for v in r.json()] == [1]


async def test_largest_version_the_column_holds_is_a_plain_404(ready, auth):
    r = await ready.get(ITEM, params={"version": 2 ** 31 - 1}, headers=auth(**RES1))
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("path", ["/services/v1/catalogue/items", "/services/v1/requests"])
@pytest.mark.parametrize("cursor", [NESTED, base64.urlsafe_b64encode(b"[" * 700 + b"]" * 700).decode()])
async def test_nested_cursor_is_422(ready, auth, path, cursor):
    r = await ready.get(path, params={"cursor": cursor}, headers=auth(**OPS))
    _names(r, "cursor", "query")
