"""Property: from any reachable state, whatever sequence of actions anyone tries, the timeline replays to the
current state and the version equals the number of timeline entries."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svc_services.requests.lifecycle import ACTIONS, replay
from tests.svc_services.conftest import DEPT, GRIDW, OPS, PROVIDER, RES1, STAFF, STREET, submit
from tests.svc_services.paths import PATHS, reach

ACTORS = {"staff": STAFF, "grid": GRIDW, "street": STREET, "provider": PROVIDER, "resident": RES1, "ops": OPS,
          "dept": DEPT, "system": dict(role="system", user="sla-scheduler")}
ASSIGNEES = [{"kind": "provider", "id": "org-1"}, {"kind": "grid_worker", "id": "grid1"},
             {"kind": "department", "id": "minzheng"}]

step = st.tuples(st.sampled_from(ACTIONS), st.sampled_from(sorted(ACTORS)), st.integers(0, 6),
                 st.sampled_from(ASSIGNEES), st.booleans())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.sampled_from(sorted(PATHS)), steps=st.lists(step, min_size=1, max_size=14))
async def test_timeline_always_replays_to_state(ready, auth, start, steps):
    client = ready
    rid, version = await reach(client, auth, start)
    target = (await submit(client, auth)).json()["id"]  # something to merge into
    for action, actor, rating, assignee, with_note in steps:
        body = {"action": action, "version": version, "rating": rating, "assignee": assignee, "into": target}
        if with_note:
            body["note"] = "说明"
        resp = await client.post(f"/services/v1/requests/{rid}/transitions", json=body,
                                 headers=auth(**ACTORS[actor]))
        assert resp.status_code in (200, 403, 404, 409, 422), resp.text
        if resp.status_code == 200:
            assert resp.json()["version"] == version + 1
            version += 1
    for request_id in (rid, target):
        r = await client.get(f"/services/v1/requests/{request_id}", headers=auth(**OPS))
        body = r.json()
        tl = body["timeline"]
        assert body["version"] == len(tl)
        assert [t["seq"] for t in tl] == list(range(1, len(tl) + 1))
        assert replay([(t["action"], t["from_state"], t["to_state"]) for t in tl]) == body["state"]
    assert (await client.get(f"/services/v1/requests/{rid}", headers=auth(**OPS))).json()["version"] == version
