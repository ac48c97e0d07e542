"""The month rollup: KPI queries read it for whole months and give exactly what the observations give; the
incremental rollup equals the rebuilt one, row for row; `onenet metrics rebuild` recomputes it."""
from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import select

from svc_metrics.kpis import rollup
from svc_metrics.kpis.models import Rollup, RollupTopPlace
from tests.svc_metrics.conftest import C1, G1, G2, G3, T0, ev, request_flow

H = timedelta(hours=1)


def events_over_months(seed: int = 11) -> list[dict]:
    """Requests across February–May with channels, special groups, due times (open overdue stock spanning
    month ends), reopens and cancellations; needs, people, resources, members and catalogue items."""
    rnd = random.Random(seed)
    out: list[dict] = []
    for i in range(60):
        at = T0 - timedelta(days=20) + timedelta(days=rnd.randint(0, 90), hours=rnd.randint(0, 23))
        steps = {"accepted": rnd.randint(1, 30) * H}
        fate = rnd.random()
        if fate < 0.6:
            steps["resolved"] = steps["accepted"] + rnd.randint(1, 200) * H
            steps["rated"] = steps["resolved"] + H
            if rnd.random() < 0.3:
                steps["reopened"] = steps["rated"] + 2 * H
        elif fate < 0.7:
            steps["cancelled"] = 3 * H
        groups = rnd.choice([[], [], ["elderly"], ["elderly", "disabled"], ["dibao"]])
        out += request_flow(f"r{i}", at, grid=rnd.choice([G1, G2, G3]), groups=groups,
                            category=rnd.choice(["grid_event", "government", "dispute", "emergency"]),
                            channel=rnd.choice(["app", "counter", "kiosk"]), due=rnd.randint(10, 400) * H,
                            rating=rnd.randint(1, 5), steps=steps)
    for i in range(12):
        out.append(ev("need.created", T0 + timedelta(days=3 * i), f"n{i}", grid=G1, category="meal"))
        if i % 3:
            out.append(ev("offer.accepted", T0 + timedelta(days=3 * i, hours=5), f"o{i}", grid=G1, need_id=f"n{i}"))
    out += [ev("person.registered", T0 + timedelta(days=7 * i), f"p{i}", grid=G2, age=60 + i) for i in range(10)]
    out += [ev("volunteer.registered", T0 + timedelta(days=9 * i), f"v{i}", grid=G2) for i in range(4)]
    out += [ev("resource.listed", T0 + timedelta(days=i), f"res{i}", grid=G1, category="meal") for i in range(3)]
    out.append(ev("resource.withdrawn", T0 + timedelta(days=40), "res1", grid=G1))
    out += [ev("member.joined", T0 - timedelta(days=40), f"d{i}", grid=None, kind="department")
            for i in range(3)]
    out.append(ev("member.revoked", T0 + timedelta(days=35), "d1", grid=None))
    out += [ev("catalogue.item_created", T0, f"i{i}", grid=None, code=f"i{i}", online=i % 2 == 0)
            for i in range(4)]
    out += booking_activity_notice_events(rnd)
    rnd.shuffle(out)
    return out


def booking_activity_notice_events(rnd: random.Random) -> list[dict]:
    """Issue 30's bookings (slots across month ends, reschedules, no-shows, conflicts), rooms listed, activities
    (some cancelled), communities, and issue 28's notices of each kind."""
    out = [ev("bookable_resource.listed", T0 - timedelta(days=10 * i), f"room{i}", grid=g, kind=kind, capacity=2,
              open_minutes_per_week=600 + 60 * i)
           for i, (g, kind) in enumerate([(G1, "activity_room"), (G2, "meeting_room"), (G3, "canteen_seat")])]
    out += [ev("place.created", T0 - timedelta(days=60), c, grid=None, community=c, level="community", name=c)
            for c in (C1, G3[:12])]
    for i in range(30):
        at = T0 - timedelta(days=15) + timedelta(days=rnd.randint(0, 80), hours=rnd.randint(0, 23))
        slot = at + timedelta(days=rnd.randint(0, 20), hours=rnd.randint(0, 12))
        g, kind = rnd.choice([(G1, "activity_room"), (G2, "meeting_room"), (G3, "canteen_seat")])
        data = {"resource_id": f"res-{kind}", "kind": kind, "minutes": 60 * rnd.randint(1, 3)}
        out.append(ev("booking.requested", at, f"b{i}", grid=g, starts_at=slot.isoformat(), **data))
        if rnd.random() < 0.3:
            slot += timedelta(days=rnd.randint(1, 10))
            out.append(ev("booking.rescheduled", at + H, f"b{i}", grid=g, starts_at=slot.isoformat(), **data))
        fate = rnd.choice(["checked_in", "completed", "no_show", "cancelled", None])
        if fate:
            out.append(ev(f"booking.{fate}", slot, f"b{i}", grid=g, starts_at=slot.isoformat(), **data))
        if rnd.random() < 0.4:
            out.append(ev("booking.conflicted", at, f"res-{kind}", grid=g, resource_id=f"res-{kind}", kind=kind))
    for i in range(20):
        starts = T0 - timedelta(days=20) + timedelta(days=rnd.randint(0, 90), hours=rnd.randint(0, 23))
        g = rnd.choice([G1, G2, G3])
        out.append(ev("activity.published", starts - timedelta(days=7), f"a{i}", grid=g, activity_id=f"a{i}",
                      category=rnd.choice(["culture", "health"]), starts_at=starts.isoformat()))
        if rnd.random() < 0.2:
            out.append(ev("activity.cancelled", starts - timedelta(days=1), f"a{i}", grid=g, activity_id=f"a{i}",
                          category="culture"))
    kinds = ["deliberation_result", "policy", "fund", "service_list", "staffing"]
    out += [ev("public_notice.published", T0 + timedelta(days=rnd.randint(-20, 70)), f"pn{i}", grid=None,
               community=rnd.choice([C1, G3[:12]]), kind=rnd.choice(kinds)) for i in range(15)]
    return out


