"""The demo district every service seeds on first start, in one place so ids agree across databases.

One street, two communities, four grids, buildings, households, persons (with special groups), catalogue
items, providers and volunteers. Ids are deterministic (UUIDv5) so seeds are idempotent and cross-reference.
"""
from __future__ import annotations

import uuid

_NS = uuid.UUID("6f1c1d2e-6a4b-4f4e-9a51-0e4e6e7e0b01")


def demo_id(kind: str, key: str) -> str:
    return str(uuid.uuid5(_NS, f"{kind}:{key}"))


DISTRICT = {"code": "110105", "name": "朝阳区"}
STREET = {"code": "110105001", "name": "和平街道", "parent_code": "110105"}
COMMUNITIES = [
    {"code": "110105001001", "name": "幸福社区", "parent_code": "110105001"},
    {"code": "110105001002", "name": "安康社区", "parent_code": "110105001"},
]
GRIDS = [
    {"code": "110105001001001", "name": "幸福一网格", "parent_code": "110105001001", "worker": "grid1",
     "center": (39.9210, 116.4430)},
    {"code": "110105001001002", "name": "幸福二网格", "parent_code": "110105001001", "worker": "grid2",
     "center": (39.9230, 116.4460)},
    {"code": "110105001002001", "name": "安康一网格", "parent_code": "110105001002", "worker": "grid3",
     "center": (39.9180, 116.4510)},
    {"code": "110105001002002", "name": "安康二网格", "parent_code": "110105001002", "worker": "grid4",
     "center": (39.9160, 116.4540)},
]
BUILDINGS = [
    {"code": g["code"] + f"{n:03d}", "name": f"{g['name']}{n}号楼", "parent_code": g["code"]}
    for g in GRIDS for n in (1, 2)
]

HOUSEHOLDS = [
    {"id": demo_id("household", "1"), "building": "110105001001001001", "address": "和平街道幸福路1号楼101",
     "head": "P1"},
    {"id": demo_id("household", "2"), "building": "110105001001001002", "address": "和平街道幸福路2号楼202",
     "head": "P3"},
    {"id": demo_id("household", "3"), "building": "110105001001002001", "address": "和平街道幸福路3号楼303",
     "head": "P4"},
    {"id": demo_id("household", "4"), "building": "110105001002001001", "address": "和平街道安康路1号楼101",
     "head": "P7"},
    {"id": demo_id("household", "5"), "building": "110105001002002001", "address": "和平街道安康路5号楼502",
     "head": "P8"},
    {"id": demo_id("household", "6"), "building": "110105001002002002", "address": "和平街道安康路6号楼601",
     "head": "P10"},
]

# key, name, ID number (valid GB 11643), phone, household key, residency, special-group tags
PERSONS = [
    ("P1", "张伟", "110105198003120112", "13800010001", "1", "户籍", ["dual_earner"]),
    ("P2", "李娜", "110105198307050221", "13800010002", "1", "户籍", ["dual_earner"]),
    ("P3", "王秀英", "110105193802140424", "13800010003", "2", "户籍", ["elderly", "living_alone", "very_old"]),
    ("P4", "刘强", "110105195209090314", "13800010004", "3", "户籍", ["elderly", "disabled"]),
    ("P5", "陈静", "110105199001010627", "13800010005", "3", "常住", []),
    ("P6", "杨洋", "110105202306150510", "13800010006", "3", "常住", ["infant"]),
    ("P7", "赵敏", "110105194703210823", "13800010007", "4", "户籍", ["elderly", "very_old", "dibao"]),
    ("P8", "黄磊", "110105197511300713", "13800010008", "5", "流动人口", ["low_income"]),
    ("P9", "周芳", "110105198808081026", "13800010009", "5", "流动人口", []),
    ("P10", "吴刚", "110105196005200918", "13800010010", "6", "户籍", ["elderly", "tekun"]),
    ("P11", "徐丽", "110105201209011223", "13800010011", "6", "户籍", ["left_behind_child"]),
    ("P12", "孙浩", "110105199512121118", "13800010012", "5", "常住", []),
]


def person_id(key: str) -> str:
    return demo_id("person", key)


def household_id(key: str) -> str:
    return demo_id("household", key)


DEMO_PASSWORD = "onenet-demo-2026"
# The demo ops1's TOTP authenticator (ops signs in with a second factor): `onenet totp ops1` prints its current
# code (gateway/accounts/seed.py), as the test harness computes it (tests/signin.py). Demo data only, like the password.
DEMO_TOTP_SECRETS = {"ops1": "ONENETDEMOOPSTOTPSECRET234567ABC"}

