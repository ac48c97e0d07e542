"""The demo district's places, grid workers, households and persons (with special-group tags); idempotent."""
from __future__ import annotations

from common.auth import Principal
from common.clock import Clock
from common.db import Database
from common import demo
from svc_residents.households.models import Household
from svc_residents.households.schemas import HouseholdCreate
from svc_residents.households import service as households
from svc_residents.persons import service as persons
from svc_residents.persons.models import Person
from svc_residents.persons.schemas import PersonCreate, TagIn
from svc_residents.places import service as places
from svc_residents.places.models import Place
from svc_residents.places.schemas import PlaceCreate
from svc_residents.protection import FieldProtection

SEEDER = Principal(member="onenet-seed", user="seed", role="ops")
RESIDENCY = {"户籍": "registered", "常住": "resident", "流动人口": "floating"}
# Tags a department vouches for in the demo; the rest are entered by community staff.
DEPARTMENT_TAGS = {"disabled": "canlian", "dibao": "minzheng", "tekun": "minzheng", "low_income": "minzheng"}


async def seed_demo(db: Database, protection: FieldProtection, *, clock: Clock | None = None) -> None:
    now = (clock or Clock()).now()
    places_in_order = ([("district", demo.DISTRICT), ("street", demo.STREET)]
                       + [("community", c) for c in demo.COMMUNITIES] + [("grid", g) for g in demo.GRIDS]
                       + [("building", b) for b in demo.BUILDINGS])
    async with db.session() as session, session.begin():
        for level, p in places_in_order:
            if await session.get(Place, p["code"]) is None:
                await places.create_place(session, SEEDER, PlaceCreate(
                    code=p["code"], level=level, name=p["name"], parent_code=p.get("parent_code")), now=now)
        for g in demo.GRIDS:
            if not await places.grid_workers(session, g["code"]):
                await places.set_grid_workers(session, SEEDER, g["code"], [g["worker"]], now=now)
        for h in demo.HOUSEHOLDS:
            if await session.get(Household, h["id"]) is None:
                await households.create_household(session, SEEDER, HouseholdCreate(
                    address=h["address"], grid_code=h["building"][:15], building_code=h["building"]),
                    now=now, household_id=h["id"])
        heads = {h["head"] for h in demo.HOUSEHOLDS}
        for key, name, id_number, phone, hh, residency, tags in demo.PERSONS:
            pid = demo.person_id(key)
            if await session.get(Person, pid) is not None:
                continue
            tag_in = [TagIn(code=t, source="department" if t in DEPARTMENT_TAGS else "staff",
                            source_department=DEPARTMENT_TAGS.get(t), verified=t in DEPARTMENT_TAGS)
                      for t in tags]
            await persons.create_person(session, SEEDER, protection, PersonCreate(
                household_id=demo.household_id(hh), name=name, id_number=id_number, phone=phone,
                residency_type=RESIDENCY[residency], is_head=key in heads, tags=tag_in,
                preferred_channel="phone" if "elderly" in tags else "app",
                accessibility_needs=["large_font", "voice"] if "very_old" in tags else []), now=now, person_id=pid)