QUERIES = [{"period": p, "scope": s, **f}
           for p in ("2026-03", "2026-Q1", "2026-Q2", "2026-04", "2026-W11", "2026-03-16")
           for s in ("all", C1[:6], C1[:9], C1, G2)
           for f in ({}, {"channel": "app"}, {"group": "elderly"}, {"group": "*"}, {"category": "grid_event"},
                     {"channel": "counter", "group": "elderly"}, {"channel": "app", "category": "dispute"},
                     {"group": "*", "category": "grid_event"}, {"category": "activity_room"})]


async def tables(client, headers, queries: list[dict] = QUERIES) -> list[dict]:
    out = []
    for q in queries:
        r = await client.get("/metrics/v1/kpis", params=q, headers=headers)
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


async def rollup_rows(db) -> set[tuple]:
    async with db.session() as session:
        rows = (await session.execute(select(Rollup))).scalars().all()
        return {(r.kpi, r.mode, r.dim, r.dimval, r.bucket, r.place, r.category, r.num, r.den, r.n, r.vsum, r.vn)
                for r in rows if any((r.num, r.den, r.n, r.vsum, r.vn))}


async def test_rollup_answers_exactly_what_the_observations_answer(client, ops, post, monkeypatch):
    events = events_over_months()
    for i in range(0, len(events), 23):   # many batches, in shuffled (late, out-of-order) order
        await post(events[i:i + 23])
    with_rollup = await tables(client, ops)
    assert any(i["value"] is not None for t in with_rollup for i in t["items"])
    monkeypatch.setattr(rollup, "dim_for", lambda *filters: None)   # every query from the observations
    assert await tables(client, ops) == with_rollup


async def test_incremental_rollup_equals_the_rebuilt_one_row_for_row(client, ops, post):
    events = events_over_months(seed=5)
    for i in range(0, len(events), 9):
        await post(events[i:i + 9])
    incremental, before = await rollup_rows(client.app.state.db), await tables(client, ops)
    assert incremental
    r = await client.post("/metrics/v1/rebuild", headers=ops)
    assert r.status_code == 200
    assert await rollup_rows(client.app.state.db) == incremental
    assert await tables(client, ops) == before


async def test_rollup_keeps_the_district_and_street_levels(client, post):
    """A grid's rows are added up under its street and its district (the platform is their sum); communities
    and grids are answered from the observations."""
    await post(request_flow("lv1", T0, grid=G1, steps={"resolved": 5 * H}))
    async with client.app.state.db.session() as session:
        rows = (await session.execute(select(Rollup).where(Rollup.kpi == "resolution", Rollup.dim == ""))).scalars()
        places = {r.place: (r.num, r.den, r.n) for r in rows}
    assert set(places) == {"*" + G1[:6], "*" + G1[:9]}
    assert set(places.values()) == {(1.0, 1.0, 1)}


async def test_channel_and_group_slices_keep_categories_only_for_inputs_read_per_category(client, ops, post):
    # Pinned on purpose: when the catalogue changes which inputs are read per category, the channel and group
    # rows of existing databases must be recomputed (a migration like b1d3f5a7c9e2, or `onenet metrics rebuild`).
    # Issue 30's room inputs (per kind of resource) carry no channel or group, so they have no slices to recompute.
    assert rollup.category_inputs() == {"closure_time", "resolution", "booking_attempt", "room_used"}, \
        "see the comment above"
    await post(request_flow("sl1", T0, grid=G1, category="dispute", channel="kiosk", groups=["elderly"],
                            steps={"accepted": H, "resolved": 5 * H}))
    async with client.app.state.db.session() as session:
        rows = (await session.execute(select(Rollup.kpi, Rollup.dim, Rollup.category)
                                      .where(Rollup.dim.in_(["", "channel", "group"])))).all()
    kept = {(k, d) for k, d, c in rows if c == "dispute"}
    assert ("resolution", "channel") in kept and ("resolution", "group") in kept
    assert {(k, d) for k, d in kept if d} <= {(k, d) for k in rollup.category_inputs() for d in ("channel", "group")}
    assert any(d == "channel" and c == "" for k, d, c in rows)
    r = await client.get("/metrics/v1/kpis/dispute_resolution", params={"period": "2026-03", "channel": "kiosk",
                                                                         "scope": C1[:6]}, headers=ops)
    assert r.status_code == 200, r.text


