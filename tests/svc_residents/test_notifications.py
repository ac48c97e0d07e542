"""The notification engine inside svc_residents: the delivery API, rules and templates, the inbox, settings,
staff sends and contacts (channels, quiet hours and faults: test_notifications_channels.py)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from svc_residents.notifications import rules
from svc_residents.notifications.models import Attempt, Delivery, Notification
from svc_residents.notifications.service import notify
from svc_residents.notifications.templates import TEMPLATES, render
from tests.svc_residents.conftest import GRID_A1, P, ROLES

REQ = "0193a7b2-0000-7000-8000-00000000ab12"


async def _notify(app, **kw):
    async with app.state.db.session() as s, s.begin():
        return await notify(s, now=app.state.clock.now(), **kw)


async def _count(app, model, **where) -> int:
    async with app.state.db.session() as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return (await s.execute(stmt)).scalar_one()


def test_every_template_renders_in_both_languages_and_every_rule_names_one():
    for key, t in TEMPLATES.items():
        values = {v: "X" for v in t.variables}
        for lang in ("zh", "en"):
            title, body = render(key, values, lang)
            assert title and body and "{" not in body, key
    for kind, rs in rules.RULES.items():
        for r in rs:
            assert r.template in TEMPLATES, kind
            assert TEMPLATES[r.template].variables <= set(rules.variables({})), r.template


async def test_notify_stores_once_per_event_and_recipient(app):
    kw = dict(recipient=f"person:{P('P1')}", template="request.accepted", event_key="e1",
              variables={"number": "AB12", "item": "老年助餐"})
    first = await _notify(app, **kw)
    again = await _notify(app, **kw)
    assert first.created and not again.created and again.notification.id == first.notification.id
    assert "AB12" in first.notification.body and first.notification.category == "request"
    assert await _count(app, Notification) == 1 and await _count(app, Delivery) == 1


async def test_template_variables_must_match(app):
    from common.errors import Problem

    for variables, field in (({"number": "1"}, "variables.item"),
                             ({"number": "1", "item": "x", "colour": "red"}, "variables.colour")):
        with pytest.raises(Problem) as exc:
            await _notify(app, recipient=f"person:{P('P1')}", template="request.accepted", event_key="e2",
                          variables=variables)
        assert exc.value.status == 422 and exc.value.errors[0]["field"] == field
    with pytest.raises(Problem) as exc:
        await _notify(app, recipient="person:nobody", template="request.accepted", event_key="e3",
                      variables={"number": "1", "item": "x"})
    assert exc.value.status == 422 and exc.value.errors[0]["field"] == "recipient"
    assert await _count(app, Notification) == 0


async def test_inbox_list_unread_and_read_for_resident_and_proxy(app, auth):
    c = app.client
    for i in range(3):
        await _notify(app, recipient=f"person:{P('P3')}", template="request.resolved", event_key=f"r{i}",
                      variables={"number": f"N{i}"})
    for who in ("resident3", "proxy1"):  # the person and the proxy acting for them read one inbox
        h = auth(**ROLES[who])
        r = await c.get("/residents/v1/notifications/unread_count", headers=h)
        assert r.json() == {"unread": 3 if who == "resident3" else 2}
        page = (await c.get("/residents/v1/notifications", params={"limit": 2}, headers=h)).json()
        assert [n["subject"] for n in page["items"]] == [None, None] and page["next_cursor"]
        assert page["items"][0]["body"].startswith("您的诉求（编号N2）已办结")
        r = await c.post(f"/residents/v1/notifications/{page['items'][0]['id']}/read", headers=h)
        assert r.status_code == 200 and r.json()["read_at"]
    r = await c.get("/residents/v1/notifications", headers=auth(**ROLES["resident1"]))
    assert r.json()["items"] == []  # another person's inbox
    mid = page["items"][1]["id"]
    r = await c.post(f"/residents/v1/notifications/{mid}/read", headers=auth(**ROLES["resident1"]))
    assert r.status_code == 404 and r.json()["code"] == "notification.not_found"
    r = await c.get("/residents/v1/notifications", headers=auth(**ROLES["portal"]))
    assert r.status_code == 403


async def test_rules_tell_the_right_people(app, auth):
    c = app.client
    r = await c.put("/residents/v1/staff_contacts/staff1", headers=auth(**ROLES["staff1"]),
                    json={"role": "community_staff", "scope": "community:110105001001", "phone": "13900000001"})
    assert r.status_code == 201 and r.json()["phone_masked"] == "139****0001"
    base = {"request_id": REQ, "person_id": P("P1"), "community": "110105001001", "grid": GRID_A1,
            "item_code": "YL-ZC-001", "assignee": {"kind": "grid_worker", "id": "grid1", "name": "陈磊"}}
    sys_member = auth(role="system", user="svc_services", member="svc_services")
    for n, event in enumerate(("request.dispatched", "request.overdue", "request.rejected")):
        r = await c.put(f"/residents/v1/notices/ev{n}", headers=sys_member, json={"event": event, **base,
                                                                                "note": "不在服务范围"})
        assert r.status_code == 200, r.text
    again = await c.put("/residents/v1/notices/ev0", headers=sys_member, json={"event": "request.dispatched", **base})
    assert again.json()["stored"] == 0
    async with app.state.db.session() as s:
        got = sorted((n.recipient, n.template, n.urgency) for n in (await s.execute(select(Notification))).scalars())
    assert got == sorted([(f"person:{P('P1')}", "request.dispatched", "normal"),
                          ("user:grid1", "request.assigned", "normal"),
                          ("user:staff1", "request.overdue", "urgent"), ("user:grid1", "request.overdue", "urgent"),
                          (f"person:{P('P1')}", "request.rejected", "normal")])
    r = await c.get("/residents/v1/notifications", headers=auth(**ROLES["grid1"]))
    assert {n["title"] for n in r.json()["items"]} == {"新派单", "诉求超时"}
    r = await c.put("/residents/v1/notices/ev9", headers=auth(**ROLES["staff1"]), json={"event": "request.claimed"})
    assert r.status_code == 403
    # bad input from a feed: nobody to tell is a skip, an unknown kind tells nobody, a wrong shape names the field
    for key, body, stored in (("ev10", {"event": "request.accepted", **base, "person_id": "nobody"}, 0),
                              ("ev11", {"event": "request.teleported", **base}, 0),
                              ("ev12", {"event": "request.claimed", **base, "newer_field": 1}, 1)):
        r = await c.put(f"/residents/v1/notices/{key}", headers=sys_member, json=body)
        assert r.status_code == 200 and r.json()["stored"] == stored, r.text
    r = await c.put("/residents/v1/notices/ev13", headers=sys_member, json={**base, "event": "request.claimed",
                                                                             "assignee": "grid1"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("assignee")


async def test_settings_language_and_opt_out(app, auth):
    c, h = app.client, auth(**ROLES["resident1"])
    r = await c.put("/residents/v1/notifications/settings", headers=h, json={"language": "en", "opted_out": ["request"]})
    assert r.status_code == 200 and r.json()["version"] == 1
    out = await _notify(app, recipient=f"person:{P('P1')}", template="request.accepted", event_key="o1",
                        variables={"number": "X1", "item": "Meals"})
    assert out.notification.skipped == "opted_out" and out.notification.body.startswith("Your request X1")
    assert out.deliveries == []
    safety = await _notify(app, recipient=f"person:{P('P1')}", template="safety.alert", event_key="o2",
                           variables={"text": "Gas leak: leave the building"}, urgency="safety")
    assert safety.notification.skipped is None and len(safety.deliveries) == 1
    r = await c.put("/residents/v1/notifications/settings", headers=h, json={"opted_out": ["spam"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("opted_out")


async def test_staff_send_checks_scope_template_and_replays(app, auth):
    c = app.client
    body = {"recipient": f"person:{P('P1')}", "template": "verification.needs_resident", "variables": {"field": "户籍"}}
    h = {**auth(**ROLES["staff1"]), "Idempotency-Key": "k-1"}
    r = await c.post("/residents/v1/notifications", headers=h, json=body)
    assert r.status_code == 201 and "户籍" in r.json()["body"]
    assert (await c.post("/residents/v1/notifications", headers=h, json=body)).json()["id"] == r.json()["id"]
    bad = await c.post("/residents/v1/notifications", headers={**h, "Idempotency-Key": "k-2"},
                       json={**body, "variables": {"field": "x", "oops": "y"}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "variables.oops"
    other = await c.post("/residents/v1/notifications", headers={**auth(**ROLES["staff2"]), "Idempotency-Key": "k"},
                         json=body)
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "recipient"
    loud = await c.post("/residents/v1/notifications", headers={**h, "Idempotency-Key": "k-3"},
                        json={**body, "urgency": "safety"})
    assert loud.status_code == 422
    r = await c.post("/residents/v1/notifications", headers={**auth(**ROLES["resident1"]), "Idempotency-Key": "k"},
                     json=body)
    assert r.status_code == 403
    assert await _count(app, Notification) == 1


async def test_person_without_phone_gets_inbox_and_a_recorded_skip(app, auth):
    async with app.state.db.session() as s, s.begin():
        from svc_residents.persons.models import Person

        p = await s.get(Person, P("P1"))
        p.phone_enc = p.phone_bidx = p.phone_masked = p.preferred_channel = None  # SMS only, and no phone
    out = await _notify(app, recipient=f"person:{P('P1')}", template="request.claimed", event_key="np",
                        variables={"number": "1", "assignee": "陈磊"})
    assert out.notification.skipped == "no_channel" and out.deliveries[0].state == "skipped"
    assert await _count(app, Attempt, outcome="skipped", detail="no_phone") == 1
    r = await app.client.get(f"/residents/v1/notifications/{out.notification.id}/deliveries",
                             headers=auth(**ROLES["staff1"]))
    assert r.status_code == 200 and r.json()[0]["attempts"][0]["detail"] == "no_phone"
    r = await app.client.get(f"/residents/v1/notifications/{out.notification.id}/deliveries",
                             headers=auth(**ROLES["staff2"]))
    assert r.status_code == 404


async def test_daily_cap_holds_back_outside_channels_but_not_emergencies(app):
    from svc_residents.notifications import service

    for i in range(service.DAILY_CAP):
        await _notify(app, recipient=f"person:{P('P1')}", template="request.reopened", event_key=f"c{i}",
                      variables={"number": str(i)})
    capped = await _notify(app, recipient=f"person:{P('P1')}", template="request.reopened", event_key="over",
                           variables={"number": "x"})
    assert capped.notification.skipped == "cap"
    urgent = await _notify(app, recipient=f"person:{P('P1')}", template="safety.alert", event_key="em",
                           variables={"text": "x"}, urgency="emergency")
    assert urgent.notification.skipped is None
    app.state.clock.advance(days=1, seconds=1)
    later = await _notify(app, recipient=f"person:{P('P1')}", template="request.reopened", event_key="next-day",
                          variables={"number": "y"})
    assert later.notification.skipped is None


def _events(text: str) -> list[str]:
    import json

    return [json.loads(line[6:])["template"] for line in text.splitlines() if line.startswith("data: ")]


async def test_stream_sends_what_came_after_last_event_id_and_wakes_on_commit(app, auth):
    import asyncio

    c, h = app.client, {**auth(**ROLES["resident3"]), "Accept": "text/event-stream"}
    first = await _notify(app, recipient=f"person:{P('P3')}", template="request.accepted", event_key="s1",
                          variables={"number": "S1", "item": "助餐"})
    r = await c.get("/residents/v1/notifications/stream", params={"max_events": 1},
                    headers={**h, "Last-Event-ID": "0"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert _events(r.text) == ["request.accepted"] and f"id: {first.notification.id}" in r.text
    # connected with nothing new: the next committed message wakes it (the proxy's connection reads one inbox)
    hub = app.state.notification_hub
    task = asyncio.create_task(c.get("/residents/v1/notifications/stream", params={"max_events": 1},
                                     headers={**auth(**ROLES["proxy1"]), "Accept": "text/event-stream"}))
    while f"person:{P('P3')}" not in hub.local:
        await asyncio.sleep(0)
    await _notify(app, recipient=f"person:{P('P3')}", template="request.claimed", event_key="s2",
                  variables={"number": "S1", "assignee": "陈磊"})
    r = await asyncio.wait_for(task, 5)
    assert _events(r.text) == ["request.claimed"] and r.text.startswith("retry: 1000\n")
    assert hub.connections() == 0  # the ended connection let go of its subscription
    r = await c.get("/residents/v1/notifications/stream", headers=auth(**ROLES["resident3"]))
    assert r.status_code == 406 and r.json()["code"] == "notification.stream_accept"
    r = await c.get("/residents/v1/notifications/stream", headers={**auth(**ROLES["portal"]),
                                                                   "Accept": "text/event-stream"})
    assert r.status_code == 403


async def test_a_verification_conflict_asks_the_resident(app):
    from types import SimpleNamespace

    from svc_residents.persons.models import Person, PersonTag
    from svc_residents.verification.departments import Findings
    from svc_residents.verification.service import _apply

    now = app.state.clock.now()
    async with app.state.db.session() as s, s.begin():
        s.add(PersonTag(id="t-dibao", person_id=P("P1"), code="dibao", source="self", verified=False,
                        recorded_by="resident1", created_at=now, updated_at=now))
    async with app.state.db.session() as s, s.begin():  # 民政 says P1 holds no 低保: a conflict, kept as it was
        out = await _apply(s, await s.get(Person, P("P1")), SimpleNamespace(department="minzheng", id="v-1"),
                           Findings(tags={"dibao": False}), "verification/minzheng", now)
    assert out["conflicts"] == ["dibao"]
    async with app.state.db.session() as s:
        got = (await s.execute(select(Notification).where(Notification.recipient == f"person:{P('P1')}"))).scalars().all()
    assert [(n.template, n.category) for n in got] == [("verification.needs_resident", "verification")]
    assert "低保" in got[0].body and "本人确认" in got[0].body
