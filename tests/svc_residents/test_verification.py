"""Once-only verification through the exchange (stub departments via httpx.MockTransport): tags recorded with
source and time, a record per department, retryable pending / refused states, no silent overwrite of staff values."""
from __future__ import annotations

import json

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from common.http_client import CircuitBreaker, ServiceClient
from deploy import demo
from tests.svc_residents.conftest import P

URL = "/residents/v1/persons/{}/verifications"
ID = {key: number for key, _, number, *_ in demo.PERSONS}
SERVICE_TOKEN = "svc-residents-token"


def data_for(code: str) -> dict:
    return {"gongan": {"registered": True, "hukou_division": "110105", "residency_type": "户籍"},
            "minzheng": {"dibao": True, "tekun": False, "low_income": True},
            "canlian": {"certificate": False, "category": None, "grade": None},
            "weijian": {"last_check_year": 2025, "chronic_conditions": False},
            "renshe": {"insured": True, "pension": False}}[code]


class Departments:
    """The gateway + emulators as seen from svc_residents: per department a status, or an answer."""

    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []
        self.behaviour: dict[str, object] = {}  # code -> int status | "timeout" | "down" | callable(data)
        self.data: dict[str, dict] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        code = request.url.path.split("/")[2]
        number = json.loads(request.content)["id_number"]
        b = self.behaviour.get(code)
        if b == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if b == "down":
            raise httpx.ConnectError("refused", request=request)
        if isinstance(b, int):
            return httpx.Response(b, json={"code": "exchange.no_grant" if b == 403 else "department.unavailable"})
        body = {"department": code, "department_name": "x", "id_number": number,
                "data": dict(self.data.get(code, data_for(code)))}
        if callable(b):
            body = b(body)
        return httpx.Response(200, json=body)

    def asked(self) -> list[str]:
        return [r.url.path.split("/")[2] for r in self.calls]


async def _answer_with(app, d: Departments) -> Departments:
    for code, c in app.state.department_clients.items():
        await c.aclose()
        app.state.department_clients[code] = ServiceClient(
            f"department:{code}", "http://gw", transport=httpx.MockTransport(d), retries=0, backoff=0,
            breaker=CircuitBreaker(failure_threshold=1000))

    async def token() -> str:
        return SERVICE_TOKEN

    app.state.service_token = token
    return d


@pytest.fixture
async def depts(seeded) -> Departments:
    return await _answer_with(seeded.app, Departments())


# Who may ask and who may read: one seeded app per module and backend (each test asks for one department or is
# refused; its calls are cleared before it), in the module's loop.
in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_depts(module_seeded) -> Departments:
    return await _answer_with(module_seeded.app, Departments())


@pytest.fixture
def shared(module_seeded, module_depts):
    module_depts.calls.clear()
    return module_seeded, module_depts


async def _tags(client, key):
    from svc_residents.models import PersonTag

    async with client.app.state.db.session() as s:
        return {t.code: t for t in (await s.execute(select(PersonTag).where(PersonTag.person_id == P(key)))).scalars()}