async def test_the_platform_adds_up_its_districts_and_the_facts_with_no_district(client, ops, post, monkeypatch):
    other = "110108002003001"   # a grid in another district
    events = events_over_months(seed=13)
    events += [e for i in range(8) for e in request_flow(f"far{i}", T0 + timedelta(days=4 * i), grid=other,
                                                         steps={"accepted": H, "resolved": (10 + i) * H,
                                                                "rated": (11 + i) * H}, rating=1 + i % 5)]
    for i in range(0, len(events), 31):
        await post(events[i:i + 31])
    async with client.app.state.db.session() as session:
        tops = set((await session.execute(select(RollupTopPlace.place))).scalars())
        placed_at_star = (await session.execute(select(Rollup).where(Rollup.place == "*",
                                                                     Rollup.kpi == "resolution"))).first()
    assert tops == {"*", "*110105", "*110108"} and placed_at_star is None
    platform = [q for q in QUERIES if q["scope"] == "all"]
    with_rollup = await tables(client, ops, platform)
    assert any(i["value"] is not None for t in with_rollup for i in t["items"])
    monkeypatch.setattr(rollup, "dim_for", lambda *filters: None)   # every query from the observations
    assert await tables(client, ops, platform) == with_rollup


@pytest.mark.parametrize("back_to", ["d5e8b2c4f1a7", "e7a4c2b9d1f0", "a9c3e5f7b2d4"])
async def test_migrations_of_the_rollup_keep_the_numbers(db_url, jwks, auth, back_to):
    """Downgrading to an earlier rollup layout (per place; with the platform's rows; slices per category) and
    upgrading again gives the same rollup as ingesting afresh."""
    import asyncio
    from contextlib import AsyncExitStack

    from alembic import command

    from common import migrations
    from common.db import Database
    from tests.conftest import start_service

    url = db_url
    events = events_over_months(seed=3)
    headers = auth(role="system", user="svc_services", member="svc_services")
    async with AsyncExitStack() as stack:
        c = await start_service(stack, "svc_metrics", url, jwks)
        for i in range(0, len(events), 50):
            r = await c.post("/metrics/v1/events", json={"events": events[i:i + 50]}, headers=headers)
            assert r.status_code == 200, r.text
        fresh = await rollup_rows(c.app.state.db)
        await c.app.state.db.dispose()
    cfg = migrations.alembic_config("svc_metrics", url)
    await asyncio.to_thread(command.downgrade, cfg, back_to)
    await asyncio.to_thread(command.upgrade, cfg, "head")
    db = Database(url)
    try:
        assert await rollup_rows(db) == fresh
    finally:
        await db.dispose()
    assert fresh and all(r[5].startswith("*") for r in fresh)


@pytest.mark.parametrize("month,bucket", [("2026-03-01T00:00:00+08:00", 202603), ("2026-02-28T23:59:59+08:00", 202602),
                                          ("2026-02-28T16:00:00+00:00", 202603)])
def test_month_buckets_follow_shanghai_days(month, bucket):
    from datetime import datetime

    assert rollup.bucket_of(datetime.fromisoformat(month)) == bucket


async def test_a_ratings_bin_is_read_counted_per_value_and_gives_the_exact_median(client, ops, post, monkeypatch):
    """A bin of 1–5 ratings holds many equal values: it is read as (value, count) and gives exactly what the
    observations give, with no fall-back to reading every value (which `queries.values_of` would be)."""
    from svc_metrics.kpis import queries

    events = events_over_months(seed=17)
    for i in range(0, len(events), 40):
        await post(events[i:i + 40])
    values = queries.values_of

    async def no_fallback(*args, **kwargs):
        raise AssertionError("every value was read: a bin read disagreed with the histogram")

    figures = {}
    for scope in ("all", C1[:6]):
        params = {"period": "2026-03", "scope": scope}
        monkeypatch.setattr(queries, "values_of", no_fallback)
        r = await client.get("/metrics/v1/kpis/satisfaction_score", params=params, headers=ops)
        assert r.status_code == 200, r.text
        figures[scope] = {k: r.json()[k] for k in ("count", "mean", "median", "p90")}
        assert figures[scope]["count"] > 5 and figures[scope]["median"] is not None
        monkeypatch.setattr(queries, "values_of", values)
        monkeypatch.setattr(rollup, "dim_for", lambda *filters: None)   # every value from the observations
        r = await client.get("/metrics/v1/kpis/satisfaction_score", params=params, headers=ops)
        assert {k: r.json()[k] for k in ("count", "mean", "median", "p90")} == figures[scope]
        monkeypatch.undo()
