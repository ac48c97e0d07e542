"""The call-out chain as declared data: who is called at each step, and the call-out's states and moves.

Step n calls `CHAIN[n % len(CHAIN)]`: the grid's workers first (voice + SMS + push at once), then whoever is on
duty in the roster at that moment; after the street's duty officer the chain starts again with the grid workers,
until someone acknowledges or the request is taken up in svc_services (accepted, cancelled …). A duty nobody
holds at that moment is recorded (`nobody_on_duty`) and the next one is called at once.
"""
from __future__ import annotations

CHAIN = ("grid_worker", "backup_worker", "community_duty", "street_duty")
CHANNELS = ("voice", "sms", "push")   # in parallel: an emergency does not wait for one channel to fail

STATES = ("calling", "acknowledged", "stopped")
# (state, action) → new state; nothing leaves `acknowledged` or `stopped`
TRANSITIONS = {
    ("calling", "call"): "calling",
    ("calling", "acknowledge"): "acknowledged",
    ("calling", "stop"): "stopped",       # the request left `submitted` in svc_services: someone took it up
}
# svc_services request states in which nobody has taken the emergency up yet
WAITING = frozenset({"submitted", "escalated"})
# who acknowledges for which duty, when the caller was not called by name
ROLE_DUTY = {"grid_worker": "grid_worker", "community_staff": "community_duty", "street_staff": "street_duty"}

assert all(s in STATES and to in STATES for (s, _a), to in TRANSITIONS.items())


def duty_at(step: int) -> str:
    return CHAIN[step % len(CHAIN)]


def move(state: str, action: str) -> str | None:
    """The state after `action`, or None when the table has no such move."""
    return TRANSITIONS.get((state, action))
