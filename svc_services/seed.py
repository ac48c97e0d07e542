"""Demo data for svc_services: the catalogue from common/demo.py, the demo grids, and a few requests for demo
persons (deterministic ids, so running it twice changes nothing)."""
from __future__ import annotations

from typing import Any

from common.auth import Principal
from common.clock import Clock
from common.db import Database
from common.validators import parse_resident_id
from common.demo import CATALOGUE_ITEMS, GRIDS, HOUSEHOLDS, PERSONS, demo_id, household_id, person_id
from svc_services.catalogue import service as catalogue
from svc_services.catalogue.models import CatalogueItem
from svc_services.catalogue.schemas import ItemCreate
from svc_services.deliberation.models import Elector
from svc_services.grids.models import ServiceGrid
from svc_services.grids.service import upsert_grid
from svc_services.requesters.models import RequesterProfile
from svc_services.requesters.service import upsert_profile
from svc_services.requests import service as requests
from svc_services.requests.group_commit import IntakeWriter
from svc_services.requests.intake import submit_request
from svc_services.requests.models import ServiceRequest
from svc_services.requests.schemas import RequestCreate, TransitionIn
from svc_services.settings import ServicesSettings

SEEDER = Principal(member="svc_services", user="seed", role="ops")

# What common/demo.py does not say about each item: attributes, materials, channels, kiosk instant flag.
EXTRAS: dict[str, dict[str, Any]] = {
    "YL-ZC-001": {
        "attributes": [
            {"code": "meal_time", "datatype": "singlevaluelist", "description": "送餐时段", "required": True,
             "values": [{"key": "lunch", "name": "午餐"}, {"key": "dinner", "name": "晚餐"}]},
            {"code": "diet", "datatype": "multivaluelist", "description": "饮食要求",
             "values": [{"key": "soft", "name": "软食"}, {"key": "low_salt", "name": "低盐"},
                        {"key": "low_sugar", "name": "低糖"}]},
            {"code": "portions", "datatype": "number", "description": "每餐份数"},
        ],
        "materials": [{"code": "dibao_certificate", "name": "低保或特困证明（享受助餐补贴时）", "source": "exchange",
                       "department": "minzheng", "required": False}],
    },
    "SH-WX-001": {
        "attributes": [
            {"code": "appliance", "datatype": "singlevaluelist", "description": "维修类别", "required": True,
             "values": [{"key": "plumbing", "name": "水管"}, {"key": "electric", "name": "电路"},
                        {"key": "appliance", "name": "家电"}, {"key": "cleaning", "name": "家政保洁"}]},
            {"code": "visit_time", "datatype": "datetime", "description": "希望上门时间"},
        ],
    },
    "YJ-HJ-001": {"channels": ["app", "kiosk", "phone", "iot", "api"]},
    "ZW-SB-001": {
        "kiosk_instant": True, "channels": ["app", "kiosk", "counter"],
        "appointment_required": True,  # 服务预约: at 幸福's counter, slots in svc_matching (ZW-SB-001's counter)
        "materials": [{"code": "hukou", "name": "户籍信息", "source": "exchange", "department": "gongan"},
                      {"code": "insurance_record", "name": "社保参保记录", "source": "exchange",
                       "department": "renshe"}],
        "attributes": [{"code": "business", "datatype": "singlevaluelist", "description": "办理业务", "required": True,
                        "values": [{"key": "enrol", "name": "参保登记"}, {"key": "query", "name": "参保查询"},
                                   {"key": "transfer", "name": "关系转移"}]}],
    },
    "WG-SJ-001": {
        "personal": False,  # reports of public matters (a street light, litter): descriptions may be published
        "attributes": [{"code": "event_type", "datatype": "singlevaluelist", "description": "事件类型",
                        "required": True,
                        "values": [{"key": "environment", "name": "环境卫生"}, {"key": "facility", "name": "公共设施"},
                                   {"key": "safety", "name": "安全隐患"}]}],
    },
    "XL-SD-001": {"channels": ["app", "counter", "phone"]},
}

