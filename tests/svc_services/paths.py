"""How to bring a fresh request (submitted by RES1 in GRID1) to each non-terminal state over HTTP, and who may
take each action of the declared table. Shared by the table test and the property test."""
from __future__ import annotations

from tests.svc_services.conftest import GRIDW, OPS, PROVIDER, RES1, STAFF, STREET, submit

PROV_ASSIGNEE = {"kind": "provider", "id": "org-1", "name": "幸福家园养老服务中心"}

# the extra body each action needs (merge's `into` is filled in with a second open request)
EXTRA = {"reject": {"note": "不属于受理范围"}, "dispatch": {"assignee": PROV_ASSIGNEE},
         "return": {"note": "不在服务范围内"}, "resolve": {"note": "已处理完毕"}, "rate": {"rating": 4, "comment": "还行"},
         "reopen": {"note": "复查仍未解决"}, "escalate": {"note": "需上级协调"}, "merge": {"note": "与另一诉求重复"}}

_DISPATCHED = [("accept", STAFF), ("dispatch", STAFF)]
_RESOLVED = [("accept", STAFF), ("start", STAFF), ("resolve", STAFF)]
# moves (action, actor) from `submitted` to each non-terminal state
PATHS: dict[str, list[tuple[str, dict]]] = {
    "submitted": [],
    "accepted": [("accept", STAFF)],
    "dispatched": _DISPATCHED,
    "claimed": _DISPATCHED + [("claim", PROVIDER)],
    "returned": _DISPATCHED + [("return", PROVIDER)],
    "in_progress": [("accept", STAFF), ("start", STAFF)],
    "resolved": _RESOLVED,
    "rated": _RESOLVED + [("rate", RES1)],
    "reopened": _RESOLVED + [("reopen", STAFF)],
    "escalated": [("escalate", STAFF)],
}

# one fixture per role, all able to see a request of RES1's in GRID1 once it is dispatched to org-1
ACTOR = {"community_staff": STAFF, "street_staff": STREET, "ops": OPS, "provider": PROVIDER, "resident": RES1,
         "system": dict(role="system", user="sla-scheduler")}
PREFERRED = ("community_staff", "provider", "resident", "street_staff", "ops", "system")
# roles tried, in order, as the one NOT allowed (each can see the request, so the refusal is about the table)
OUTSIDERS = (RES1, STAFF, GRIDW, PROVIDER)


def allowed_actor(roles: tuple[str, ...]) -> dict:
    return ACTOR[next(r for r in PREFERRED if r in roles)]


async def reach(client, auth, state: str, **submit_over) -> tuple[str, int]:
    """Submit a request and move it to `state`; (id, version)."""
    r = await submit(client, auth, **submit_over)
    assert r.status_code == 201, r.text
    rid, version = r.json()["id"], 1
    for action, who in PATHS[state]:
        r = await client.post(f"/services/v1/requests/{rid}/transitions",
                              json={"action": action, "version": version, **EXTRA.get(action, {})},
                              headers=auth(**who))
        assert r.status_code == 200, (state, action, r.text)
        version += 1
    assert r.json()["state"] == state
    return rid, version
