"""A department system downloads a request's files only under an exchange grant (issue 27: "a department only
under a grant"), written from the policy:

- a department's own system (its client-credentials token: member `dept-minzheng`) reads a request's material
  only while it holds a live grant on `services.materials` (a photo: `services.request_photos`) in the exchange's
  registry, and only for a request dispatched to that department; the read is in the person's access log, naming
  the department and the grant;
- without a grant, with a revoked or expired one, or with a grant on the other kind of file: 403 problem, nothing
  logged as read; another department's system holding the grant: 404 as for an unknown file;
- a registry that cannot be read refuses the department (503), never lets it through;
- residents and staff read as before, without the registry; other member systems (the kiosk) stay refused.
"""
from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from common.grants import ExchangeGrants
from common.http_client import ServiceClient
from svc_services.requests.models import ServiceRequest
from tests.svc_services.conftest import RES1, STAFF
from tests.svc_services.files import files_client, jpeg_with_gps, pdf  # noqa: F401
from tests.svc_services.test_attachments import post_photo
from tests.svc_services.test_attachments_materials import accepted_meal, events, put_material

MZ_SYSTEM = dict(role="dept_staff", user="dept-minzheng", member="dept-minzheng", scopes=["dept:minzheng"])
GA_SYSTEM = dict(role="dept_staff", user="dept-gongan", member="dept-gongan", scopes=["dept:gongan"])
KIOSK = dict(role="system", user="kiosk", member="kiosk")
CONTENT = "/services/v1/attachments/{}/content"


@pytest.fixture
def store_settings(tmp_path):  # one store is enough here: the rule is above the store
    return {"storage_backend": "local", "storage_dir": tmp_path / "objects"}


@pytest.fixture
def c(files_client):  # noqa: F811 - the fixture, imported above
    return files_client


