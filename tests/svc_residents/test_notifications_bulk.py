"""notify_many (a batch: broadcasts, an event's audience) decides exactly as notify() one message at a time: the
same messages, words, channels, fallbacks, quiet-hour delays, caps, opt-outs, no-phone skips and idempotent
answers, on a mixed set of recipients (opted out, no phone, voice for accessibility, an elderly person living alone,
app users, English, staff with and without a contact, one near the daily cap, one told before). Both runs happen
in a transaction that is rolled back, on one database, so each starts from the same rows."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from common.ids import new_id
from svc_residents.notifications import service
from svc_residents.notifications.models import Attempt, Delivery, Notification, RecipientSettings, StaffContact
from svc_residents.notifications.service import Message, notify, notify_many
from svc_residents.persons.models import Person, PersonTag
from tests.svc_residents.conftest import START


@pytest.fixture
async def app(app):
    """The notification rig (conftest.py) with the mixed recipients."""
    await _mixed(app)
    return app


async def _mixed(app) -> None:
    """Give the demo's persons every kind of contact the rules tell apart."""
    async with app.state.db.session() as s, s.begin():
        persons = list((await s.execute(select(Person).where(Person.merged_into.is_(None))
                                        .order_by(Person.id))).scalars())
        assert len(persons) >= 8
        plain, no_phone, voice, alone, app_user, english, opted, capped = persons[:8]
        no_phone.phone_enc = None
        for p in persons[:8]:  # from a known start: SMS by default, no needs, no tags
            p.preferred_channel, p.accessibility_needs = None, []
        await s.execute(delete(PersonTag).where(PersonTag.person_id.in_([p.id for p in persons[:8]])))
        s.add(PersonTag(id=new_id(), person_id=alone.id, code="living_alone", source="staff", recorded_by="t",
                        created_at=START, updated_at=START))
        voice.accessibility_needs = ["voice"]
        app_user.preferred_channel = "app"
        s.add_all([RecipientSettings(recipient=f"person:{english.id}", language="en", opted_out=[], updated_at=START,
                                     updated_by="t"),
                   RecipientSettings(recipient=f"person:{opted.id}", language="zh", opted_out=["broadcast", "request"],
                                     updated_at=START, updated_by="t"),
                   StaffContact(id=new_id(), user_id="staff1", role="community_staff", scope="community:110105001001",
                                phone_enc=app.state.protection.cipher.encrypt(
                                    "13900000001", aad="svc_residents:staff_contacts:staff1:phone"),
                                phone_masked="139****0001", preferred_channel="sms", active=True, created_at=START,
                                updated_at=START)])
    async with app.state.db.session() as s, s.begin():  # one near the cap, one told before
        for i in range(service.DAILY_CAP - 2):  # the batch's b1 and cap-1 fill it, cap-2 is over
            await notify(s, recipient=f"person:{capped.id}", template="request.reopened", event_key=f"before{i}",
                         variables={"number": str(i)}, now=START - timedelta(hours=1))
        await notify(s, recipient=f"person:{plain.id}", template="notice.general", event_key="told-before",
                     variables={"title": "旧", "text": "旧"}, now=START - timedelta(hours=1))
    app.state.mixed = [p.id for p in persons[:8]]


def _messages(app) -> list[Message]:
    people = [f"person:{p}" for p in app.state.mixed]
    words = {"title": "停水通知", "text": "明日停水"}
    out = [Message(r, "notice.general", words, "b1", subject="b1") for r in people]
    out += [Message("user:staff1", "notice.general", words, "b1"), Message("user:grid1", "notice.general", words, "b1"),
            Message(people[7], "request.reopened", {"number": "A"}, "cap-1"),   # the cap's last one …
            Message(people[7], "request.reopened", {"number": "B"}, "cap-2"),   # … and one over it
            Message(people[0], "notice.general", {"title": "旧", "text": "旧"}, "told-before"),  # handled before
            Message(people[6], "safety.alert", {"text": "燃气泄漏"}, "s1", urgency="safety"),  # past the opt-out
            Message("user:staff1", "safety.alert", {"text": "紧急"}, "e1", urgency="emergency",
                    channels=["voice", "sms", "push"], parallel=True)]
    return out


