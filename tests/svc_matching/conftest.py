from __future__ import annotations

import pytest

STAFF = dict(role="community_staff", scopes=["community:110105001001"])
OPS = dict(role="ops")
USCC = ["52110105MA01AB125N", "52110105MA02CD3418", "52110105MA03EF568U"]
HOME = (39.9210, 116.4430)
GRID_XF, GRID_AK = "110105001001001", "110105001002001"   # 幸福一网格, 安康一网格
# persons of the register the tests use, as svc_residents' place feed would have sent them (p-1 … p-12 live in 幸福)
PERSONS = {f"p-{i}": GRID_XF for i in range(1, 13)}


@pytest.fixture
async def client(service_client):
    from datetime import datetime, timezone

    from common.clock import FrozenClock

    c = await service_client("svc_matching", offer_sweeper_enabled=False)
    c.app.state.clock = FrozenClock(datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc))  # Monday 09:00 Beijing
    await place_persons(c, PERSONS)
    return c


async def place_persons(client, persons: dict[str, str]) -> None:
    """Put persons into svc_matching's person-place replica (person id → grid), as the feed would."""
    from svc_matching.people.places import upsert_place

    now = client.app.state.clock.now()
    async with client.app.state.db.session() as s, s.begin():
        for pid, grid in persons.items():
            await upsert_place(s, pid, grid, grid[:12], now)


@pytest.fixture
def staff(auth):
    return auth(**STAFF)


async def make_org(client, headers, uscc=USCC[0], name="幸福家园养老服务中心", lat=HOME[0], lon=HOME[1]):
    r = await client.post("/matching/v1/organizations", headers=headers,
                          json={"name": name, "uscc": uscc, "community": "110105001001"})
    assert r.status_code == 201, r.text
    org = r.json()
    r = await client.post(f"/matching/v1/organizations/{org['id']}/locations", headers=headers,
                          json={"name": name + "服务点", "latitude": lat, "longitude": lon,
                                "place_code": "110105001001001", "address": "幸福路1号"})
    assert r.status_code == 201, r.text
    return org, r.json()


def service_body(org, loc, **kw):
    body = {"organization_id": org["id"], "name": "老年助餐", "categories": ["elderly_care"],
            "eligibility": ["elderly"], "minimum_age": 60, "location_ids": [loc["id"]],
            "schedules": [{"byday": "MO,TU,WE,TH,FR", "opens_at": "08:00", "closes_at": "18:00"}],
            "capacity": {"maximum": 2}}
    body.update(kw)
    return body