async def _rows(client, model, **where):
    async with client.app.state.db.session() as s:
        stmt = select(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return list((await s.execute(stmt)).scalars())


async def test_verify_all_departments(seeded, depts, as_):
    from svc_residents.models import AccessAudit, OutboxEvent, PersonChange

    r = await seeded.post(URL.format(P("P5")), headers=as_("staff1"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["complete"] and {v["department"] for v in out["verifications"]} == {
        "gongan", "minzheng", "canlian", "weijian", "renshe"}
    assert all(v["status"] == "done" and v["attempts"] == 1 and v["answered_at"] for v in out["verifications"])
    # asked through the gateway with svc_residents' own token, the purpose named, the ID number in the body only
    assert sorted(depts.asked()) == ["canlian", "gongan", "minzheng", "renshe", "weijian"]
    req = depts.calls[0]
    assert req.headers["authorization"] == f"Bearer {SERVICE_TOKEN}"
    assert req.headers["x-onenet-purpose"] and ID["P5"] not in str(req.url)
    assert json.loads(req.content) == {"id_number": ID["P5"]}
    tags = await _tags(seeded, "P5")
    assert set(tags) == {"dibao", "low_income"}
    for t in tags.values():
        assert t.source == "department" and t.source_department == "minzheng" and t.verified and t.verified_at
        assert t.recorded_by == "verification/minzheng"
    # P5 was entered as 常住; the police register her as 户籍: changed, with the old value kept
    p = (await seeded.get(f"/residents/v1/persons/{P('P5')}", headers=as_("staff1"))).json()
    assert p["residency_type"] == "registered"
    changes = await _rows(seeded, PersonChange, person_id=P("P5"))
    res = [c for c in changes if c.field == "residency_type"]
    assert res[0].old == {"value": "resident"} and res[0].new == {"value": "registered"}
    assert res[0].source == "department:gongan"
    weijian = next(v for v in out["verifications"] if v["department"] == "weijian")
    assert weijian["result"]["last_check_year"] == 2025
    assert ID["P5"] not in r.text
    events = await _rows(seeded, OutboxEvent, subject=P("P5"))
    assert sum(e.type == "person.verified" for e in events) == 5
    assert {e.data["code"] for e in events if e.type == "person.tagged"} == {"dibao", "low_income"}
    audits = await _rows(seeded, AccessAudit, subject_id=P("P5"))
    assert audits[-1].fields == ["id_number"] and "一次采集" in audits[-1].purpose
    # POST again: everything is done, nobody is asked again; refresh asks again and changes nothing new
    depts.calls.clear()
    r = await seeded.post(URL.format(P("P5")), headers=as_("staff1"))
    assert r.status_code == 200 and depts.calls == []
    r = await seeded.post(URL.format(P("P5")), json={"departments": ["minzheng"], "refresh": True},
                          headers=as_("staff1"))
    assert depts.asked() == ["minzheng"]
    mz = next(v for v in r.json()["verifications"] if v["department"] == "minzheng")
    assert mz["attempts"] == 2 and mz["result"]["changes"]["confirmed"] == ["dibao", "low_income"]
    r = await seeded.get(URL.format(P("P5")), headers=as_("grid1"))
    assert r.status_code == 404  # P5 lives in grid A2


async def test_failures_stay_pending_and_retry(seeded, depts, as_):
    depts.behaviour = {"minzheng": 503, "canlian": 403, "weijian": "timeout", "renshe": 404, "gongan": "down"}
    r = await seeded.post(URL.format(P("P5")), json={}, headers=as_("staff1"))
    assert r.status_code == 200, r.text
    out = {v["department"]: v for v in r.json()["verifications"]}
    assert not r.json()["complete"]
    assert out["minzheng"]["status"] == "pending" and out["gongan"]["status"] == "pending"
    assert out["weijian"]["status"] == "pending" and "超时" in out["weijian"]["reason"]
    assert out["canlian"]["status"] == "refused" and "exchange.no_grant" in out["canlian"]["reason"]
    assert out["renshe"]["status"] == "failed"
    assert all(v["retryable"] and v["result"] is None for v in out.values())
    assert await _tags(seeded, "P5") == {}  # nothing recorded from no answer
    # retry: the departments answer now
    depts.behaviour = {}
    depts.calls.clear()
    r = await seeded.post(URL.format(P("P5")), headers=as_("staff1"))
    out = {v["department"]: v for v in r.json()["verifications"]}
    assert r.json()["complete"] and all(v["attempts"] == 2 for v in out.values())
    assert set(await _tags(seeded, "P5")) == {"dibao", "low_income"}
    # only what was not done is asked again
    depts.behaviour = {"minzheng": 503}
    r = await seeded.post(URL.format(P("P5")), json={"departments": ["minzheng", "canlian"], "refresh": True},
                          headers=as_("staff1"))
    out = {v["department"]: v for v in r.json()["verifications"]}
    assert out["minzheng"]["status"] == "pending" and out["canlian"]["status"] == "done"
    assert set(await _tags(seeded, "P5")) == {"dibao", "low_income"}  # a failed refresh takes nothing away


async def test_staff_values_are_never_silently_overwritten(seeded, depts, as_):
    from svc_residents.models import PersonChange

    h = as_("staff1")
    # staff entered dibao and tekun by hand for P5
    for code in ("dibao", "tekun"):
        r = await seeded.put(f"/residents/v1/persons/{P('P5')}/tags/{code}", headers=h,
                             json={"code": code, "source": "staff", "note": "走访登记"})
        assert r.status_code == 200, r.text
    depts.data["minzheng"] = {"dibao": True, "tekun": False, "low_income": False}
    r = await seeded.post(URL.format(P("P5")), json={"departments": ["minzheng"]}, headers=h)
    assert r.status_code == 200, r.text
    changes = r.json()["verifications"][0]["result"]["changes"]
    assert changes["upgraded"] == ["dibao"] and changes["conflicts"] == ["tekun"]
    tags = await _tags(seeded, "P5")
    assert tags["dibao"].source == "department" and tags["dibao"].verified
    assert tags["tekun"].source == "staff" and not tags["tekun"].verified and tags["tekun"].valid_until is None
    history = {c.field: c for c in await _rows(seeded, PersonChange, person_id=P("P5"))
               if c.source == "department:minzheng"}
    assert history["tag:dibao"].change == "upgraded" and history["tag:dibao"].old["source"] == "staff"
    assert history["tag:dibao"].old["note"] == "走访登记"
    assert history["tag:tekun"].change == "conflict" and history["tag:tekun"].new == {"department": "minzheng",
                                                                                       "holds": False}
    r = await seeded.get(f"/residents/v1/persons/{P('P5')}/changes", headers=h)
    assert r.status_code == 200 and {c["field"] for c in r.json()} >= {"tag:dibao", "tag:tekun"}


async def test_department_withdrawal_expires_its_own_tag(seeded, depts, as_):
    # P4's disability tag came from 残联; 残联 now says no certificate
    r = await seeded.post(URL.format(P("P4")), json={"departments": ["canlian"]}, headers=as_("street1"))
    assert r.status_code == 200, r.text
    assert r.json()["verifications"][0]["result"]["changes"]["expired"] == ["disabled"]
    p = (await seeded.get(f"/residents/v1/persons/{P('P4')}", headers=as_("staff1"))).json()
    disabled = next(t for t in p["tags"] if t["code"] == "disabled")
    assert not disabled["active"]
    # and later vouches again: reinstated
    depts.data["canlian"] = {"certificate": True, "category": "肢体", "grade": 2}
    r = await seeded.post(URL.format(P("P4")), json={"departments": ["canlian"], "refresh": True},
                          headers=as_("street1"))
    assert r.json()["verifications"][0]["result"]["changes"]["confirmed"] == ["disabled"]
    p = (await seeded.get(f"/residents/v1/persons/{P('P4')}", headers=as_("staff1"))).json()
    assert next(t for t in p["tags"] if t["code"] == "disabled")["active"]


async def test_fields_outside_the_grant_are_unknown_not_no(seeded, depts, as_):
    def removed(body):  # the exchange removed the sensitive fields outside the grant's scope
        body["data"] = {}
        body["id_number"] = "110105********0627"
        return body

    depts.behaviour = {"minzheng": removed, "canlian": removed}
    r = await seeded.post(URL.format(P("P4")), json={"departments": ["minzheng", "canlian"]}, headers=as_("staff1"))
    out = {v["department"]: v for v in r.json()["verifications"]}
    assert out["canlian"]["status"] == "done" and out["canlian"]["result"]["changes"]["expired"] == []
    tags = await _tags(seeded, "P4")
    assert tags["disabled"].valid_until is None and "dibao" not in tags


async def test_answer_about_someone_else_is_not_used(seeded, depts, as_):
    def other(body):
        body["id_number"] = ID["P7"]
        return body

    depts.behaviour = {"minzheng": other, "gongan": lambda b: {"oops": True}}
    r = await seeded.post(URL.format(P("P5")), json={"departments": ["minzheng", "gongan"]}, headers=as_("staff1"))
    out = {v["department"]: v for v in r.json()["verifications"]}
    assert out["minzheng"]["status"] == "failed" and out["gongan"]["status"] == "failed"
    assert await _tags(seeded, "P5") == {}


@pytest.mark.parametrize("name,key,status", [
    ("staff1", "P1", 200), ("grid1", "P1", 200), ("street1", "P7", 200), ("staff2", "P1", 404),
    ("grid1", "P4", 404), ("resident1", "P1", 403), ("proxy1", "P3", 403), ("ops1", "P1", 403),
    ("dept_mz", "P1", 403), ("provider1", "P1", 403), ("portal", "P1", 403),
])
@in_module_loop
async def test_who_may_ask(shared, as_, name, key, status):
    seeded, depts = shared
    r = await seeded.post(URL.format(P(key)), json={"departments": ["renshe"]}, headers=as_(name))
    assert r.status_code == status, r.text
    if status != 200:
        assert depts.calls == []


@in_module_loop
async def test_bad_department_is_a_422(shared, as_):
    seeded, _ = shared
    r = await seeded.post(URL.format(P("P1")), json={"departments": ["nasa"]}, headers=as_("staff1"))
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("departments")


@pytest.mark.parametrize("name,key,verifications,changes", [
    ("resident1", "P1", 200, 200), ("resident1", "P2", 200, 403), ("resident1", "P3", 404, 404),
    ("proxy1", "P3", 200, 200), ("proxy1", "P1", 404, 404), ("grid1", "P1", 200, 200), ("grid1", "P7", 404, 404),
    ("staff2", "P1", 404, 404), ("street1", "P7", 200, 200), ("ops1", "P7", 200, 200),
    ("dept_mz", "P1", 403, 403), ("evaluator1", "P1", 403, 403), ("portal", "P1", 403, 403),
])
@in_module_loop
async def test_who_may_read_records_and_history(shared, as_, name, key, verifications, changes):
    seeded, _ = shared
    url = f"/residents/v1/persons/{P(key)}"
    assert (await seeded.get(f"{url}/verifications", headers=as_(name))).status_code == verifications
    assert (await seeded.get(f"{url}/changes", headers=as_(name))).status_code == changes


async def test_concurrent_verifications_of_one_person(seeded, depts, as_):
    import asyncio

    rs = await asyncio.gather(*(seeded.post(URL.format(P("P5")), headers=as_("staff1")) for _ in range(3)))
    assert {r.status_code for r in rs} <= {200, 409}, [r.text for r in rs]
    assert any(r.status_code == 200 for r in rs)
    r = await seeded.post(URL.format(P("P5")), headers=as_("staff1"))
    assert r.json()["complete"]
    assert set(await _tags(seeded, "P5")) == {"dibao", "low_income"}