async def _outcome(session, ids: list[str | None]) -> list[tuple]:
    """What was stored for each message, without ids: the message, its deliveries, its attempts."""
    out = []
    for nid in ids:
        n = await session.get(Notification, nid, populate_existing=True)
        ds = (await session.execute(select(Delivery).where(Delivery.notification_id == nid)
                                    .order_by(Delivery.id))).scalars().all()
        ats = (await session.execute(select(Attempt).where(Attempt.notification_id == nid)
                                     .order_by(Attempt.channel))).scalars().all()
        out.append((n.recipient, n.event_key, n.template, n.language, n.title, n.body, n.urgency, n.skipped,
                    n.community_code, n.grid_code, n.created_at,
                    [(tuple(d.channels), d.state, d.next_attempt_at, d.last_error) for d in ds],
                    [(a.channel, a.outcome, a.detail) for a in ats]))
    return out


async def _both(app, now):
    messages = _messages(app)
    async with app.state.db.session() as s:
        async with s.begin():
            singles = [await notify(s, now=now, recipient=m.recipient, template=m.template, variables=m.variables,
                                    event_key=m.event_key, urgency=m.urgency, subject=m.subject, channels=m.channels,
                                    parallel=m.parallel) for m in messages]
            one = await _outcome(s, [r.notification.id for r in singles])
            created_one = [r.created for r in singles]
            await s.rollback()
    async with app.state.db.session() as s:
        async with s.begin():
            stored = await notify_many(s, messages, now=now)
            many = await _outcome(s, [r.id for r in stored])
            created_many = [r.created for r in stored]
            await s.rollback()
    return one, many, created_one, created_many


@pytest.mark.parametrize("local_hour", [10, 23])  # by day, and in the quiet hours (22:00–07:00 Asia/Shanghai)
async def test_a_batch_decides_as_one_message_at_a_time(app, local_hour):
    now = START + timedelta(hours=local_hour - 10)
    one, many, created_one, created_many = await _both(app, now)
    assert many == one and created_many == created_one
    by = {(o[0], o[1]): o for o in many}
    p = [f"person:{i}" for i in app.state.mixed]
    quiet = local_hour == 23
    due = now + timedelta(hours=8) if quiet else now  # 07:00 the next morning
    assert by[(p[0], "told-before")][7] is None and created_many[12] is False  # the first answer stands
    assert by[(p[1], "b1")][11] == [((), "skipped", due, "no_channel")] and by[(p[1], "b1")][7] == "no_channel"
    assert by[(p[1], "b1")][12] == [("sms", "skipped", "no_phone")]
    assert by[(p[2], "b1")][11] == [(("voice", "sms"), "queued", due, None)]   # a visual impairment: a call first
    assert by[(p[3], "b1")][11] == [(("voice", "sms"), "queued", due, None)]   # living alone
    assert by[(p[4], "b1")][11] == [(("push", "sms"), "queued", due, None)]    # the app
    assert by[(p[5], "b1")][3] == "en" and by[(p[5], "b1")][11][0][0] == ("sms",)
    assert by[(p[6], "b1")][7] == "opted_out" and by[(p[6], "b1")][11] == []
    assert by[(p[6], "s1")][7] is None and by[(p[6], "s1")][11][0][2] == now   # safety: past opt-out and hours
    assert by[(p[7], "cap-1")][7] is None and by[(p[7], "cap-2")][7] == "cap"
    assert by[("user:staff1", "b1")][11][0][0] == ("sms",) and by[("user:grid1", "b1")][11][0][0] == ("push",)
    assert [d[0] for d in by[("user:staff1", "e1")][11]] == [("voice",), ("sms",), ("push",)]


async def test_a_bad_message_in_a_batch_writes_nothing(app):
    from common.errors import Problem

    messages = _messages(app)
    for bad, field in ((Message("person:nobody", "notice.general", {"title": "a", "text": "b"}, "x"), "recipient"),
                       (Message(messages[0].recipient, "notice.general", {"title": "a"}, "x"), "variables.text"),
                       (Message(messages[0].recipient, "notice.general", {"title": "a", "text": "b"}, "x",
                                urgency="loud"), "urgency")):
        async with app.state.db.session() as s:
            with pytest.raises(Problem) as exc:
                async with s.begin():
                    await notify_many(s, [*messages, bad], now=START)
        assert exc.value.status == 422 and exc.value.errors[0]["field"] == field
    async with app.state.db.session() as s:
        assert (await s.execute(select(Notification).where(Notification.event_key == "b1"))).first() is None
    async with app.state.db.session() as s, s.begin():  # skipping the unknown instead: the rest is stored
        stored = await notify_many(s, [messages[0], Message("person:nobody", "notice.general",
                                                            {"title": "a", "text": "b"}, "b1")], now=START,
                                   unknown="skip")
    assert stored[1] is None and stored[0].created
