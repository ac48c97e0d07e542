"""The shared kit: pagination steps, dependencies, domain problems, get-or-404, masking, distance, token cache."""
from __future__ import annotations

from datetime import date

import pytest
from fastapi import Depends, FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from common.auth import TokenCache
from common.clock import FrozenClock, age_on, years_before
from common.db import Database
from common.deps import AppClock, DbSession, state
from common.errors import NotFound, VersionConflict, check_if_match, check_version, install_error_handlers
from common.geo import distance_m, distance_matrix_m
from common.lookup import get_or_404
from common.masking import MASK, REMOVE, apply_actions, field_actions, grant_view
from common.openapi import resolve_ref
from common.pagination import PageParams


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "kit_rows"
    id: Mapped[str] = mapped_column(String(8), primary_key=True)


@pytest.fixture
async def app(tmp_path):
    from datetime import datetime, timezone

    db = Database(f"sqlite+aiosqlite:///{tmp_path}/kit.db")
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    async with db.session() as s, s.begin():
        s.add_all([Row(id=f"r{i}") for i in range(5)])
    app = FastAPI()
    app.state.db, app.state.clock = db, FrozenClock(datetime(2026, 3, 1, tzinfo=timezone.utc))
    app.state.thing = "kept"
    install_error_handlers(app)

    @app.get("/rows")
    async def rows(session: DbSession, page: PageParams = Depends(), desc: bool = False):
        found = (await session.execute(page.keyset(select(Row), Row.id, descending=desc))).scalars().all()
        return page.page(found, key=lambda r: r.id, item=lambda r: {"id": r.id})

    @app.get("/rows/{rid}")
    async def one(rid: str, session: DbSession, clock: AppClock, thing=state("thing")):
        row = await get_or_404(session, Row, rid, NotFound("row.not_found", ("行不存在", "No such row")),
                               visible=lambda r: r.id != "r4")
        return {"id": row.id, "today": clock.today().isoformat(), "thing": thing}

    yield app
    await db.dispose()


async def test_every_list_pages_with_the_same_two_steps(app):
    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as c:
        first = (await c.get("/rows", params={"limit": 2})).json()
        assert [i["id"] for i in first["items"]] == ["r0", "r1"] and first["next_cursor"]
        rest = (await c.get("/rows", params={"limit": 3, "cursor": first["next_cursor"]})).json()
        assert [i["id"] for i in rest["items"]] == ["r2", "r3", "r4"] and rest["next_cursor"] is None
        newest = (await c.get("/rows", params={"limit": 2, "desc": True})).json()
        after = (await c.get("/rows", params={"limit": 2, "desc": True, "cursor": newest["next_cursor"]})).json()
        assert [i["id"] for i in newest["items"] + after["items"]] == ["r4", "r3", "r2", "r1"]


async def test_get_or_404_answers_an_unseen_row_as_an_unknown_one(app):
    async with AsyncClient(transport=ASGITransport(app), base_url="http://t") as c:
        ok = (await c.get("/rows/r1")).json()
        assert ok == {"id": "r1", "today": "2026-03-01", "thing": "kept"}
        for rid in ("r4", "nope"):
            r = await c.get(f"/rows/{rid}")
            assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "row.not_found" and r.json()["detail"] == "行不存在"


def test_version_checks():
    check_version(3, 3)
    check_version(None, 3)
    with pytest.raises(VersionConflict) as e:
        check_version(2, 3, "person.version_conflict")
    assert e.value.status == 409 and e.value.extra == {"current_version": 3}
    check_if_match('W/"3"', 3)
    with pytest.raises(VersionConflict) as e:
        check_if_match('"2"', 3)
    assert e.value.status == 412 and e.value.code == "precondition_failed"


def test_masking_by_grant_removes_masks_and_passes():
    fields = [{"path": "id", "grade": "general"}, {"path": "name", "grade": "important", "personal": True,
                                                    "mask": "name"},
              {"path": "tags", "grade": "core", "personal": True, "sensitive": True},
              {"path": "budget", "grade": "core"}, {"path": "meta.phone", "grade": "important", "personal": True,
                                                    "mask": "phone"}]
    acts = {".".join(p): (a, k) for p, a, k in field_actions(fields, frozenset({"id"}))}
    assert acts == {"name": (MASK, "name"), "tags": (REMOVE, None), "budget": (REMOVE, None),
                    "meta.phone": (MASK, "phone")}
    assert field_actions(fields, None) == ()
    doc = {"items": [{"id": "1", "name": "张三", "tags": ["x"], "budget": 3, "meta": {"phone": "13800000001"},
                      "other": 1}]}
    assert apply_actions(doc, field_actions(fields, frozenset({"id"})))["items"][0] == {
        "id": "1", "name": "张*", "meta": {"phone": "138****0001"}, "other": 1}
    # a service's own view: only what is declared
    assert grant_view({"id": "1", "name": "张三", "undeclared": 1}, fields, frozenset({"name"})) == {
        "id": "1", "name": "张三"}


def test_one_distance_and_one_age():
    import numpy as np

    d = distance_m(39.9, 116.4, 39.91, 116.41)
    assert 1390 < d < 1420
    m = distance_matrix_m(np.array([39.9]), np.array([116.4]), np.array([39.91, 39.9]), np.array([116.41, 116.4]))
    assert abs(m[0, 0] - d) < 1e-6 and m[0, 1] == 0
    assert age_on(date(2000, 2, 29), date(2026, 2, 28)) == 25 and age_on(date(2000, 2, 29), date(2026, 3, 1)) == 26
    assert years_before(date(2028, 2, 29), 10) == date(2018, 2, 28)
    assert age_on(years_before(date(2026, 5, 1), 60), date(2026, 5, 1)) == 60


def test_the_token_cache_keeps_until_expiry_and_bounds_its_size():
    t = [100.0]
    c = TokenCache(max_entries=2, now=lambda: t[0])
    c.put("a", "A", 110)
    c.put("b", "B", 200)
    c.put("none", "N", None)
    assert c.get("a") == "A" and c.get("none") is None
    c.put("c", "C", 200)  # "b" was the least recently used
    assert c.get("b") is None and c.get("c") == "C"
    t[0] = 110
    assert c.get("a") is None and len(c) == 1


def test_one_ref_resolver():
    comps = {"A": {"$ref": "#/components/schemas/B"}, "B": {"type": "object"}, "L": {"$ref": "#/x/L"}}
    assert resolve_ref({"$ref": "#/c/A"}, comps) == {"type": "object"}
    assert resolve_ref({"$ref": "#/c/L"}, comps) == {}
    opt = {"anyOf": [{"$ref": "#/c/B"}, {"type": "null"}]}
    assert resolve_ref(opt, comps) == opt and resolve_ref(opt, comps, unwrap_single=True) == {"type": "object"}
