"""An emergency or safety message ends the delivery scheduler's wait once it commits (stream.Hub.dispatch_wake,
runtime.dispatch_job), so an alarm's first call is handed to the platforms at once rather than at the next scan;
an ordinary message, or an emergency one whose transaction rolls back, leaves the scheduler to its interval."""
from __future__ import annotations

import pytest

from svc_residents.notifications.service import Message, notify_many
from tests.svc_residents.conftest import P

INBOX = f"person:{P('P3')}"


async def _store(app, key: str, urgency: str, *, commit: bool = True) -> None:
    async with app.state.db.session() as s:
        async with s.begin():
            await notify_many(s, [Message(INBOX, "safety.alert" if urgency != "normal" else "request.accepted",
                                          {"text": "紧急"} if urgency != "normal" else {"number": key, "item": "助餐"},
                                          key, urgency=urgency)], now=app.state.clock.now())
            if not commit:
                await s.rollback()


@pytest.mark.parametrize("urgency", ["emergency", "safety"])
async def test_an_urgent_message_wakes_the_delivery_scheduler_when_it_commits(app, urgency):
    wake = app.state.notification_hub.dispatch_wake
    wake.clear()
    await _store(app, "ordinary", "normal")
    assert not wake.is_set()  # an ordinary message waits for the scan
    await _store(app, "rolled-back", urgency, commit=False)
    assert not wake.is_set()  # nothing committed: nothing to hand over
    await _store(app, "alarm", urgency)
    assert wake.is_set()