# key, item, channel, acting principal kind, person key, grid, description, attributes, actions taken by staff
DEMO_REQUESTS = [
    ("R1", "SH-WX-001", "app", "resident", "P1", "110105001001001", "厨房水管漏水，需要上门维修。",
     {"appliance": "plumbing"}, ["accept"]),
    ("R2", "YL-ZC-001", "kiosk", "proxy", "P3", "110105001001001", "独居老人申请工作日午餐送餐。",
     {"meal_time": "lunch", "diet": ["soft", "low_salt"]}, []),
    ("R3", "WG-SJ-001", "grid_patrol", "grid", None, "110105001001001", "3号楼前路灯不亮。",
     {"event_type": "facility"}, ["accept", "start"]),
]


def _principal(kind: str, person_key: str | None) -> Principal:
    if kind == "resident":
        return Principal(member="portal", user="resident1", role="resident",
                         scopes=(f"person:{person_id(person_key)}",))
    if kind == "proxy":
        return Principal(member="kiosk", user="proxy1", role="proxy", scopes=("community:110105001001",),
                         acting_for=person_id(person_key), claims={"acting_actions": ["requests.submit"]})
    return Principal(member="portal", user="grid1", role="grid_worker", scopes=("grid:110105001001001",))


async def seed_demo(db: Database, settings: ServicesSettings | None = None, clock: Clock | None = None) -> None:
    settings = settings or ServicesSettings()
    clock = clock or Clock()
    async with db.session() as session, session.begin():
        for g in GRIDS:
            if await session.get(ServiceGrid, g["code"]) is None:
                lat, lon = g["center"]
                await upsert_grid(session, g["code"], g["name"], lat, lon, clock)
        for item in CATALOGUE_ITEMS:
            if await session.get(CatalogueItem, item["code"]) is not None:
                continue
            body = ItemCreate(code=item["code"], name=item["name"], category=item["category"], tier=item["tier"],
                              department=item["department"], response_hours=item["response_hours"],
                              resolution_hours=item["resolution_hours"], working_hours=item["working_hours"],
                              emergency=item["emergency"], **EXTRAS.get(item["code"], {}))
            await catalogue.create_item(session, SEEDER, body, clock)
        # the requester-profile replica of the demo persons (what svc_residents' feed would send: birth date derived
        # from the ID number, group tags; nothing else), so the demo requests' events carry age and groups
        for key, _name, id_number, _phone, _hh, _residency, tags in PERSONS:
            pid = person_id(key)
            if await session.get(RequesterProfile, pid) is None:
                await upsert_profile(session, pid, parse_resident_id(id_number).birth_date,
                                     [{"code": t, "valid_until": None} for t in tags], clock.now())
            # and the deliberation electorate (where they live, which household, its head), as the feed would
            hh = next(h for h in HOUSEHOLDS if h["id"] == household_id(_hh))
            if await session.get(Elector, pid) is None:
                session.add(Elector(person_id=pid, building_code=hh["building"], household_id=hh["id"],
                                    household_head=hh["head"] == key, removed=False, updated_at=clock.now(),
                                    birth_date=parse_resident_id(id_number).birth_date))
    # the demo requests are submitted as any other (the endpoint's function, its one writer), then moved; a seed
    # stopped in between goes on from the request's version next time
    intake = IntakeWriter(db, settings)
    try:
        for key, item, channel, kind, person_key, grid, text, attrs, actions in DEMO_REQUESTS:
            rid = demo_id("request", key)
            async with db.session() as session:
                req = await session.get(ServiceRequest, rid)
            if req is None:
                body = RequestCreate(item_code=item, channel=channel, description=text, attributes=attrs,
                                     location={"grid": grid})
                await submit_request(intake, _principal(kind, person_key), body, clock, key=None, request_id=rid)
                version = 1
            else:
                version = req.version
            staff = Principal(member="portal", user="staff1", role="community_staff",
                              scopes=("community:110105001001",))
            for action in actions[version - 1:]:
                async with db.session() as session, session.begin():
                    await requests.transition(session, staff, rid, TransitionIn(action=action, version=version),
                                              if_match=None, clock=clock, settings=settings)
                version += 1
    finally:
        await intake.close()
