"""Emulated department systems (公安 民政 卫健 人社 残联) answering from deterministic synthetic registries.

They stand in for the real departments behind the exchange: same shape of question and answer, configurable
latency and failure rate so tests can slow them down or make them fail. The demo persons (`common/demo.py`) are
listed explicitly, so the departments vouch for exactly the tags the demo gives them; any other ID number gets
answers drawn from its hash (stable, but synthetic). 公安 checks the name against the registration when one is
sent and says plainly when it does not match (`identity_match: false` with `identity_message`).
"""
from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass
from datetime import date

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from common.app import create_service_app
from common.auth import Principal, TokenVerifier, require_roles
from common.clock import Clock, age_on, get_clock
from common.errors import Problem
from common.settings import ServiceSettings
from common.validators import ResidentIdNumber  # the platform's rule: pattern, region, check character, birth date
from gateway.departments import push, sms, voice


class EmulatorSettings(ServiceSettings):
    service_name: str = "departments"
    emulator_latency_ms: int = 0
    emulator_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    emulator_seed: int = 0
    outbox_relay_enabled: bool = False


DEPARTMENTS = {
    "gongan": ("公安局", "identity and household registration"),
    "minzheng": ("民政局", "minimum-income (低保) and extreme-hardship (特困) status"),
    "weijian": ("卫健委", "health-check summary"),
    "renshe": ("人社局", "social insurance status"),
    "canlian": ("残联", "disability certificate"),
}


class PersonQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id_number: ResidentIdNumber = Field(examples=["11010519491231002X"])
    name: str | None = Field(default=None, min_length=1, max_length=50, examples=["赵敏"],
                             description="公安：送了姓名即核验姓名与身份证号是否一致 (identity check)")


@dataclass(frozen=True)
class Registered:
    """What the departments' registries hold about one person (the demo persons are listed explicitly)."""

    name: str
    residency_type: str = "户籍"          # 公安: 户籍 / 常住 / 流动人口
    dibao: bool = False                   # 民政: 最低生活保障
    tekun: bool = False                   # 民政: 特困供养
    low_income: bool = False              # 民政: 低收入家庭
    disability: tuple[str, int] | None = None  # 残联: (category, grade) of the certificate held


# The demo persons of `common/demo.py`, by ID number, agreeing with their special-group tags there (a test holds
# the two together): 低保 P7, 特困 P10, 低收入 P8, 残疾人证 P4; nobody else holds any of them.
DEMO_REGISTRY: dict[str, Registered] = {
    "110105198003120112": Registered("张伟"),
    "110105198307050221": Registered("李娜"),
    "110105193802140424": Registered("王秀英"),
    "110105195209090314": Registered("刘强", disability=("肢体", 2)),
    "110105199001010627": Registered("陈静", residency_type="常住"),
    "110105202306150510": Registered("杨洋", residency_type="常住"),
    "110105194703210823": Registered("赵敏", dibao=True),
    "110105197511300713": Registered("黄磊", residency_type="流动人口", low_income=True),
    "110105198808081026": Registered("周芳", residency_type="流动人口"),
    "110105196005200918": Registered("吴刚", tekun=True),
    "110105201209011223": Registered("徐丽"),
    "110105199512121118": Registered("孙浩", residency_type="常住"),
}
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华"


