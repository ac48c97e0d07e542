"""The emergency call-out's entry on svc_services (issue 26): rules and cells, written from the policy.

The policy (DESIGN "Identity and authorisation", ADR 0007, svc_services/emergency): the call-out is run by
svc_residents (it holds the rosters and the phones); its steps reach a request's timeline only through its feed,
and an acknowledgement accepts the request in the acknowledger's name, so only svc_residents' member (the
configured source) and ops write them; every person (resident, proxy, staff of any level), department, kiosk,
evaluator and provider is refused (403), whatever request the entry names.

svc_residents' own call-out, roster, device and broadcast endpoints are outside this matrix (its endpoint list
leaves /residents/ out); their per-role cells are in tests/svc_residents/test_callout*.py, test_devices*.py and
test_broadcasts*.py, written from the same policy.
"""
from __future__ import annotations

from tests.authz.policy import A1, Caller, Rule, allow
from tests.authz.test_matrix import Cell, World, fresh


def _source(c: Caller) -> bool:
    return c.ops or c.member == "svc_residents"


RULES = {
    "callout.entries": Rule("an emergency's call-out steps are written on its timeline only by the call-out's owner "
                            "(svc_residents' member, ONENET_CALLOUT_SOURCES) and ops: an acknowledgement accepts "
                            "the request in someone's name (403 for everyone else)", allow(_source)),
}


def entry(w: World, c: Caller) -> dict:
    return {"request_id": w.ids["emergency_id"], "kind": "call", "step": 0, "duty": "grid_worker",
            "targets": [{"user_id": "grid1", "name": "grid1"}], "channels": ["voice", "sms", "push"],
            "outcome": "called", "occurred_at": w.gw.state.clock.now().isoformat()}


CELLS = {
    "PUT /services/v1/emergency_log/{entry_id}": [Cell("callout.entries", fresh(
        "PUT", "/services/v1/emergency_log/{}", lambda w: w.uid("authz-callout"), entry))],
}

FILL = {"{entry_id}": "no-such-entry"}


def setup(w: World) -> None:
    req = w.call("resident1", "POST", "/services/v1/requests", json={
        "item_code": "YJ-HJ-001", "channel": "app", "description": "authz matrix: 一键呼叫", "location": {"grid": A1}})
    w.ids["emergency_id"] = req["id"]
