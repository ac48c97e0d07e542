"""Survey invitations through the notification channels (issue 29, docs/adr/0019 "Invitations"): inviting writes
`notice.survey.*` rows in the invitation's transaction, svc_metrics' relay delivers them to svc_residents, and each
invited resident's inbox says how to answer; no token ever travels in the outbox or lands in svc_residents'
message store; the one reminder reaches only those not known to be done and is claimed once."""
from __future__ import annotations

import json
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import inspect, select, text

from svc_metrics.base import OutboxEvent
from svc_metrics.surveys.models import Invitation
from svc_residents.notifications.rules import RULES
from svc_residents.notifications.templates import TEMPLATES, render
from svc_residents.persons.models import Person
from common.clock import FrozenClock
from tests.conftest import start_service
from tests.svc_metrics.conftest import C1, ev
from tests.svc_metrics.test_surveys import published, questionnaire, resident, token_of
from tests.svc_residents.conftest import START
from tests.svc_residents.test_callout_feeds import drain, relay


@pytest.fixture
async def residents(db_url, jwks, tmp_path):
    """svc_residents with the demo district, on the test's backend (a database of its own)."""
    from svc_residents.seed import seed_demo

    url = f"sqlite+aiosqlite:///{tmp_path}/residents.db"
    async with AsyncExitStack() as stack:
        if db_url.startswith("postgresql"):
            from tests.conftest import POSTGRES_URL, _create_pg_database

            url, drop = await _create_pg_database(POSTGRES_URL)
            stack.push_async_callback(drop)
        c = await start_service(stack, "svc_residents", url, jwks)
        c.app.state.clock = FrozenClock(START)
        await seed_demo(c.app.state.db, c.app.state.protection, clock=c.app.state.clock)
        yield c


@pytest.fixture
def staff(auth):
    return auth(role="community_staff", user="staff1", scopes=[f"community:{C1}"])


async def known_persons(client, residents, post) -> dict[str, str]:
    """svc_metrics learns 幸福's demo residents as from svc_residents' person.registered events; person → grid."""
    async with residents.app.state.db.session() as s:
        rows = (await s.execute(select(Person.id, Person.grid_code).where(Person.community_code == C1,
                                                                          Person.merged_into.is_(None)))).all()
    people = {pid: grid for pid, grid in rows if grid}
    await post([ev("person.registered", client.app.state.clock.now(), pid, grid=g, age_band="30+")
                for pid, g in people.items()])
    return people


def test_every_survey_rule_has_its_words_in_both_languages():
    for kind in [k for k in RULES if k.startswith("survey.")]:
        for rule in RULES[kind]:
            values = {v: "季度测评" for v in TEMPLATES[rule.template].variables}
            zh, en = render(rule.template, values), render(rule.template, values, "en")
            assert zh[0] and en[0] and zh != en and TEMPLATES[rule.template].category == "survey", kind
            assert "应用" in zh[1] and "app" in en[1], kind  # every message says where to answer