def _draw(id_number: str, salt: str) -> float:
    """A stable pseudo-random number per person and question: the same person always gets the same answer."""
    digest = hashlib.sha256(f"{salt}:{id_number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def registry_entry(id_number: str) -> Registered | None:
    """The registries' record of a person: the explicit demo entry, else one drawn from the ID number's hash
    (None: 公安 has no household registration for this number)."""
    if id_number in DEMO_REGISTRY:
        return DEMO_REGISTRY[id_number]
    if _draw(id_number, "reg") >= 0.97:
        return None
    n = int(_draw(id_number, "name") * len(_SURNAMES) * len(_GIVEN) ** 2)
    name = _SURNAMES[n % len(_SURNAMES)] + _GIVEN[(n // len(_SURNAMES)) % len(_GIVEN)]
    if _draw(id_number, "name2") < 0.5:
        name += _GIVEN[(n // (len(_SURNAMES) * len(_GIVEN))) % len(_GIVEN)]
    mz = _draw(id_number, "mz")
    has = _draw(id_number, "cl") < 0.07
    return Registered(name=name, residency_type="户籍" if _draw(id_number, "res") < 0.8 else "常住",
                      dibao=mz < 0.08, tekun=mz < 0.02, low_income=mz < 0.12,
                      disability=("肢体", 2) if has else None)


def _same_name(a: str, b: str) -> bool:
    def norm(v: str) -> str:
        return "".join(v.split()).replace("•", "·").replace("．", "·").replace(".", "·")
    return norm(a) == norm(b)


def birth_date(id_number: str) -> date:
    return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))


def answer(code: str, id_number: str, name: str | None = None, *, today: date) -> dict:
    """A department's answer about a person on `today`; for 公安, `name` (when sent) is checked against the
    registration."""
    age = age_on(birth_date(id_number), today)
    entry = registry_entry(id_number)
    if code == "gongan":
        out = {"registered": entry is not None, "hukou_division": id_number[:6],
               "residency_type": entry.residency_type if entry else None, "identity_match": None}
        if name is not None:
            if entry is None:
                out["identity_match"] = False
                out["identity_message"] = "身份核验未通过：未查询到该身份证号的户籍登记 " \
                                          "Identity not confirmed: no registration for this ID number"
            elif _same_name(name, entry.name):
                out["identity_match"] = True
                out["identity_message"] = "身份核验通过：姓名与身份证号一致 Identity confirmed: the name matches"
            else:
                out["identity_match"] = False
                out["identity_message"] = "身份核验未通过：姓名与身份证号不一致 " \
                                          "Identity does not match: the name differs from the registration"
        return out
    if code == "minzheng":
        if entry is None:
            return {"dibao": False, "tekun": False, "low_income": False}
        return {"dibao": entry.dibao, "tekun": entry.tekun, "low_income": entry.low_income}
    if code == "canlian":
        has = entry is not None and entry.disability is not None
        return {"certificate": has, "category": entry.disability[0] if has else None,
                "grade": entry.disability[1] if has else None}
    if code == "weijian":
        return {"last_check_year": 2025 if _draw(id_number, "wj") < 0.6 else None,
                "chronic_conditions": age >= 60 and _draw(id_number, "cc") < 0.4}
    if code == "renshe":
        return {"insured": _draw(id_number, "rs") < 0.92, "pension": age >= 60}
    raise KeyError(code)


router = APIRouter(tags=["departments 部门模拟"])


@router.get("/departments/v1", summary="部门目录 Emulated departments")
async def list_departments(principal: Principal = Depends(require_roles("system", "dept_staff", "ops"))):
    return [{"code": c, "name": n, "provides": p} for c, (n, p) in DEPARTMENTS.items()]


# Which member may ask is decided by the exchange (grants, checked at the gateway); the emulator only asks
# for a machine or staff token.
QUERY_ROLES = ("system", "dept_staff", "community_staff", "street_staff", "ops")


@router.post("/departments/{code}/v1/queries", summary="部门数据查询 Ask a department about a person")
async def query(code: str, body: PersonQuery, request: Request,
                principal: Principal = Depends(require_roles(*QUERY_ROLES)), clock: Clock = Depends(get_clock)):
    if code not in DEPARTMENTS:
        raise Problem(404, "department.not_found", ("没有这个部门", "Unknown department"))
    settings: EmulatorSettings = request.app.state.settings
    if settings.emulator_latency_ms:
        await asyncio.sleep(settings.emulator_latency_ms / 1000)
    if settings.emulator_failure_rate and request.app.state.rng.random() < settings.emulator_failure_rate:
        raise Problem(503, "department.unavailable", ("部门系统暂时无法应答", "The department system is unavailable"))
    return {"department": code, "department_name": DEPARTMENTS[code][0], "id_number": body.id_number,
            "data": answer(code, body.id_number, body.name, today=clock.today())}


def create_app(settings: EmulatorSettings | None = None, *, verifier: TokenVerifier | None = None,
               clock: Clock | None = None) -> FastAPI:
    settings = settings or EmulatorSettings()
    app = create_service_app(settings=settings, package=None, title="OneNet 部门系统模拟 Department emulators",
                             description="公安、民政、卫健、人社、残联与短信、语音外呼、应用推送平台的模拟接口。",
                             routers=[router, sms.router, voice.router, push.router],
                             verifier=verifier, clock=clock)
    app.state.rng = random.Random(settings.emulator_seed)
    sms.install(app)  # the SMS platform (短信平台), gateway/departments/sms.py
    voice.install(app)  # 语音外呼 and app push (notifications, svc_residents/notifications)
    push.install(app)
    return app
