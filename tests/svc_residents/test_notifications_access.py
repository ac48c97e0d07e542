"""Who may do what with notifications, every caller × every endpoint, written from the policy
(svc_residents/notifications/access.py, docs/adr/0017), never from what the code answers:

- one's own inbox (list, unread count, settings, stream): every signed-in person; the proxy reads the person's;
  member systems have none (403); another inbox's message answers 404 as an unknown one;
- a message's deliveries: its recipient, community and street staff over its community, ops; others 404;
- a templated send to P1 (幸福 A1): grid1, staff1, street1, ops; staff of elsewhere get the answer for nobody
  (422 recipient); residents, proxies, departments, providers, evaluators, systems 403;
- the notice feed: ops and the platform's services (svc_services); anyone else 403;
- staff contacts of 幸福: 幸福's and the street's staff, ops; 安康's staff 403 to write, 404 to read; others 403.
(/residents is outside tests/authz/test_matrix.py, as svc_residents' own matrix is test_access_matrix.py.)"""
from __future__ import annotations

import pytest

from svc_residents.notifications.service import notify
from tests.svc_residents.conftest import P, ROLES

HUMANS = [n for n in ROLES if n != "portal"]
EVERYONE = [*ROLES, "svc_services"]
SEND_OK = {"grid1", "staff1", "street1", "ops1"}
CONTACT_ADMINS = {"staff1", "street1", "ops1"}


@pytest.fixture
async def world(seeded, auth):
    app = seeded.app
    async with app.state.db.session() as s, s.begin():
        note = (await notify(s, recipient=f"person:{P('P1')}", template="request.claimed", event_key="authz",
                             variables={"number": "A1", "assignee": "陈磊"}, now=app.state.clock.now())).notification
    r = await seeded.put("/residents/v1/staff_contacts/gridx", headers=auth(**ROLES["staff1"]),
                         json={"role": "grid_worker", "scope": "grid:110105001001002"})
    assert r.status_code == 201
    return seeded, note.id


def headers(auth, name: str) -> dict[str, str]:
    if name == "svc_services":
        return auth(role="system", user="svc_services", member="svc_services")
    return auth(**ROLES[name])


def want(name: str, rule: str) -> int:
    if rule == "inbox":
        return 200 if name in HUMANS else 403
    if rule == "read_p1":
        return 200 if name == "resident1" else 404 if name in HUMANS else 403
    if rule == "deliveries_p1":
        return 200 if name in ("resident1", "staff1", "street1", "ops1") else 404
    if rule == "send_p1":
        return 201 if name in SEND_OK else 422 if name in ("grid3", "staff2") else 403
    if rule == "notice":
        return 200 if name in ("ops1", "svc_services") else 403
    if rule == "contact_write":
        return 200 if name in CONTACT_ADMINS else 403
    if rule == "contact_read":
        return 200 if name in CONTACT_ADMINS else 404 if name == "staff2" else 403
    raise KeyError(rule)


async def test_every_caller_on_every_endpoint(world, auth):
    c, mid = world
    stream = {"Accept": "text/event-stream"}
    calls = [
        ("inbox", "GET", "/residents/v1/notifications", {}),
        ("inbox", "GET", "/residents/v1/notifications/unread_count", {}),
        ("inbox", "GET", "/residents/v1/notifications/settings", {}),
        ("inbox", "PUT", "/residents/v1/notifications/settings", {"json": {"language": "zh"}}),
        ("inbox", "GET", "/residents/v1/notifications/stream", {"params": {"max_seconds": 0.01}, "headers": stream}),
        ("read_p1", "POST", f"/residents/v1/notifications/{mid}/read", {}),
        ("deliveries_p1", "GET", f"/residents/v1/notifications/{mid}/deliveries", {}),
        ("send_p1", "POST", "/residents/v1/notifications",
         {"json": {"recipient": f"person:{P('P1')}", "template": "verification.needs_resident",
                   "variables": {"field": "户籍"}}, "idempotent": True}),
        ("notice", "PUT", "/residents/v1/notices/authz-{name}", {"json": {"event": "request.claimed"}}),
        ("contact_write", "PUT", "/residents/v1/staff_contacts/{name}-x",
         {"json": {"role": "community_staff", "scope": "community:110105001001"}}),
        ("contact_read", "GET", "/residents/v1/staff_contacts/gridx", {}),
    ]
    problems = []
    for rule, method, url, kw in calls:
        for name in EVERYONE:
            kw2 = dict(kw)
            h = {**headers(auth, name), **kw2.pop("headers", {})}
            if kw2.pop("idempotent", False):
                h["Idempotency-Key"] = f"authz-{name}"
            r = await c.request(method, url.format(name=name), headers=h, **kw2)
            expected = want(name, rule)
            got = 200 if (r.status_code == 201 and expected == 200) else r.status_code  # a PUT that created
            if got != expected:
                problems.append(f"{method} {url} [{rule}] as {name}: {r.status_code}, want {expected} {r.text[:120]}")
            elif r.status_code >= 400:
                assert r.headers["content-type"].startswith("application/problem+json")
    # an unknown message answers as another inbox's
    r = await c.post("/residents/v1/notifications/00000000-0000-7000-8000-000000000000/read",
                     headers=headers(auth, "resident3"))
    assert r.status_code == 404 and r.json()["code"] == "notification.not_found"
    assert not problems, "\n".join(problems)
