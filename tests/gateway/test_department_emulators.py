"""The department emulators agree with the demo persons' tags, and 公安 checks a name against the registration."""
from __future__ import annotations

from datetime import date

import pytest

from deploy import demo
from gateway.departments.app import DEMO_REGISTRY, registry_entry
from gateway.departments.app import answer as answer_on

TODAY = date(2026, 11, 23)


def answer(code: str, id_number: str, name: str | None = None) -> dict:
    return answer_on(code, id_number, name, today=TODAY)

# demo tag -> (department, answer field) the department vouches with
VOUCHED = {"dibao": ("minzheng", "dibao"), "tekun": ("minzheng", "tekun"), "low_income": ("minzheng", "low_income"),
           "disabled": ("canlian", "certificate")}


@pytest.mark.parametrize("key,name,number,residency,tags", [(p[0], p[1], p[2], p[5], p[6]) for p in demo.PERSONS])
def test_registry_agrees_with_each_demo_person(key, name, number, residency, tags):
    assert number in DEMO_REGISTRY, key
    for tag, (dept, field) in VOUCHED.items():
        assert answer(dept, number)[field] is (tag in tags), (key, tag)
    gongan = answer("gongan", number)
    assert gongan["registered"] is True and gongan["residency_type"] == residency
    assert answer("gongan", number, name)["identity_match"] is True


def test_the_audit_findings_hold():
    ids = {key: number for key, _, number, *_ in demo.PERSONS}
    assert answer("minzheng", ids["P7"])["dibao"] is True          # 赵敏, 低保
    assert answer("minzheng", ids["P10"])["tekun"] is True         # 吴刚, 特困
    assert answer("canlian", ids["P4"]) == {"certificate": True, "category": "肢体", "grade": 2}  # 刘强
    assert answer("canlian", ids["P1"])["certificate"] is False    # 张伟 holds no certificate
    assert len(DEMO_REGISTRY) == len(demo.PERSONS)


def test_other_numbers_are_stable_and_synthetic():
    number = "11010519491231002X"
    assert number not in DEMO_REGISTRY
    assert answer("minzheng", number) == answer("minzheng", number)
    entry = registry_entry(number)
    assert entry is not None and entry == registry_entry(number) and 2 <= len(entry.name) <= 3
    assert answer("gongan", number, entry.name)["identity_match"] is True
    assert answer("gongan", number, "不是这个人")["identity_match"] is False


async def test_gongan_compares_the_name_when_one_is_sent(exchange):
    x = exchange
    url, number = "/departments/gongan/v1/queries", "110105194703210823"  # 赵敏 (P7)
    h = x.h("dept-gongan")
    r = await x.client.post(url, json={"id_number": number}, headers=h)
    assert r.status_code == 200 and r.json()["data"]["identity_match"] is None  # no name sent: not checked
    r = await x.client.post(url, json={"id_number": number, "name": "赵 敏"}, headers=h)
    assert r.status_code == 200 and r.json()["data"]["identity_match"] is True
    r = await x.client.post(url, json={"id_number": number, "name": "张伟"}, headers=h)
    data = r.json()["data"]
    assert r.status_code == 200 and data["identity_match"] is False and "不一致" in data["identity_message"]
    assert data["registered"] is True  # the number is registered; it is the pairing that fails
    # a number whose birth date is no date is a clear 422, not a crash
    r = await x.client.post(url, json={"id_number": "110105194713210823"}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "id_number"
    r = await x.client.post(url, json={"id_number": number, "name": ""}, headers=h)
    assert r.status_code == 422


async def test_emulators_check_phones_and_id_numbers_by_the_platforms_rules(jwks, make_token):
    """The emulators declare and apply common.validators' ID-number and mobile rules (one rule, one place): the
    platform's patterns in their document; a wrong check character, a phone outside 13–19 refused 422 naming the
    field; a phone written as the platform accepts it (+86, spaces, hyphens) is one number."""
    import httpx

    from common.auth import TokenVerifier
    from common.validators import ID_NUMBER_PATTERN, MOBILE_PATTERN
    from gateway.departments.app import EmulatorSettings, create_app
    from tests.conftest import gateway_auth

    settings = EmulatorSettings(jwks_url=None)
    emu = create_app(settings, verifier=TokenVerifier(settings, jwks=jwks))
    doc = emu.openapi()
    schemas = doc["components"]["schemas"]
    assert schemas["PersonQuery"]["properties"]["id_number"]["pattern"] == ID_NUMBER_PATTERN
    assert schemas["SmsIn"]["properties"]["phone"]["pattern"] == MOBILE_PATTERN
    assert schemas["CallIn"]["properties"]["phone"]["pattern"] == MOBILE_PATTERN
    h = {"Authorization": f"Bearer {make_token('system', user='svc_residents', member='svc_residents')}"}
    async with emu.router.lifespan_context(emu), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=emu), base_url="http://emulators", auth=gateway_auth()) as c:
        r = await c.post("/departments/gongan/v1/queries", json={"id_number": "110105194703210824"}, headers=h)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "id_number", r.text
        assert r.json()["errors"][0]["code"] == "id_number.checksum"
        r = await c.post("/departments/gongan/v1/queries", json={"id_number": " 11010519491231002x "}, headers=h)
        assert r.status_code == 200 and r.json()["id_number"] == "11010519491231002X", r.text
        for path in ("/departments/sms/v1/messages", "/departments/voice/v1/calls"):
            r = await c.post(path, json={"phone": "12900001234", "text": "x"}, headers=h)
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "phone", (path, r.text)
            r = await c.post(path, json={"phone": "+86 139-0000-1234", "text": "测试"}, headers=h)
            assert r.status_code in (200, 201, 202) and r.json()["phone"] == "139****1234", (path, r.text)
        assert list(emu.state.sms.last_by_phone) == ["13900001234"]
