"""The notification engine's outside channels against the emulated platforms (gateway/departments: SMS, 语音外呼,
app push) over real HTTP semantics in process: the plan by needs and preference, fallback, retries with backoff,
quiet hours under the injected clock, a platform failing half its calls or down and back (none lost, none twice),
and two schedulers on one database sending each message once."""
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import func, select, update

from common.auth import TokenVerifier
from gateway.departments.app import EmulatorSettings, create_app as create_emulators
from svc_residents.notifications.dispatch import Dispatcher, Policy
from svc_residents.notifications.models import Attempt, Delivery
from svc_residents.notifications.runtime import channels_on
from svc_residents.notifications.service import notify
from svc_residents.persons.models import Person
from tests.conftest import gateway_auth
from tests.svc_residents.conftest import START, P

P1_PHONE, P3_PHONE = "13800010001", "13800010003"
SMS_ONLY = ("P1", "P2", "P5", "P9")  # no need for voice: with no preferred channel, SMS


@pytest.fixture
async def rig(app, make_token, jwks):
    """The notification rig (conftest.py: START's clock, Monday 10:00 in Beijing) with the emulated platforms."""
    from contextlib import AsyncExitStack

    clock = app.state.clock
    settings = EmulatorSettings(jwks_url=None)
    emu = create_emulators(settings, verifier=TokenVerifier(settings, jwks=jwks))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(emu.router.lifespan_context(emu))
        http = await stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=emu), base_url="http://emulators", auth=gateway_auth()))
        token = make_token("system", user="svc_residents", member="svc_residents", ttl=3600)

        async def tok() -> str:
            return token

        def dispatcher() -> Dispatcher:
            return Dispatcher(app.state.db, channels_on(http, tok), app.state.protection,
                              Policy(base_seconds=5, max_tries=3))

        yield SimpleNamespace(app=app, db=app.state.db, clock=clock, sms=emu.state.sms, voice=emu.state.voice,
                              push=emu.state.push, d=dispatcher(), dispatcher=dispatcher)


async def send(rig, person: str, key: str, urgency: str = "normal", **kw):
    async with rig.db.session() as s, s.begin():
        return await notify(s, recipient=f"person:{P(person)}", template="request.dispatched", event_key=key,
                            variables={"number": key[-8:], "assignee": "陈磊"}, now=rig.clock.now(),
                            urgency=urgency, **kw)


async def prefer(rig, person: str, channel: str | None) -> None:
    async with rig.db.session() as s, s.begin():
        await s.execute(update(Person).where(Person.id == P(person)).values(preferred_channel=channel))


async def states(rig) -> Counter:
    async with rig.db.session() as s:
        return Counter((await s.execute(select(Delivery.state))).scalars())


async def attempts(rig) -> list[tuple[str, str]]:
    async with rig.db.session() as s:
        return [(a.channel, a.outcome) for a in (await s.execute(select(Attempt).order_by(Attempt.at, Attempt.id)))
                .scalars()]


async def drain(rig, rounds: int = 40) -> None:
    """Scheduler rounds, the clock moving on to the next due delivery between them, until nothing is left."""
    for _ in range(rounds):
        await rig.d.run_once(rig.clock.now())
        async with rig.db.session() as s:
            due = (await s.execute(select(func.min(Delivery.next_attempt_at)).where(
                Delivery.state.in_(("queued", "sent"))))).scalar_one()
        if due is None:
            return
        rig.clock.set(max(due, rig.clock.now()))
    raise AssertionError("deliveries still pending")


async def test_plans_by_needs_and_preference(rig):
    await send(rig, "P3", "lone-elder")  # living alone, needs voice: a voice call
    await prefer(rig, "P1", "app")
    await send(rig, "P1", "app-user")  # the app: push
    await drain(rig)
    assert await states(rig) == Counter({"delivered": 2})
    calls = rig.voice.to(P3_PHONE) if rig.voice.test_reads else [m for m in rig.voice.messages.values()]
    assert [m.to for m in calls] == [P3_PHONE] and "陈磊" in calls[0].text
    assert [m.to for m in rig.push.messages.values()] == [f"person:{P('P1')}"]
    assert rig.sms.sent == 0


