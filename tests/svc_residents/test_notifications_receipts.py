"""Receipts end (svc_residents/notifications/dispatch.py, Policy.receipt_deadline): a receipt that says failed ends
the attempt failed and the message goes on to its next channel, as a send that failed for good does; no receipt by
the deadline (10 min after the hand-over, on the injected clock) ends it `unknown` and it goes on to the next
channel unless the person read it in the inbox; after either, the platform is asked nothing more. The emulated
platforms' receipt knobs (`receipt_failure_rate`, `receipt_pending_rate`) make the receipts fail or never come."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update

from svc_residents.notifications.models import Attempt, Delivery, Notification
from tests.svc_residents import test_notifications_channels as channels_tests
from tests.svc_residents.test_notifications_channels import drain, prefer, send, states

rig = channels_tests.rig  # the same rig: svc_residents, the emulated platforms in process, the injected clock

DEADLINE = timedelta(minutes=10)


def count_receipt_calls(rig) -> Counter:
    calls: Counter = Counter()
    channels = rig.d.channels
    real = channels.receipts

    async def counted(channel, refs):
        calls[channel] += 1
        return await real(channel, refs)

    channels.receipts = counted
    return calls


async def attempts(rig) -> list[tuple]:
    async with rig.db.session() as s:
        return [(a.channel, a.outcome, a.detail, a.at) for a in
                (await s.execute(select(Attempt).order_by(Attempt.at, Attempt.id))).scalars()]


async def test_a_failed_receipt_ends_the_attempt_and_the_message_goes_on_to_its_next_channel(rig):
    await prefer(rig, "P1", "app")  # push, then SMS
    rig.push.receipt_failure_rate = 1.0
    calls = count_receipt_calls(rig)
    await send(rig, "P1", "push-not-reached")
    await drain(rig)
    assert [a[:3] for a in await attempts(rig)] == [
        ("push", "sent", None), ("push", "failed", "receipt_failed"), ("sms", "sent", None),
        ("sms", "delivered", None)]
    assert calls == Counter({"push": 1, "sms": 1})  # the failed receipt was asked once
    assert await states(rig) == Counter({"delivered": 1})
    rig.sms.receipt_failure_rate = 1.0  # the last channel's receipt fails too: the delivery ends failed
    await send(rig, "P1", "nobody-reached")
    await drain(rig)
    assert await states(rig) == Counter({"delivered": 1, "failed": 1})
    assert [a[:3] for a in await attempts(rig)][-2:] == [("sms", "sent", None), ("sms", "failed", "receipt_failed")]


async def test_no_receipt_by_the_deadline_ends_unknown_and_falls_back_and_nothing_is_asked_after(rig):
    await prefer(rig, "P1", "app")
    rig.push.receipt_pending_rate = 1.0  # the push provider's receipt never comes
    calls = count_receipt_calls(rig)
    await send(rig, "P1", "no-push-receipt")
    await drain(rig, rounds=300)
    got = await attempts(rig)
    assert [a[:3] for a in got] == [("push", "sent", None), ("push", "unknown", "receipt_expired"),
                                    ("sms", "sent", None), ("sms", "delivered", None)]
    assert got[1][3] - got[0][3] == DEADLINE  # ended at the deadline, on the injected clock
    asked = calls["push"]
    assert 100 <= asked <= 125  # every 5 s for 10 min, then no more
    # the last channel's receipt never comes either: the delivery ends unknown and the platform is left alone
    rig.sms.receipt_pending_rate = 1.0
    await prefer(rig, "P2", None)  # SMS alone
    await send(rig, "P2", "no-sms-receipt")
    await drain(rig, rounds=300)
    assert await states(rig) == Counter({"delivered": 1, "unknown": 1})
    asked = dict(calls)
    for _ in range(5):
        rig.clock.advance(hours=1)
        await rig.d.run_once(rig.clock.now())
    assert dict(calls) == asked and await states(rig) == Counter({"delivered": 1, "unknown": 1})
    async with rig.db.session() as s:
        ended = (await s.execute(select(Delivery).where(Delivery.state == "unknown"))).scalar_one()
    assert ended.last_error == "receipt_expired" and ended.next_attempt_at < rig.clock.now()


async def test_a_message_read_in_the_inbox_needs_no_fallback_when_its_receipt_does_not_come(rig):
    await prefer(rig, "P1", "app")
    rig.push.receipt_pending_rate = 1.0
    stored = await send(rig, "P1", "read-in-the-app")
    await rig.d.run_once(rig.clock.now())  # handed to the push provider
    rig.clock.advance(minutes=3)
    async with rig.db.session() as s, s.begin():  # the person opens it in the app
        await s.execute(update(Notification).where(Notification.id == stored.notification.id)
                        .values(read_at=rig.clock.now()))
    await drain(rig, rounds=300)
    assert [a[:3] for a in await attempts(rig)] == [("push", "sent", None), ("push", "unknown", "receipt_expired")]
    assert await states(rig) == Counter({"unknown": 1}) and rig.sms.sent == 0
