"""Every transition of the declared table (requests.lifecycle.TRANSITIONS) over HTTP: reach the source state,
have a role the table does not name try it (403, nothing changes), then a role it names (the new state, one
more timeline entry saying who did what, the version one higher); and every action the table does not offer
in a state is refused with 409 listing the allowed ones.

Every test files requests of its own, so one svc_services per backend serves the whole module (started once, not
for each of the hundred tests)."""
from __future__ import annotations

import pytest

from svc_services.requests.lifecycle import ACTIONS, TRANSITIONS, allowed_actions
from tests.svc_services.conftest import OPS, submit
from tests.svc_services.paths import EXTRA, OUTSIDERS, PATHS, allowed_actor, reach

TABLE = sorted(TRANSITIONS)
in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture
def ready(module_ready):
    return module_ready


def test_paths_cover_every_source_state():
    assert {s for s, _ in TRANSITIONS} == set(PATHS)


async def _get(client, auth, rid):
    r = await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))
    assert r.status_code == 200
    return r.json()


@in_module_loop
@pytest.mark.parametrize(("state", "action"), TABLE, ids=[f"{s}-{a}" for s, a in TABLE])
async def test_transition(ready, auth, state, action):
    client = ready
    rule = TRANSITIONS[(state, action)]
    rid, version = await reach(client, auth, state)
    body = {"action": action, "version": version, **EXTRA.get(action, {})}
    target = None
    if action == "merge":
        target = (await submit(client, auth)).json()
        body["into"] = target["id"]

    # a role the table does not name for this move: refused, nothing changes
    outsider = next(who for who in OUTSIDERS if who["role"] not in rule.roles)
    r = await client.post(f"/services/v1/requests/{rid}/transitions", json=body, headers=auth(**outsider))
    assert r.status_code in (403, 409), r.text
    problem = r.json()
    assert problem["code"] == "transition.not_allowed" and action not in problem["allowed_actions"]
    assert (await _get(client, auth, rid))["version"] == version

    # a role it names: moved, with its timeline entry
    who = allowed_actor(rule.roles)
    r = await client.post(f"/services/v1/requests/{rid}/transitions", json=body, headers=auth(**who))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["state"] == rule.to and out["version"] == version + 1
    last = out["timeline"][-1]
    assert (last["action"], last["from_state"], last["to_state"]) == (action, state, rule.to)
    assert last["role"] == who["role"] and last["actor"].endswith("/" + who["user"]) and last["seq"] == version + 1
    if rule.note_required:
        assert last["note"] == EXTRA[action]["note"]
    stored = await _get(client, auth, rid)
    assert stored["state"] == rule.to and len(stored["timeline"]) == version + 1
    if action == "merge":
        t = await _get(client, auth, target["id"])
        assert t["state"] == "submitted" and t["timeline"][-1]["action"] == "absorb"
        assert t["timeline"][-1]["data"]["merged"] == rid and stored["merged_into"] == target["id"]
    # the same move again, now from the new state: refused unless the table has it there too (a provider that
    # returned the work no longer sees the request: 404)
    r = await client.post(f"/services/v1/requests/{rid}/transitions", json={**body, "version": version + 1},
                          headers=auth(**who))
    if (rule.to, action) not in TRANSITIONS:
        assert r.status_code in (403, 404, 409), r.text


NOT_OFFERED = [(s, a) for s in sorted(PATHS) for a in ACTIONS if (s, a) not in TRANSITIONS]


@in_module_loop
@pytest.mark.parametrize("state", sorted(PATHS))
async def test_actions_not_in_the_table_get_409(ready, auth, state):
    client = ready
    rid, version = await reach(client, auth, state)
    for s, action in NOT_OFFERED:
        if s != state:
            continue
        body = {"action": action, "version": version, **EXTRA.get(action, {})}
        r = await client.post(f"/services/v1/requests/{rid}/transitions", json=body, headers=auth(**OPS))
        assert r.status_code == 409, (state, action, r.text)
        problem = r.json()
        assert problem["code"] == "transition.not_allowed" and problem["state"] == state
        assert problem["allowed_actions"] == allowed_actions(state, "ops")
        assert problem["detail"]
    assert (await _get(client, auth, rid))["version"] == version
