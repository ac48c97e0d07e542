"""A request's whole life tells the right people through the right channels, against real processes (the
launcher's platform: gateway, the four services, the emulated SMS / 语音外呼 / push platforms).

The steps go through svc_services' `notice.` outbox feed to svc_residents, which stores the messages and sends
them: 张伟 (resident1, prefers the app) is told by app push of every step, with the request's number; the grid
worker 陈磊 (grid1, a contact registered with SMS) by SMS of the assignment and of the reopening; 张伟's app,
connected to the live stream through the gateway, receives the dispatch as it happens."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from datetime import time as time_of_day

import httpx
import pytest

from common.clock import SHANGHAI
from tests.e2e.harness import Platform

pytestmark = pytest.mark.e2e
WAIT_SECONDS = 30.0  # bounds a loaded machine; each wait ends as soon as the message is there


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("notifications"))
    try:
        p.start()
        yield p
    finally:
        p.stop()


def _wait(fn, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _inbox(p: Platform, who: str) -> list[dict]:
    r = httpx.get(f"{p.gw}/residents/v1/notifications", params={"limit": 50}, headers=p.token(who), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _about(p: Platform, who: str, rid: str) -> dict[str, dict]:
    return {n["template"]: n for n in _inbox(p, who) if n["subject"] == rid}


def _step(p: Platform, who: str, rid: str, body: dict) -> dict:
    r = httpx.post(f"{p.gw}/services/v1/requests/{rid}/transitions", json=body, headers=p.token(who), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _deliveries(p: Platform, note: dict, viewer: str) -> list[dict]:
    r = httpx.get(f"{p.gw}/residents/v1/notifications/{note['id']}/deliveries", headers=p.token(viewer), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _quiet_hours_end(created_at: str) -> datetime | None:
    """The policy (issue 26): outside messages wait out 22:00–07:00 Asia/Shanghai; the end of the wait for a message
    stored at `created_at`, or None when it was stored in the day. The suite runs at any hour, so a test of what
    is sent says what the hour asks for."""
    local = datetime.fromisoformat(created_at).astimezone(SHANGHAI)
    if time_of_day(7) <= local.time() < time_of_day(22):
        return None
    day = local.date() if local.time() < time_of_day(7) else local.date() + timedelta(days=1)
    return datetime.combine(day, time_of_day(7), tzinfo=SHANGHAI)


def _sent_by(p: Platform, note: dict, viewer: str, plan: list[str]) -> bool:
    """The message went out on `plan`'s first channel and was delivered (only that channel tried); or, stored in
    the quiet hours, it waits with that plan until 07:00, nothing tried yet."""
    deliveries = _deliveries(p, note, viewer)
    assert [d["channels"] for d in deliveries] == [plan]
    held_until = _quiet_hours_end(note["created_at"])
    if held_until is not None:
        (d,) = deliveries
        assert d["state"] == "queued" and d["attempts"] == [], d
        assert datetime.fromisoformat(d["next_attempt_at"]) == held_until, d
        return True
    tried = [(a["channel"], a["outcome"]) for d in deliveries for a in d["attempts"]]
    assert all(ch == plan[0] for ch, _ in tried), tried
    return (plan[0], "delivered") in tried


def _listen(p: Platform, who: str, after: str, got: list) -> None:
    """An app's EventSource through the gateway (one held connection, ADR 0017), from the last message it had,
    until its first new message."""
    headers = {**p.token(who), "Accept": "text/event-stream", "Last-Event-ID": after}
    with httpx.stream("GET", f"{p.gw}/residents/v1/notifications/stream", headers=headers, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                got.append(line[6:])
                return


def test_a_request_life_tells_the_right_people(platform):
    p = platform
    r = httpx.put(f"{p.gw}/residents/v1/staff_contacts/grid1", headers=p.token("staff1"), timeout=10,
                  json={"role": "grid_worker", "scope": "grid:110105001001001", "phone": "13900000011",
                        "preferred_channel": "sms", "display_name": "陈磊"})
    assert r.status_code in (200, 201), r.text
    r = httpx.post(f"{p.gw}/services/v1/requests", headers={**p.token("resident1"), "Idempotency-Key": "life-1"},
                   timeout=10, json={"item_code": "SH-WX-001", "channel": "app", "description": "楼道灯不亮",
                                     "attributes": {"appliance": "electric"},
                                     "location": {"grid": "110105001001001"}})
    assert r.status_code == 201, r.text
    rid, number = r.json()["id"], r.json()["id"][-8:].upper()
    _step(p, "staff1", rid, {"action": "accept", "version": 1})
    accepted = _wait(lambda: _about(p, "resident1", rid).get("request.accepted"), "the acceptance")
    assert number in accepted["body"] and "家电家政维修" in accepted["body"]

    got: list[str] = []
    listener = threading.Thread(target=_listen, args=(p, "resident1", accepted["id"], got), daemon=True)
    listener.start()
    _step(p, "staff1", rid, {"action": "dispatch", "version": 2,
                             "assignee": {"kind": "grid_worker", "id": "grid1", "name": "陈磊"}})
    listener.join(WAIT_SECONDS)
    assert got and "request.dispatched" in got[0] and "陈磊" in got[0]  # live, through the gateway
    _step(p, "grid1", rid, {"action": "claim", "version": 3})
    _step(p, "grid1", rid, {"action": "start", "version": 4})  # tells nobody
    _step(p, "grid1", rid, {"action": "resolve", "version": 5, "note": "已更换灯泡"})
    resolved = _wait(lambda: _about(p, "resident1", rid).get("request.resolved"), "the resolution")
    assert "评价" in resolved["body"]
    _step(p, "resident1", rid, {"action": "rate", "version": 6, "rating": 2, "comment": "又不亮了"})  # tells nobody
    _step(p, "resident1", rid, {"action": "reopen", "version": 7, "note": "又不亮了"})
    mine = _wait(lambda: (lambda a: a if len(a) >= 5 else None)(_about(p, "resident1", rid)), "five messages")
    assert set(mine) == {"request.accepted", "request.dispatched", "request.claimed", "request.resolved",
                         "request.reopened"}
    worker = _wait(lambda: (lambda a: a if len(a) >= 2 else None)(_about(p, "grid1", rid)), "the worker's")
    assert set(worker) == {"request.assigned", "request.reopened.staff"}
    # the right channels: the app user by push, the worker by SMS (each handed over, then its receipt)
    for n in mine.values():
        assert _wait(lambda: _sent_by(p, n, "resident1", ["push", "sms"]), "push receipts")
    for n in worker.values():
        assert _wait(lambda: _sent_by(p, n, "staff1", ["sms"]), "SMS receipts")
    assert _inbox(p, "resident3") == [] or all(n["subject"] != rid for n in _inbox(p, "resident3"))