async def test_invitations_reach_the_inbox_without_any_token(client, residents, auth, post, staff):
    people = await known_persons(client, residents, post)
    residents.app.state.clock.set(client.app.state.clock.now())   # 12:00 in Shanghai, no quiet hours
    s = await published(client, staff)
    sid = s["id"]
    r = await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)
    assert r.status_code == 201 and r.json()["invited"] == len(people), r.text

    async with client.app.state.db.session() as db:
        rows = list((await db.execute(select(OutboxEvent).where(OutboxEvent.type.like("notice.%"))
                                      .order_by(OutboxEvent.id))).scalars())
        tokens = [t for t in (await db.execute(select(Invitation.token).where(Invitation.survey_id == sid)))
                  .scalars()]
    # one row per grid (and batch), together naming every invitee once, carrying no token
    assert {r.type for r in rows} == {"notice.survey.invited"}
    assert sorted(p for r in rows for p in r.data["person_ids"]) == sorted(people)
    assert len(rows) == len(set(people.values()))
    assert all(r.data["grid"] == people[r.data["person_ids"][0]] and r.data["subject"] == sid for r in rows)
    assert len(tokens) == len(people) and all(tokens)
    assert not any(t in json.dumps(r.data) for r in rows for t in tokens)

    tok = auth(role="system", user="svc_metrics", member="svc_metrics")["Authorization"].split()[1]
    to_residents, sender = relay(client, residents, "notice.", "/residents/v1/notices", tok)
    await drain(to_residents)
    await drain(to_residents)                          # delivered again: nothing stored twice
    await sender.aclose()
    pid = next(iter(sorted(people)))
    inbox = (await residents.get("/residents/v1/notifications", headers=resident(auth, pid))).json()["items"]
    assert [(m["template"], m["title"], m["category"], m["subject"]) for m in inbox] == [
        ("survey.invited", "问卷邀请", "survey", sid)]
    assert s["title"] in inbox[0]["body"] and "应用" in inbox[0]["body"] and "一体机" in inbox[0]["body"]

    # svc_residents' whole database holds none of the tokens: nothing there joins a person to a token
    async with residents.app.state.db.engine.connect() as conn:
        def dump(sync):
            insp = inspect(sync)
            return [json.dumps([list(map(str, row)) for row in sync.execute(text(f"SELECT * FROM {t}"))],
                               ensure_ascii=False) for t in insp.get_table_names()]
        tables = await conn.run_sync(dump)
    stored = "\n".join(tables)
    assert stored.count(sid) >= len(people)                            # the messages are there …
    assert not any(t in stored for t in tokens)                        # … and no token is


async def test_the_one_reminder_reaches_only_those_not_known_to_be_done(client, residents, auth, post, staff):
    people = sorted(await known_persons(client, residents, post))
    anon = await published(client, staff)
    named = await published(client, staff, anonymous=False)
    for s in (anon, named):
        assert (await client.post(f"/metrics/v1/surveys/{s['id']}/invitations", headers=staff)).status_code == 201
    took, answered = people[0], people[1]
    for s in (anon, named):
        await token_of(client, resident(auth, took), s["id"])   # took the token, did not answer
        t = await token_of(client, resident(auth, answered), s["id"])
        r = await client.post(f"/metrics/v1/surveys/{s['id']}/responses", headers=resident(auth, answered),
                              json={"token": t, "answers": {"overall": 4, "used": "no"}})
        assert r.status_code == 201, r.text
    assert (await client.post(f"/metrics/v1/surveys/{anon['id']}/reminders", headers=auth(
        role="grid_worker", user="grid1", scopes=[f"grid:{C1}001"]))).status_code == 403
    r = await client.post(f"/metrics/v1/surveys/{anon['id']}/reminders", headers=staff)
    # anonymous: who answered is unknown by design, so only those who never took their token are reminded
    assert r.status_code == 201 and r.json()["reminded"] == len(people) - 2, r.text
    r = await client.post(f"/metrics/v1/surveys/{named['id']}/reminders", headers=staff)
    assert r.status_code == 201 and r.json()["reminded"] == len(people) - 1, r.text   # named: token unspent
    r = await client.post(f"/metrics/v1/surveys/{named['id']}/reminders", headers=staff)
    assert r.status_code == 409 and r.json()["code"] == "survey.already_reminded"

    async with client.app.state.db.session() as db:
        rows = list((await db.execute(select(OutboxEvent).where(OutboxEvent.type == "notice.survey.reminder")))
                    .scalars())
    reminded = {r.data["subject"]: sorted(p for row in rows if row.data["subject"] == r.data["subject"]
                                          for p in row.data["person_ids"]) for r in rows}
    assert reminded[anon["id"]] == [p for p in people if p not in (took, answered)]
    assert reminded[named["id"]] == [p for p in people if p != answered]

    cur = (await client.get(f"/metrics/v1/surveys/{anon['id']}", headers=staff)).json()
    assert cur["reminded_at"] is not None
    await client.post(f"/metrics/v1/surveys/{anon['id']}/transitions", headers=staff,
                      json={"action": "close", "version": cur["version"]})
    draft = (await client.post("/metrics/v1/surveys", headers=staff, json={
        "title": "草稿", "scope": C1, "questionnaire": questionnaire()})).json()
    for sid in (anon["id"], draft["id"]):                # closed, or never published: nobody to remind
        r = await client.post(f"/metrics/v1/surveys/{sid}/reminders", headers=staff)
        assert r.status_code == 409 and r.json()["code"] == "survey.not_inviting", r.text
