"""The scheduler hands a round's SMS and push to the platforms' batch calls (a few hundred a call; here a few, to
see several calls), reads receipts in batches, and records one attempt per message with its own outcome: a batch
answer failing some messages fails those deliveries only (retried with backoff, then sent once), a replica that
dies after a batch call is answered by the platform from the refs (nothing twice), and a phone gone since the
decision moves the delivery on with a recorded skip. Against the emulators (gateway/departments), on both
databases."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update

from svc_residents.notifications.dispatch import Dispatcher, Out, Policy
from svc_residents.notifications.models import Attempt, Delivery
from svc_residents.persons.models import Person
from tests.svc_residents.conftest import P
from tests.svc_residents.test_notifications_channels import SMS_ONLY, drain, prefer, rig, send, states  # noqa: F401


def counting(rig, per_call: int) -> tuple[Dispatcher, Counter]:  # noqa: F811
    """A dispatcher of `per_call` messages a batch call, and the calls it makes, by kind."""
    d = rig.dispatcher()
    d.policy = Policy(base_seconds=5, max_tries=3, per_call=per_call)
    calls: Counter = Counter()
    for name, client in (("sms", d.channels.sms), ("push", d.channels.push)):
        for method in ("send_batch" if name == "sms" else "push_batch", "receipts"):
            real = getattr(client, method)

            async def counted(*a, _real=real, _key=f"{name}.{method}", **kw):
                calls[_key] += 1
                return await _real(*a, **kw)
            setattr(client, method, counted)
    return d, calls


async def by_delivery(rig) -> dict[str, list[tuple[str, str, str | None]]]:  # noqa: F811
    async with rig.db.session() as s:
        out: dict[str, list] = {}
        for a in (await s.execute(select(Attempt).order_by(Attempt.at, Attempt.id))).scalars():
            out.setdefault(a.delivery_id, []).append((a.channel, a.outcome, a.provider_ref))
        return out


async def test_a_round_hands_sms_and_push_in_batch_calls_one_attempt_each(rig):  # noqa: F811
    for p in SMS_ONLY:
        await prefer(rig, p, None)
    await prefer(rig, "P6", "app")
    for i in range(30):
        await send(rig, SMS_ONLY[i % len(SMS_ONLY)], f"sms-{i:04d}")
    for i in range(10):
        await send(rig, "P6", f"push-{i:04d}")
    d, calls = counting(rig, per_call=8)
    assert await d.run_once(rig.clock.now()) == 40
    assert calls == Counter({"sms.send_batch": 4, "push.push_batch": 2})  # 30 / 8 and 10 / 8, rounded up
    tried = await by_delivery(rig)
    assert len(tried) == 40 and all(len(a) == 1 and a[0][1] == "sent" for a in tried.values())
    refs = [a[0][2] for a in tried.values()]
    assert len(set(refs)) == 40                                           # each message its own id
    assert set(refs) == set(rig.sms.messages) | set(rig.push.messages)
    assert rig.sms.sent == 30 and len({m.text for m in rig.sms.messages.values()}) == 30
    rig.clock.advance(seconds=2)                                          # the receipts, in batches too
    assert await d.run_once(rig.clock.now()) == 40
    assert calls["sms.receipts"] == 4 and calls["push.receipts"] == 2
    assert await states(rig) == Counter({"delivered": 40})
    tried = await by_delivery(rig)
    assert all([o for _, o, _ in a] == ["sent", "delivered"] for a in tried.values())


async def test_a_batch_answer_failing_some_fails_those_deliveries_only(rig):  # noqa: F811
    n = 32
    for p in SMS_ONLY:
        await prefer(rig, p, None)
    for i in range(n):
        await send(rig, SMS_ONLY[i % len(SMS_ONLY)], f"half-{i:04d}")
    rig.sms.failure_rate = 0.5
    d, calls = counting(rig, per_call=10)
    t0 = rig.clock.now()
    assert await d.run_once(t0) == n and calls["sms.send_batch"] == 4
    tried = await by_delivery(rig)
    outcomes = Counter(a[0][1] for a in tried.values())
    assert len(tried) == n and all(len(a) == 1 for a in tried.values())
    assert 0 < outcomes["failed"] < n and outcomes["sent"] == rig.sms.sent == n - outcomes["failed"]
    async with rig.db.session() as s:
        rows = {r.id: r for r in (await s.execute(select(Delivery))).scalars()}
    for did, ((_, outcome, ref),) in tried.items():
        r = rows[did]
        if outcome == "failed":   # this one only: queued again after the first backoff, the platform's code kept
            assert (r.state, r.tries, r.next_attempt_at, r.last_error) == ("queued", 1, t0 + timedelta(seconds=5),
                                                                            "sms.unavailable") and ref is None
        else:
            assert r.state == "sent" and r.provider_ref == ref
    rig.d = d
    await drain(rig, rounds=60)
    assert await states(rig) == Counter({"delivered": n})
    assert rig.sms.sent == n and len({m.text for m in rig.sms.messages.values()}) == n   # none lost, none twice


async def test_a_replica_dying_after_a_batch_call_sends_nothing_twice(rig):  # noqa: F811
    for p in SMS_ONLY:
        await prefer(rig, p, None)
    for i in range(12):
        await send(rig, SMS_ONLY[i % len(SMS_ONLY)], f"crash-{i:04d}")
    ids = await rig.d.claim(rig.clock.now())        # a replica claims, hands the batch over, then dies
    async with rig.db.session() as s:
        rows = (await s.execute(select(Delivery.id, Delivery.position).where(Delivery.id.in_(ids)))).all()
    await rig.d.channels.send_many("sms", [Out("", "13800010001", "", "x", f"{did}:{pos}") for did, pos in rows])
    assert rig.sms.sent == 12
    assert await rig.d.run_once(rig.clock.now()) == 0    # the lease holds
    rig.clock.advance(seconds=31)
    await drain(rig)
    assert await states(rig) == Counter({"delivered": 12}) and rig.sms.sent == 12   # the platform knew the refs


async def test_a_phone_gone_since_the_decision_is_a_recorded_skip_and_the_next_channel(rig):  # noqa: F811
    await send(rig, "P3", "no-phone")                    # living alone: voice, then SMS
    await prefer(rig, "P1", "app")
    await send(rig, "P1", "app-then-sms", channels=["sms", "push"])
    async with rig.db.session() as s, s.begin():
        await s.execute(update(Person).where(Person.id.in_([P("P3"), P("P1")])).values(phone_enc=None))
    await drain(rig)
    tried = await by_delivery(rig)
    assert sorted([o for _, o, _ in a] for a in tried.values()) == [["skipped", "sent", "delivered"],
                                                                    ["skipped", "skipped"]]
    assert sorted(c for a in tried.values() for c, o, _ in a if o == "skipped") == ["sms", "sms", "voice"]
    assert await states(rig) == Counter({"delivered": 1, "failed": 1}) and rig.sms.sent == 0