# username, display name, role, scopes, acting_for (person key)
DEMO_USERS = [
    {"username": "resident1", "display_name": "张伟（居民）", "role": "resident",
     "scopes": [f"person:{person_id('P1')}", f"household:{household_id('1')}"]},
    {"username": "resident3", "display_name": "王秀英（独居老人）", "role": "resident",
     "scopes": [f"person:{person_id('P3')}", f"household:{household_id('2')}"]},
    {"username": "proxy1", "display_name": "刘芳（数字助老员，代办王秀英）", "role": "proxy",
     "scopes": ["community:110105001001"], "acting_for": person_id("P3")},
    {"username": "grid1", "display_name": "陈磊（幸福一网格网格员）", "role": "grid_worker",
     "scopes": ["grid:110105001001001"]},
    {"username": "grid3", "display_name": "林霞（安康一网格网格员）", "role": "grid_worker",
     "scopes": ["grid:110105001002001"]},
    {"username": "staff1", "display_name": "周敏（幸福社区社工）", "role": "community_staff",
     "scopes": ["community:110105001001"]},
    {"username": "staff2", "display_name": "郑洁（安康社区社工）", "role": "community_staff",
     "scopes": ["community:110105001002"]},
    {"username": "street1", "display_name": "吴涛（和平街道）", "role": "street_staff", "scopes": ["street:110105001"]},
    {"username": "dept_mz", "display_name": "民政局工作人员", "role": "dept_staff", "scopes": ["dept:minzheng"]},
    {"username": "provider1", "display_name": "幸福家园养老服务中心", "role": "provider",
     "scopes": [f"provider:{demo_id('organization', 'O1')}"]},
    {"username": "evaluator1", "display_name": "第三方评估机构", "role": "evaluator", "scopes": ["district:110105"]},
    {"username": "ops1", "display_name": "平台运维", "role": "ops", "scopes": []},
]

# client apps and department systems that are members of the exchange from the start
DEMO_MEMBERS = [
    {"code": "kiosk", "name": "自助服务一体机", "kind": "app", "role": "system", "scopes": []},
    {"code": "dept-gongan", "name": "区公安分局", "kind": "department", "role": "dept_staff", "scopes": ["dept:gongan"]},
    {"code": "dept-minzheng", "name": "区民政局", "kind": "department", "role": "dept_staff", "scopes": ["dept:minzheng"]},
    {"code": "dept-weijian", "name": "区卫健委", "kind": "department", "role": "dept_staff", "scopes": ["dept:weijian"]},
    {"code": "dept-renshe", "name": "区人社局", "kind": "department", "role": "dept_staff", "scopes": ["dept:renshe"]},
    {"code": "dept-canlian", "name": "区残联", "kind": "department", "role": "dept_staff", "scopes": ["dept:canlian"]},
]

# service catalogue items (svc_services)
CATALOGUE_ITEMS = [
    {"code": "YL-ZC-001", "name": "老年助餐", "category": "elderly_care", "tier": "basic", "department": "minzheng",
     "response_hours": 12, "resolution_hours": 48, "working_hours": True, "emergency": False},
    {"code": "SH-WX-001", "name": "家电家政维修", "category": "life_service", "tier": "featured",
     "department": "community", "response_hours": 12, "resolution_hours": 72, "working_hours": True, "emergency": False},
    {"code": "YJ-HJ-001", "name": "一键呼叫（紧急求助）", "category": "emergency", "tier": "basic",
     "department": "community", "response_hours": 0, "resolution_hours": 2, "working_hours": False, "emergency": True},
    {"code": "ZW-SB-001", "name": "社保参保信息办理", "category": "government", "tier": "basic", "department": "renshe",
     "response_hours": 24, "resolution_hours": 72, "working_hours": True, "emergency": False},
    {"code": "WG-SJ-001", "name": "网格事件上报（环境、设施）", "category": "grid_event", "tier": "basic",
     "department": "community", "response_hours": 12, "resolution_hours": 48, "working_hours": False,
     "emergency": False},
    {"code": "XL-SD-001", "name": "心理疏导", "category": "counselling", "tier": "personalised",
     "department": "weijian", "response_hours": 24, "resolution_hours": 120, "working_hours": True, "emergency": False},
]

# resource providers (svc_matching): key, name, USCC (valid GB 32100), categories, capacity per week, location
ORGANIZATIONS = [
    ("O1", "幸福家园养老服务中心", "52110105MA01AB125N", ["elderly_care", "counselling"], 40, (39.9215, 116.4440)),
    ("O2", "安康便民维修服务社", "52110105MA02CD3418", ["life_service"], 25, (39.9170, 116.4520)),
    ("O3", "阳光心理咨询工作室", "52110105MA03EF568U", ["counselling"], 10, (39.9200, 116.4480)),
]

# volunteers (svc_matching): person key, skills, max concurrent load
VOLUNTEERS = [
    ("P5", ["elderly_care", "life_service"], 3),
    ("P9", ["counselling", "elderly_care"], 2),
    ("P12", ["life_service"], 4),
]