class Registry:
    """The exchange's grant registry as svc_services reads it (`GET /exchange/v1/grants?side=owner`)."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self.down = False

    def grant(self, consumer="dept-minzheng", resource="services.materials", *, live=True, expires_at=None,
              id="g-1") -> None:
        self.items.append({"id": id, "resource": resource, "consumer": consumer, "live": live, "fields": None,
                           "purpose": "低保复核 assistance review",
                           "expires_at": expires_at.isoformat() if expires_at else None})

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503)
        assert request.url.path == "/exchange/v1/grants" and request.url.params["side"] == "owner"
        resource = request.url.params["resource"]
        return httpx.Response(200, json={"items": [g for g in self.items if g["resource"] == resource],
                                         "next_cursor": None})


@pytest.fixture
def registry(c) -> Registry:
    reg = Registry()

    async def token() -> str:
        return "svc-services-token"

    client = ServiceClient("exchange", "http://gw", transport=httpx.MockTransport(reg.handle), retries=0, backoff=0)
    c.app.state.grant_source = ExchangeGrants(client, token, ttl_seconds=0)
    return reg


async def dispatched_files(c, auth, upstreams) -> tuple[str, str, str]:
    """A request of P1 with an uploaded ID card copy and a photo, dispatched to 民政."""
    rid, _ = await accepted_meal(c, auth, upstreams)
    m = await put_material(c, auth, rid, pdf())
    assert m.status_code == 201, m.text
    p = await post_photo(c, auth, rid, jpeg_with_gps())
    assert p.status_code == 201, p.text
    async with c.app.state.db.session() as s, s.begin():
        await s.execute(update(ServiceRequest).where(ServiceRequest.id == rid)
                        .values(assignee_kind="department", assignee_id="minzheng"))
    return rid, m.json()["attachment_id"], p.json()["id"]


async def reads(c) -> list:
    return await events(c, "person_access.")


def refused(r, status=403, code="exchange.no_grant", resource="services.materials") -> bool:
    body = r.json()
    return (r.status_code == status and r.headers["content-type"].startswith("application/problem+json")
            and body["code"] == code and (resource is None or body.get("resource") == resource))


async def test_department_reads_a_material_only_under_a_live_grant(c, auth, upstreams, registry):
    rid, material, photo = await dispatched_files(c, auth, upstreams)
    now = c.app.state.clock.now()
    # no grant at all
    r = await c.get(CONTENT.format(material), headers=auth(**MZ_SYSTEM))
    assert refused(r), r.text
    # a revoked grant (not live in the registry), an expired one, a grant on photos only
    registry.grant(live=False, id="g-revoked")
    registry.grant(expires_at=now - timedelta(minutes=1), id="g-expired", consumer="dept-minzheng")
    assert refused(await c.get(CONTENT.format(material), headers=auth(**MZ_SYSTEM)))
    registry.items = [{**registry.items[1]}]
    assert refused(await c.get(CONTENT.format(material), headers=auth(**MZ_SYSTEM)))
    registry.items = []
    registry.grant(resource="services.request_photos", id="g-photos")
    assert refused(await c.get(CONTENT.format(material), headers=auth(**MZ_SYSTEM)))
    got = await c.get(CONTENT.format(photo), headers=auth(**MZ_SYSTEM))  # the photo it is granted
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert await reads(c) == []  # nothing logged as read
    # the live grant on materials: read, and logged naming the department and the grant
    registry.grant(expires_at=now + timedelta(days=30), id="g-materials")
    got = await c.get(CONTENT.format(material), headers=auth(**MZ_SYSTEM))
    assert got.status_code == 200 and got.content == pdf() and got.headers["cache-control"] == "private, no-store"
    [row] = await reads(c)
    assert row.type == "person_access.material_read" and row.data["member"] == "dept-minzheng"
    assert row.data["user_id"] == "dept-minzheng" and row.data["fields"] == ["material:id_card_copy"]
    assert {k: row.data["extra"][k] for k in ("department", "grant_id", "grant_resource", "service_request")} == {
        "department": "minzheng", "grant_id": "g-materials", "grant_resource": "services.materials",
        "service_request": rid}
    # another department's system holding the same grant: the request is not its own
    registry.grant(consumer="dept-gongan", id="g-ga")
    assert (await c.get(CONTENT.format(material), headers=auth(**GA_SYSTEM))).status_code == 404
    # the grant revoked in the registry: refused at once (no cache here), nothing more logged
    registry.items = [g for g in registry.items if g["id"] != "g-materials"]
    assert refused(await c.get(CONTENT.format(material), headers=auth(**MZ_SYSTEM)))
    assert len(await reads(c)) == 1


async def test_department_without_dispatch_and_registry_down(c, auth, upstreams, registry):
    rid, material, photo = await dispatched_files(c, auth, upstreams)
    registry.grant()
    async with c.app.state.db.session() as s, s.begin():  # handed back: no longer the department's request
        await s.execute(update(ServiceRequest).where(ServiceRequest.id == rid).values(assignee_kind=None,
                                                                                       assignee_id=None))
    assert (await c.get(CONTENT.format(material), headers=auth(**MZ_SYSTEM))).status_code == 404
    # the registry cannot be read: the department is refused (fail closed), residents and staff are not affected
    registry.down = True
    assert refused(await c.get(CONTENT.format(material), headers=auth(**MZ_SYSTEM)), 503,
                   "exchange.grants_unavailable", None)
    for who in (RES1, STAFF):
        for aid in (material, photo):
            assert (await c.get(CONTENT.format(aid), headers=auth(**who))).status_code == 200
    # other member systems are no department: refused whatever the registry says
    r = await c.get(CONTENT.format(photo), headers=auth(**KIOSK))
    assert refused(r, 403, "attachment.system_forbidden", None), r.text
    logged = await reads(c)
    assert [e.data["user_id"] for e in logged] == ["resident1", "staff1"]
    assert all("grant_id" not in e.data["extra"] for e in logged)


async def test_without_exchange_credentials_no_department_reads(c, auth, upstreams):
    """The app as configured without client credentials: it cannot ask the registry, so no grant applies."""
    _, material, _ = await dispatched_files(c, auth, upstreams)
    r = await c.get(CONTENT.format(material), headers=auth(**MZ_SYSTEM))
    assert refused(r, 403, "exchange.grants_unconfigured"), r.text
    assert "诉求服务" in r.json()["detail"] and await reads(c) == []
