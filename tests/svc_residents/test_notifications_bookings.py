"""Bookings and activities told through the notification engine (issue 30, docs/adr/0017): a booking confirmed in
svc_matching reaches the resident's inbox in svc_residents through the `notice.` feed and the real relay, in plain
Chinese with the room's name and the local time; every booking rule has its words in Chinese and English."""
from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from common.clock import FrozenClock
from svc_residents.notifications.rules import RULES
from svc_residents.notifications.templates import TEMPLATES, render
from tests.conftest import start_service
from tests.svc_matching.conftest import GRID_XF, place_persons
from tests.svc_matching.test_bookings import book, local, make_resource
from tests.svc_residents.conftest import ROLES, START, P
from tests.svc_residents.test_callout_feeds import drain, relay


@pytest.fixture
async def matching(db_url, jwks):
    url = db_url.replace("test.db", "matching.db") if db_url.startswith("sqlite") else db_url + "_svc"
    async with AsyncExitStack() as stack:
        if url.startswith("postgresql"):
            from tests.conftest import POSTGRES_URL, _create_pg_database

            url, drop = await _create_pg_database(POSTGRES_URL)
            stack.push_async_callback(drop)
        c = await start_service(stack, "svc_matching", url, jwks, offer_sweeper_enabled=False)
        c.app.state.clock = FrozenClock(START)
        await place_persons(c, {P("P1"): GRID_XF})
        yield c


def test_every_booking_rule_has_its_template_in_both_languages():
    for kind in [k for k in RULES if k.startswith(("booking.", "signup."))]:
        for rule in RULES[kind]:
            zh = render(rule.template, {v: "x" for v in TEMPLATES[rule.template].variables})
            en = render(rule.template, {v: "x" for v in TEMPLATES[rule.template].variables}, "en")
            assert zh[0] and en[0] and zh != en, kind


async def test_a_confirmed_booking_reaches_the_residents_inbox(seeded, matching, auth):
    tok = auth(role="system", user="svc_matching", member="svc_matching")["Authorization"].split()[1]
    to_residents, _ = relay(matching, seeded, "notice.", "/residents/v1/notices", tok)
    staff = auth(role="community_staff", scopes=["community:110105001001"])
    res = await make_resource(matching, staff)
    resident = auth(**ROLES["resident1"])
    r = await book(matching, resident, res, local(1, 10, base=START))
    assert r.status_code == 201, r.text
    await drain(to_residents)
    inbox = (await seeded.get("/residents/v1/notifications", headers=resident)).json()["items"]
    assert [(m["template"], m["title"], m["subject"]) for m in inbox] == [
        ("booking.confirmed", "预约成功", r.json()["id"])]
    assert "幸福社区活动室" in inbox[0]["body"] and "11月24日 10:00" in inbox[0]["body"]
    assert inbox[0]["category"] == "booking"