async def test_no_answer_falls_back_to_sms_and_a_failing_channel_backs_off_first(rig):
    rig.voice.no_answer_rate = 1.0
    await send(rig, "P3", "nobody-home")
    await drain(rig)
    assert await attempts(rig) == [("voice", "failed"), ("sms", "sent"), ("sms", "delivered")]
    assert rig.sms.messages[next(iter(rig.sms.messages))].phone == P3_PHONE
    rig.voice.no_answer_rate, rig.voice.down = 0.0, True
    await send(rig, "P3", "voice-down")
    t0 = rig.clock.now()
    for _ in range(4):
        await rig.d.run_once(rig.clock.now())
        rig.clock.advance(seconds=5)
    tried = [a for a in await attempts(rig)][3:]
    # three tries on voice 5 s and 10 s apart (backoff), then SMS
    assert [a[0] for a in tried[:3]] == ["voice"] * 3 and all(o == "failed" for _, o in tried[:3])
    assert rig.clock.now() - t0 == timedelta(seconds=20)
    await drain(rig)
    assert (await states(rig))["delivered"] == 2


async def test_quiet_hours_wait_for_seven_but_emergencies_go_at_once(rig):
    await prefer(rig, "P1", None)  # SMS
    rig.clock.set(START.replace(hour=15, minute=30))  # 23:30 in Beijing
    await send(rig, "P1", "late-news")
    await send(rig, "P1", "fire", urgency="emergency")
    await rig.d.run_once(rig.clock.now())
    assert rig.sms.sent == 1 and "fire"[-8:] in next(iter(rig.sms.messages.values())).text
    rig.clock.set(START.replace(hour=22, minute=59))  # 06:59
    await rig.d.run_once(rig.clock.now())
    assert rig.sms.sent == 1
    rig.clock.set(START.replace(hour=23, minute=0))  # 07:00: the quiet hours are over
    await rig.d.run_once(rig.clock.now())
    assert rig.sms.sent == 2


@pytest.mark.parametrize("fault", ["half", "down_then_back"])
async def test_sms_faults_lose_nothing_and_send_nothing_twice(rig, fault):
    n = 30
    for p in SMS_ONLY:
        await prefer(rig, p, None)
    for i in range(n):  # spread over persons: each stays under the daily cap
        await send(rig, SMS_ONLY[i % len(SMS_ONLY)], f"{fault}-{i:04d}")
    if fault == "half":
        rig.sms.failure_rate = 0.5
        await drain(rig, rounds=40)
    else:
        rig.sms.down = True
        for _ in range(2):  # two rounds while it is down: every message waits
            await rig.d.run_once(rig.clock.now())
            rig.clock.advance(seconds=5)
        assert (await states(rig))["queued"] == n and rig.sms.sent == 0
        rig.sms.down = False
        await drain(rig)
    assert await states(rig) == Counter({"delivered": n})
    texts = Counter(m.text for m in rig.sms.messages.values())
    assert len(texts) == n and set(texts.values()) == {1}  # every message once, none twice
    failed = sum(1 for ch, o in await attempts(rig) if o == "failed")
    assert failed > 0 and all(ch == "sms" for ch, _ in await attempts(rig))


async def test_two_schedulers_send_each_message_once(rig):
    for p in SMS_ONLY:
        await prefer(rig, p, None)
    for i in range(40):
        await send(rig, SMS_ONLY[i % len(SMS_ONLY)], f"pair-{i:04d}")
    other = rig.dispatcher()
    for _ in range(3):
        await asyncio.gather(rig.d.run_once(rig.clock.now()), other.run_once(rig.clock.now()))
        rig.clock.advance(seconds=5)
    assert await states(rig) == Counter({"delivered": 40})
    assert rig.sms.sent == 40 and len({m.text for m in rig.sms.messages.values()}) == 40


async def test_a_lapsed_lease_is_claimed_again_and_voice_is_not_repeated(rig):
    await send(rig, "P3", "crash")
    ids = await rig.d.claim(rig.clock.now())  # a replica claims, places the call, then dies before recording it
    assert len(ids) == 1
    async with rig.db.session() as s:
        d = await s.get(Delivery, ids[0])
    await rig.d.channels.send("voice", alias="", phone=P3_PHONE, title="", body="x", ref=f"{d.id}:0")
    assert await rig.d.run_once(rig.clock.now()) == 0  # the lease holds: nobody else takes it
    rig.clock.advance(seconds=31)
    await drain(rig)
    assert await states(rig) == Counter({"delivered": 1}) and rig.voice.sent == 1  # the platform knew the ref
