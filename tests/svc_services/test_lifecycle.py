from __future__ import annotations

import asyncio

from sqlalchemy import select

from svc_services.requests.lifecycle import ACTIONS, MOVES, STATES, TERMINAL, TRANSITIONS, allowed_actions, replay
from tests.svc_services.conftest import (GRID2, GRIDW, GRIDW2, OPS, PROVIDER, PROVIDER2, PROXY3, RES1, RES3, STAFF,
                                         STAFF_OTHER, move, submit)

PROV_ASSIGNEE = {"kind": "provider", "id": "org-1", "name": "幸福家园养老服务中心"}


def test_table_is_complete_and_consistent():
    reachable = {r.to for r in MOVES.values()} | {"submitted"}
    assert reachable == set(STATES)
    for s in STATES:
        if s in TERMINAL or s == "deliberating":  # a 大事 waits for its topic: no caller moves it (TOPIC_MOVES)
            assert allowed_actions(s) == []
        else:
            assert allowed_actions(s), s
    assert {a for _, a in TRANSITIONS} == set(ACTIONS)
    assert replay([("submit", None, "submitted"), ("accept", "submitted", "accepted")]) == "accepted"


async def _events(client, rid):
    from svc_services.models import OutboxEvent
    async with client.app.state.db.session() as s:
        rows = (await s.execute(select(OutboxEvent).where(OutboxEvent.subject == rid).order_by(OutboxEvent.id))).scalars()
        return list(rows)


async def test_full_happy_path_with_timeline_and_events(ready, auth, clock):
    client = ready
    rid = (await submit(client, auth, who=PROXY3, location={"grid": GRID2})).json()["id"]
    steps = [("accept", GRIDW2, {}), ("dispatch", STAFF, {"assignee": PROV_ASSIGNEE}), ("claim", PROVIDER, {}),
             ("start", PROVIDER, {}), ("resolve", PROVIDER, {"note": "已上门维修"}),
             ("rate", RES3, {"rating": 5, "comment": "很满意"}), ("close", STAFF, {})]
    for i, (action, who, extra) in enumerate(steps, start=1):
        clock.advance(minutes=10)
        r = await move(client, auth, rid, action, who, version=i, **extra)
        assert r.status_code == 200, (action, r.text)
        assert r.json()["version"] == i + 1
    body = r.json()
    assert body["state"] == "closed" and body["rating"] == 5 and body["assignee_id"] == "org-1"
    assert body["accepted_at"] and body["first_response_at"] and body["resolved_at"] and body["closed_at"]
    tl = body["timeline"]
    assert [t["action"] for t in tl] == ["submit"] + [s[0] for s in steps]
    assert [t["seq"] for t in tl] == list(range(1, 9))
    assert tl[5]["note"] == "已上门维修" and tl[6]["role"] == "resident" and tl[3]["role"] == "provider"
    assert replay([(t["action"], t["from_state"], t["to_state"]) for t in tl]) == "closed"
    events = await _events(client, rid)
    assert [e.type for e in events] == ["request.submitted", "request.accepted", "request.dispatched",
                                        "request.claimed", "request.started", "request.resolved", "request.rated",
                                        "request.closed"]
    last = events[-1]
    assert last.community == "110105001001" and last.grid == GRID2
    for key in ("channel", "item_code", "category", "submitted_at", "accepted_at", "resolved_at", "closed_at",
                "priority"):
        assert last.data[key] is not None, key
    assert last.data["rating"] == 5 and last.data["proxy"] is True


async def test_illegal_transition_lists_allowed_actions(ready, auth):
    client = ready
    rid = (await submit(client, auth)).json()["id"]
    r = await move(client, auth, rid, "resolve", STAFF, version=1, note="x")
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "transition.not_allowed" and body["state"] == "submitted"
    assert set(body["allowed_actions"]) == {"accept", "reject", "escalate", "merge"}
    assert "受理" in body["detail"]
    r = await client.post(f"/services/v1/requests/{rid}/transitions", json={"action": "resolve", "version": 1},
                          headers={**auth(**STAFF), "Accept-Language": "en"})
    assert "allowed: accept" in r.json()["detail"]
    # a resident may not accept their own request
    r = await move(client, auth, rid, "accept", RES1, version=1)
    assert r.status_code == 403 and r.json()["allowed_actions"] == ["cancel"]
    r = await move(client, auth, rid, "fly", STAFF, version=1)
    assert r.status_code == 422


