"""No leak of person fields to a grantee with a narrow field scope: svc_residents' person fields are graded in the
catalogue (birth date, age, sex: personal → masked; tags and accessibility needs: sensitive → removed), and a
field the annotations do not know is graded on the strict side rather than passed in clear."""
from __future__ import annotations

import json
from datetime import timedelta

import httpx

from gateway.exchange.catalogue_data import BUILTIN_RESOURCES
from gateway.exchange.derive import derive_catalogue
from gateway.exchange.policy import MASK, REMOVE, ResourceView, apply_actions, field_actions
from tests.gateway.conftest import START

FUTURE = (START + timedelta(days=30)).isoformat()
PERSON = {
    "id": "p-7", "household_id": "h-4", "name": "赵敏", "id_number": "110105********0823", "phone": "138****0007",
    "revealed": False, "birth_date": "1947-03-21", "age": 79, "sex": "F", "residency_type": "registered",
    "relation_to_head": "本人", "preferred_channel": "phone", "accessibility_needs": ["wheelchair", "hearing"],
    "grid_code": "110105001002001", "community_code": "110105001002",
    "tags": [{"code": "dibao", "label": "低保", "active": True}, {"code": "disabled", "label": "残疾", "active": True}],
    "created_at": "2026-11-01T00:00:00Z", "updated_at": "2026-11-01T00:00:00Z", "version": 3, "merged_into": None,
}
CLEAR_IS_A_LEAK = ("birth_date", "age", "sex", "accessibility_needs", "tags", "residency_type", "relation_to_head")


def _persons() -> ResourceView:
    r = next(r for r in BUILTIN_RESOURCES if r["code"] == "residents.persons")
    return ResourceView(code=r["code"], owner=r["owner"], name=r["name"], sharing_class=r["sharing_class"],
                        service=r["service"], path_prefix=r["path_prefix"], fields=tuple(r["fields"]))


def _assert_not_in_clear(item: dict) -> None:
    assert "accessibility_needs" not in item and "tags" not in item        # sensitive personal: removed
    assert "id_number" not in item                                         # sensitive personal: removed
    assert item["age"] is None                                             # personal, not a string: nulled
    assert item["birth_date"] != PERSON["birth_date"] and "*" in item["birth_date"]   # personal: masked
    assert item["sex"] == "*"
    for name in CLEAR_IS_A_LEAK:
        assert item.get(name) != PERSON[name], name


def test_person_fields_are_graded():
    fields = {f["path"]: f for f in _persons().fields}
    for name in ("birth_date", "age", "sex"):
        assert fields[name]["personal"] and not fields[name]["sensitive"], name
    for name in ("accessibility_needs", "tags", "id_number"):
        assert fields[name]["sensitive"] and fields[name]["personal"], name
    actions = {".".join(p): a for p, a, _ in field_actions(_persons(), frozenset({"id", "name"}))}
    assert actions["birth_date"] == actions["age"] == actions["sex"] == MASK
    assert actions["accessibility_needs"] == actions["tags"] == REMOVE
    assert "id" not in actions and "name" not in actions and "grid_code" not in actions


def test_narrow_scope_unit():
    page = {"items": [json.loads(json.dumps(PERSON))], "next_cursor": None}
    out = apply_actions(page, field_actions(_persons(), frozenset({"id", "name"})))
    item = out["items"][0]
    _assert_not_in_clear(item)
    assert item["name"] == "赵敏" and item["id"] == "p-7" and item["grid_code"] == PERSON["grid_code"]


def test_an_unannotated_field_is_not_passed_in_clear():
    """A column svc_residents adds before anyone annotates it (here `diagnosis`) is masked outside the scope."""
    schema = {"type": "object", "properties": {k: {"type": "string"} for k in (*PERSON, "diagnosis")}}
    doc = {"openapi": "3.1.0", "paths": {"/residents/v1/persons": {"get": {"responses": {"200": {"content": {
        "application/json": {"schema": {"type": "array", "items": schema}}}}}}}}}
    d = derive_catalogue(BUILTIN_RESOURCES, {"residents": doc})
    res = next(r for r in d.resources if r["code"] == "residents.persons")
    view = ResourceView(code=res["code"], owner=res["owner"], name=res["name"], sharing_class=res["sharing_class"],
                        service=res["service"], path_prefix=res["path_prefix"], fields=tuple(res["fields"]))
    diagnosis = next(f for f in res["fields"] if f["path"] == "diagnosis")
    assert diagnosis["personal"] and diagnosis["grade"] == "important" and diagnosis["reviewed"] is False
    out = apply_actions([dict(PERSON, diagnosis="高血压 2 级")], field_actions(view, frozenset({"id"})))
    assert out[0]["diagnosis"] == "高*****级" and out[0]["id"] == "p-7"


async def _residents_upstream(x, seen: list[httpx.Request]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"items": [dict(PERSON)], "next_cursor": None})

    x.app.state.forwarder.upstreams["residents"].use(httpx.MockTransport(handler))


async def test_a_narrow_grant_does_not_see_person_fields_in_clear_through_the_gateway(exchange):
    x = exchange
    seen: list[httpx.Request] = []
    await _residents_upstream(x, seen)
    r = await x.client.get("/residents/v1/persons", headers=x.h("community-ak"))
    assert r.status_code == 403 and r.json()["code"] == "exchange.no_grant" and not seen
    r = await x.client.post("/exchange/v1/grants", headers=x.h("community-ak"), json={
        "resource": "residents.persons", "purpose": "走访名单核对", "fields": ["id", "name", "grid_code"]})
    assert r.status_code == 201 and r.json()["status"] == "pending", r.text
    r = await x.client.post(f"/exchange/v1/grants/{r.json()['id']}/approve", headers=x.h("svc_residents"),
                            json={"fields": ["id", "name", "grid_code"], "expires_at": FUTURE})
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    r = await x.client.get("/residents/v1/persons", headers=x.h("community-ak"))
    assert r.status_code == 200, r.text
    item = r.json()["items"][0]
    _assert_not_in_clear(item)
    assert item["name"] == "赵敏" and item["grid_code"] == PERSON["grid_code"]
    # the owner sees its own answer untouched
    r = await x.client.get("/residents/v1/persons", headers=x.h("svc_residents"))
    assert r.json()["items"][0] == PERSON


async def test_the_catalogue_shows_the_person_grades(exchange):
    r = await exchange.client.get("/exchange/v1/catalogue/residents.persons", headers=exchange.h("community-xf"))
    fields = {f["path"]: f for f in r.json()["fields"]}
    assert fields["accessibility_needs"]["sensitive"] and fields["birth_date"]["personal"]
    assert all(f["reviewed"] for f in fields.values())
