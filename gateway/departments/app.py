"""Emulated department systems (公安 民政 卫健 人社 残联) answering from deterministic synthetic registries.

They stand in for the real departments behind the exchange: same shape of question and answer, configurable
latency and failure rate so tests can slow them down or make them fail.
"""
from __future__ import annotations

import asyncio
import hashlib
import random
from datetime import date

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from common.app import create_service_app
from common.auth import Principal, TokenVerifier, require_roles
from common.errors import Problem
from common.settings import ServiceSettings


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

    id_number: str = Field(pattern=r"^\d{17}[\dX]$", examples=["11010519491231002X"])
    name: str | None = Field(default=None, max_length=50)


def _draw(id_number: str, salt: str) -> float:
    """A stable pseudo-random number per person and question: the same person always gets the same answer."""
    digest = hashlib.sha256(f"{salt}:{id_number}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def answer(code: str, id_number: str) -> dict:
    birth = date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    age = (date.today() - birth).days // 365
    if code == "gongan":
        return {"registered": _draw(id_number, "reg") < 0.97, "hukou_division": id_number[:6],
                "residency_type": "户籍" if _draw(id_number, "res") < 0.8 else "常住"}
    if code == "minzheng":
        d = _draw(id_number, "mz")
        return {"dibao": d < 0.08, "tekun": d < 0.02, "low_income": d < 0.12}
    if code == "canlian":
        has = _draw(id_number, "cl") < 0.07
        return {"certificate": has, "category": "肢体" if has else None, "grade": 2 if has else None}
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
                principal: Principal = Depends(require_roles(*QUERY_ROLES))):
    if code not in DEPARTMENTS:
        raise Problem(404, "department.not_found", ("没有这个部门", "Unknown department"))
    settings: EmulatorSettings = request.app.state.settings
    if settings.emulator_latency_ms:
        await asyncio.sleep(settings.emulator_latency_ms / 1000)
    if settings.emulator_failure_rate and request.app.state.rng.random() < settings.emulator_failure_rate:
        raise Problem(503, "department.unavailable", ("部门系统暂时无法应答", "The department system is unavailable"))
    return {"department": code, "department_name": DEPARTMENTS[code][0], "id_number": body.id_number,
            "data": answer(code, body.id_number)}


def create_app(settings: EmulatorSettings | None = None, *, verifier: TokenVerifier | None = None) -> FastAPI:
    settings = settings or EmulatorSettings()
    app = create_service_app(settings=settings, package=None, title="OneNet 部门系统模拟 Department emulators",
                             description="公安、民政、卫健、人社、残联的模拟接口。", routers=[router], verifier=verifier)
    app.state.rng = random.Random(settings.emulator_seed)
    return app