async def test_notes_required_and_rejection(ready, auth):
    client = ready
    rid = (await submit(client, auth)).json()["id"]
    r = await move(client, auth, rid, "reject", STAFF, version=1)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "note"
    r = await move(client, auth, rid, "reject", STAFF, version=1, note="   ")
    assert r.status_code == 422
    r = await move(client, auth, rid, "reject", STAFF, version=1, note="不属于社区受理范围，请向区住建委咨询")
    assert r.status_code == 200 and r.json()["state"] == "rejected" and r.json()["allowed_actions"] == []
    r = await move(client, auth, rid, "accept", STAFF, version=2)
    assert r.status_code == 409 and r.json()["allowed_actions"] == []


async def test_version_checks(ready, auth):
    client = ready
    rid = (await submit(client, auth)).json()["id"]
    url = f"/services/v1/requests/{rid}/transitions"
    r = await client.post(url, json={"action": "accept"}, headers=auth(**STAFF))
    assert r.status_code == 428
    r = await client.post(url, json={"action": "accept", "version": 7}, headers=auth(**STAFF))
    assert r.status_code == 409 and r.json()["code"] == "version_conflict"
    r = await client.post(url, json={"action": "accept"}, headers={**auth(**STAFF), "If-Match": '"7"'})
    assert r.status_code == 412
    r = await client.post(url, json={"action": "accept"}, headers={**auth(**STAFF), "If-Match": "nope"})
    assert r.status_code == 400
    # Latin-1 `²` is a digit to str.isdigit, not to int: refused as any other, not a 500
    r = await client.post(url, json={"action": "accept"}, headers={**auth(**STAFF), "If-Match": b'"\xb2"'})
    assert r.status_code == 400 and r.json()["code"] == "bad_request"
    r = await client.post(url, json={"action": "accept"}, headers={**auth(**STAFF), "If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.json()["version"] == 2


async def test_concurrent_transitions_exactly_one_wins(ready, auth):
    client = ready
    rid = (await submit(client, auth)).json()["id"]
    results = await asyncio.gather(
        move(client, auth, rid, "accept", STAFF, version=1),
        move(client, auth, rid, "reject", GRIDW, version=1, note="重复"),
        move(client, auth, rid, "cancel", RES1, version=1),
        move(client, auth, rid, "accept", GRIDW, version=1),
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1 and all(c in (409, 412) for c in codes if c != 200), codes
    r = await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))
    assert r.json()["version"] == 2 and len(r.json()["timeline"]) == 2


async def test_return_and_redispatch_and_provider_scope(ready, auth):
    client = ready
    rid = (await submit(client, auth)).json()["id"]
    await move(client, auth, rid, "accept", STAFF)
    r = await move(client, auth, rid, "dispatch", STAFF)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "assignee"
    assert (await move(client, auth, rid, "dispatch", STAFF, assignee=PROV_ASSIGNEE)).status_code == 200
    # another provider cannot see or claim it
    assert (await move(client, auth, rid, "claim", PROVIDER2, version=3)).status_code == 404
    r = await move(client, auth, rid, "return", PROVIDER, version=3)
    assert r.status_code == 422
    r = await move(client, auth, rid, "return", PROVIDER, version=3, note="人手不足，无法承接")
    assert r.status_code == 200 and r.json()["state"] == "returned" and r.json()["assignee_id"] is None
    # once returned the provider no longer sees it
    assert (await client.get(f"/services/v1/requests/{rid}", headers=auth(**PROVIDER))).status_code == 404
    r = await move(client, auth, rid, "dispatch", STAFF, assignee={"kind": "grid_worker", "id": "grid1"})
    assert r.status_code == 200 and r.json()["state"] == "dispatched"
    assert (await move(client, auth, rid, "claim", GRIDW)).status_code == 200
    assert (await move(client, auth, rid, "start", GRIDW)).status_code == 200
    r = await move(client, auth, rid, "resolve", GRIDW, note="已处理")
    assert r.status_code == 200 and r.json()["state"] == "resolved"


async def test_rating_reopen_and_cancel(ready, auth):
    client = ready
    rid = (await submit(client, auth)).json()["id"]
    await move(client, auth, rid, "accept", STAFF)
    await move(client, auth, rid, "start", STAFF)
    await move(client, auth, rid, "resolve", STAFF, note="已办结")
    # a resident cannot reopen without an unhappy rating
    r = await move(client, auth, rid, "reopen", RES1, note="没修好")
    assert r.status_code == 409 and r.json()["code"] == "reopen.needs_low_rating"
    for bad in (0, 6, None):
        r = await move(client, auth, rid, "rate", RES1, rating=bad)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "rating"
    assert (await move(client, auth, rid, "rate", RES3, rating=1)).status_code == 404  # not theirs
    r = await move(client, auth, rid, "rate", RES1, rating=2, comment="还是漏")
    assert r.status_code == 200 and "reopen" in r.json()["allowed_actions"]
    r = await move(client, auth, rid, "reopen", RES1, note="没修好")
    assert r.status_code == 200 and r.json()["state"] == "reopened" and r.json()["rating"] is None
    tl = r.json()["timeline"]
    assert tl[-1]["data"]["previous_rating"] == 2
    await move(client, auth, rid, "dispatch", STAFF, assignee=PROV_ASSIGNEE)
    r = await move(client, auth, rid, "cancel", RES1)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    # a good rating does not allow reopening
    rid2 = (await submit(client, auth)).json()["id"]
    for action, extra in (("accept", {}), ("start", {}), ("resolve", {"note": "好了"})):
        await move(client, auth, rid2, action, STAFF, **extra)
    await move(client, auth, rid2, "rate", RES1, rating=4)
    r = await move(client, auth, rid2, "reopen", RES1, note="x")
    assert r.status_code == 409
    # staff who verify the work can still reopen
    assert (await move(client, auth, rid2, "reopen", STAFF, note="回访发现未修好")).status_code == 200


async def test_merge_and_manual_escalation(ready, auth):
    client = ready
    keep = (await submit(client, auth)).json()["id"]
    dup = (await submit(client, auth, who=RES3)).json()["id"]
    r = await move(client, auth, dup, "merge", STAFF)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "into"
    r = await move(client, auth, dup, "merge", STAFF, into=dup)
    assert r.status_code == 422
    r = await move(client, auth, dup, "merge", STAFF, into=keep, note="同一楼栋同一问题")
    assert r.status_code == 200 and r.json()["state"] == "merged" and r.json()["merged_into"] == keep
    r = await move(client, auth, keep, "escalate", GRIDW)
    assert r.status_code == 422
    levels = []
    for _ in range(3):
        r = await move(client, auth, keep, "escalate", STAFF, note="需街道协调")
        assert r.status_code == 200
        levels.append(r.json()["escalation_level"])
    assert levels == ["community", "street", "department"]
    r = await move(client, auth, keep, "escalate", STAFF, note="再升级")
    assert r.status_code == 409 and r.json()["code"] == "escalation.top"
    # at department level, the owning department can see and work it
    dept = dict(role="dept_staff", user="w1", scopes=["dept:community"])
    assert (await client.get(f"/services/v1/requests/{keep}", headers=auth(**dept))).status_code == 200
    assert (await move(client, auth, keep, "start", dept)).status_code == 200
    assert (await client.get(f"/services/v1/requests/{keep}", headers=auth(**STAFF_OTHER))).status_code == 404


async def test_transition_idempotency(ready, auth):
    client = ready
    rid = (await submit(client, auth)).json()["id"]
    h = {**auth(**STAFF), "Idempotency-Key": "t-1"}
    url = f"/services/v1/requests/{rid}/transitions"
    r1 = await client.post(url, json={"action": "accept", "version": 1}, headers=h)
    r2 = await client.post(url, json={"action": "accept", "version": 1}, headers=h)
    assert r1.status_code == r2.status_code == 200 and r2.headers["idempotency-replayed"] == "true"
    r = await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))
    assert r.json()["version"] == 2
