"""Demo data for svc_matching: the organisations (with a service each), the persons' places (what svc_residents'
place feed would send), the volunteers of `common/demo.py`, 幸福's bookable activity room and an activity.

Idempotent: ids are the demo's deterministic UUIDv5, and anything already present is left alone.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta

from common.auth import Principal
from common.clock import SHANGHAI, Clock
from common.db import Database
from common.demo import GRIDS, HOUSEHOLDS, ORGANIZATIONS, PERSONS, VOLUNTEERS, demo_id, person_id
from svc_matching.activities import service as activities
from svc_matching.activities.models import Activity
from svc_matching.activities.schemas import ActivityCreate
from svc_matching.bookings import resources as bookable
from svc_matching.bookings.models import BookableResource
from svc_matching.bookings.schemas import ResourceCreate
from svc_matching.directory import service as directory
from svc_matching.directory.models import Location, Organization, Service
from svc_matching.directory.schemas import CapacityIn, LocationCreate, OrganizationCreate, ScheduleIn, ServiceCreate
from svc_matching.people import service as people
from svc_matching.people.models import PersonPlace, Volunteer
from svc_matching.people.places import upsert_place
from svc_matching.people.schemas import VolunteerCreate, WindowIn

SEEDER = Principal(member="onenet-seed", user="seed", role="ops")
COMMUNITY = "110105001001"


def _grid_of_person(key: str) -> dict:
    household = next(p[4] for p in PERSONS if p[0] == key)
    building = next(h["building"] for h in HOUSEHOLDS if h["id"] == demo_id("household", household))
    return next(g for g in GRIDS if g["code"] == building[:15])


async def seed_demo(db: Database, *, clock: Clock | None = None) -> None:
    now = (clock or Clock()).now()
    async with db.session() as session, session.begin():
        for key, name, uscc, categories, capacity, (lat, lon) in ORGANIZATIONS:
            org_id, loc_id, svc_id = (demo_id(kind, key) for kind in ("organization", "location", "service"))
            if await session.get(Organization, org_id) is None:
                await directory.create_organization(session, SEEDER, OrganizationCreate(
                    name=name, uscc=uscc, community=COMMUNITY, legal_status="社会服务机构"), now=now, org_id=org_id)
            if await session.get(Location, loc_id) is None:
                await directory.create_location(session, org_id, LocationCreate(
                    name=f"{name}服务点", latitude=lat, longitude=lon, address=f"和平街道 {name}"),
                    now=now, location_id=loc_id)
            if await session.get(Service, svc_id) is None:
                await directory.create_service(session, ServiceCreate(
                    organization_id=org_id, name=f"{name}上门服务", categories=list(categories),
                    description="社区资源清单演示数据", service_area_radius_m=3000, location_ids=[loc_id],
                    schedules=[ScheduleIn(byday="MO,TU,WE,TH,FR", opens_at="08:00", closes_at="18:00")],
                    capacity=CapacityIn(maximum=capacity, unit="人次/周")), now=now, service_id=svc_id)
        for key, *_ in PERSONS:
            if await session.get(PersonPlace, person_id(key)) is None:
                grid = _grid_of_person(key)
                await upsert_place(session, person_id(key), grid["code"], grid["parent_code"], now)
        for key, skills, max_load in VOLUNTEERS:
            vol_id = demo_id("volunteer", key)
            if await session.get(Volunteer, vol_id) is not None:
                continue
            grid = _grid_of_person(key)
            name = next(p[1] for p in PERSONS if p[0] == key)
            await people.create_volunteer(session, SEEDER, VolunteerCreate(
                person_id=person_id(key), name=name, skills=list(skills), max_load=max_load,
                availability=[WindowIn(byday="SA,SU", opens_at="09:00", closes_at="17:00"),
                              WindowIn(byday="MO,TU,WE,TH,FR", opens_at="18:00", closes_at="21:00")],
                latitude=grid["center"][0], longitude=grid["center"][1], place_code=grid["code"],
                service_radius_m=2000), now, volunteer_id=vol_id)
        await _seed_bookings(session, now)


ROOM = demo_id("bookable", "XF-activity-room")
COUNTER = demo_id("bookable", "XF-social-security-counter")
ACTIVITY = demo_id("activity", "XF-smartphone-class")


async def _seed_bookings(session, now: datetime) -> None:
    """幸福社区活动室 (residents of 幸福 and staff book it, one booking an hour, three a week per person), 幸福's
    social-security counter (half-hour appointments for requests of ZW-SB-001, two at a time) and a
    smartphone class for the elderly three days after the first seeding (积分 on check-in)."""
    if await session.get(BookableResource, ROOM) is None:
        await bookable.create_resource(session, SEEDER, ResourceCreate(
            name="幸福社区活动室", kind="activity_room", place_code=COMMUNITY,
            opening_hours={"workday": ["09:00-12:00", "14:00-18:00"], "weekend": ["09:00-12:00", "14:00-17:00"],
                           "holiday": ["09:00-12:00"]},
            slot_minutes=60, capacity=1, bookers=["resident", "staff"], advance_days=14, weekly_limit=3),
            now=now, resource_id=ROOM)
    if await session.get(BookableResource, COUNTER) is None:  # 服务预约: the counter's slots for ZW-SB-001 (社保办理)
        await bookable.create_resource(session, SEEDER, ResourceCreate(
            name="幸福社区社保服务窗口", kind="counter", place_code=COMMUNITY,
            opening_hours={"workday": ["09:00-12:00", "14:00-17:00"]}, slot_minutes=30, capacity=2,
            bookers=["resident", "staff"], advance_days=14, weekly_limit=2, catalogue_item_code="ZW-SB-001"),
            now=now, resource_id=COUNTER)
    if await session.get(Activity, ACTIVITY) is None:
        day = now.astimezone(SHANGHAI).date() + timedelta(days=3)
        start = datetime.combine(day, time(9, 30), SHANGHAI)
        await activities.create_activity(session, SEEDER, ActivityCreate(
            title="老年人智能手机课堂", category="education", organiser_kind="community", place_code=COMMUNITY,
            venue_resource_id=ROOM, venue="幸福社区活动室", starts_at=start, ends_at=start + timedelta(hours=1, minutes=30),
            capacity=20, min_age=60, points=5, description="手把手教用健康码、挂号、视频通话"), now=now, activity_id=ACTIVITY)
