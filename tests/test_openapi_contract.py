"""An undeclared method answers 405 with an `Allow` naming every method of the path (issue 31), also where the
path's methods come from several routes (svc_services' request list GET and intake POST; the direct route)."""
from __future__ import annotations

import pytest

from common.openapi_contract import allowed_methods


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_allow_lists_every_method_of_the_path(service_client, auth, method):
    client = await service_client("svc_services")
    r = await client.request(method, "/services/v1/requests", headers=auth("ops"))
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "GET, POST"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "method_not_allowed"
    # Allow is the truth: each method it names is served (not 405)
    for m in r.headers["allow"].split(", "):
        assert (await client.request(m, "/services/v1/requests", headers=auth("ops"))).status_code != 405


async def test_allowed_methods_reads_every_route(service_client):
    client = await service_client("svc_services")
    assert allowed_methods(client.app, "/services/v1/requests") == "GET, POST"
    assert allowed_methods(client.app, "/nowhere") == ""


# ---- parameters carry the constraints the server enforces (common.validators' patterns) ----------------------
import re  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402

from common import validators as v  # noqa: E402

VALID = {"id": "11010519491231002X", "phone": "13812345678", "uscc": v.make_uscc("9", "1", "110105", "MA01ABCD"),
         "division": "110105001002"}
PARSERS = {"id": (lambda s: v.parse_resident_id(s), v.ID_NUMBER_PATTERN),
           "phone": (v.normalize_mobile, v.MOBILE_PATTERN),
           "uscc": (v.parse_uscc, v.USCC_PATTERN),
           "division": (v.parse_division_code, v.DIVISION_PATTERN)}
NOISE = st.sampled_from([" ", "\t", "\u3000", "\x1c", "\xa0", "-", "(", ")", "+", "86", "0086", "x", "X", "ß",
                         "１", "٣", "0", "9", "A", "I", "\n"])


@st.composite
def mutated(draw, kind: str) -> str:
    s = list(VALID[kind])
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(s)))
        if draw(st.booleans()) or not s:
            s.insert(at, draw(NOISE))
        else:
            s[min(at, len(s) - 1)] = draw(NOISE)
    return "".join(s)


@pytest.mark.parametrize("kind", sorted(PARSERS))
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_what_a_parser_accepts_matches_its_declared_pattern(kind, data):
    """Outside the declared pattern is always refused (a fuzzer's negative data); the valid example is inside."""
    parse, pattern = PARSERS[kind]
    assert re.fullmatch(pattern, VALID[kind])
    value = data.draw(st.one_of(mutated(kind), st.text(max_size=24)))
    try:
        parse(value)
    except v.ValidationFailure:
        return
    assert re.fullmatch(pattern, value), (kind, value)


def test_non_ascii_digits_are_refused():
    for bad in ("1381234567٣", "138１2345678"):
        with pytest.raises(v.ValidationFailure):
            v.normalize_mobile(bad)
    with pytest.raises(v.ValidationFailure):
        v.parse_resident_id("11010519491231002" + "٣")
    with pytest.raises(v.ValidationFailure):
        v.parse_division_code("11010500100٣")


async def test_the_documents_declare_the_validators_and_cursor_constraints(service_client):
    """The constraints the code enforces, as each service's document declares them: the validators' types (an
    organisation's USCC in svc_matching, division codes in svc_services' catalogue), every list's cursor and limit."""
    from common.pagination import CURSOR_PATTERN, MAX_LIMIT

    residents = await service_client("svc_residents")
    doc = (await residents.get("/openapi.json")).json()
    patterns = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.add(node["pattern"])
            for x in node.values():
                walk(x)
        elif isinstance(node, list):
            for x in node:
                walk(x)
    walk(doc)
    for package, declared in (("svc_matching", v.USCC_PATTERN), ("svc_services", v.DIVISION_PATTERN)):
        walk((await (await service_client(package)).get("/openapi.json")).json())
        assert declared in patterns, package
    lists = 0
    for item in doc["paths"].values():
        for op in item.values():
            params = {p["name"]: p["schema"] for p in op.get("parameters", []) if p.get("in") == "query"}
            if "cursor" in params:
                lists += 1
                cursor = params["cursor"].get("anyOf", [params["cursor"]])[0]
                assert cursor["pattern"] == CURSOR_PATTERN and cursor["maxLength"] == 1024
                assert params["limit"]["maximum"] == MAX_LIMIT and params["limit"]["minimum"] == 1
    assert lists >= 3
    r = await residents.get("/residents/v1/persons?cursor=a!b", headers={})
    assert r.status_code in (401, 422)


@pytest.mark.parametrize("kind,valid", [("CommunityCode", "110105001001"), ("GridCode", "110105001001001"),
                                        ("BuildingCode", "1101050010010010001"), ("PlaceCode", "110105")])
def test_place_code_types_take_ascii_digits_only(kind, valid):
    """One rule for place codes (common.validators): what pydantic accepts is what the declared pattern says, so
    Unicode digits (which pydantic's `\\d` would take) are refused."""
    from pydantic import TypeAdapter, ValidationError

    adapter = TypeAdapter(getattr(v, kind))
    assert adapter.validate_python(valid) == valid
    assert re.fullmatch(adapter.json_schema()["pattern"], valid)
    for bad in (valid[:-1] + "٣", valid[:-1] + "１", valid + "x", valid[:5]):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


async def test_residents_declare_the_common_place_code_patterns(service_client):
    doc = (await (await service_client("svc_residents")).get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert schemas["HouseholdCreate"]["properties"]["grid_code"]["pattern"] == v.GRID_CODE_PATTERN
    assert schemas["PlaceCreate"]["properties"]["code"]["pattern"] == v.PLACE_CODE_PATTERN
    query = {p["name"]: p["schema"] for p in doc["paths"]["/residents/v1/persons"]["get"]["parameters"]}
    assert query["grid_code"]["anyOf"][0]["pattern"] == v.GRID_CODE_PATTERN
    assert query["community_code"]["anyOf"][0]["pattern"] == v.COMMUNITY_CODE_PATTERN


async def test_idempotency_key_declares_the_length_the_server_takes(service_client):
    """The length common.idempotency.check_key takes (400 outside it), declared on every operation's header."""
    from common.idempotency import MAX_KEY_LENGTH

    client = await service_client("svc_services")
    op = (await client.get("/openapi.json")).json()["paths"]["/services/v1/requests"]["post"]
    (header,) = [p for p in op["parameters"] if p["name"] == "Idempotency-Key"]
    assert header["schema"]["minLength"] == 1 and header["schema"]["maxLength"] == MAX_KEY_LENGTH


# ---- a create's 200 is declared only where a replay can answer it -------------------------------------------
from common.openapi_contract import finish  # noqa: E402


def test_a_create_whose_replay_is_its_201_declares_no_200():
    """200 beside 201 for a create retried by a client-chosen id (the time bank's posting_id answers 200); none
    where the 201 declares Idempotency-Replayed, a replay being that 201 again (Open311's POST)."""
    created = {"description": "created", "content": {"application/json": {"schema": {"type": "object"}}}}
    doc = {"paths": {
        "/matching/v1/timebank/postings": {"post": {"responses": {"201": dict(created)}}},
        "/open311/v2/requests.{fmt}": {"post": {"responses": {"201": {
            **created, "headers": {"Idempotency-Replayed": {"schema": {"type": "string"}}}}}}}}}
    finish(doc)
    posting = doc["paths"]["/matching/v1/timebank/postings"]["post"]["responses"]
    assert posting["200"]["content"] == posting["201"]["content"]
    assert "200" not in doc["paths"]["/open311/v2/requests.{fmt}"]["post"]["responses"]


def test_a_create_taking_an_idempotency_key_replays_its_201_and_declares_no_200():
    """A keyed create's replay is its first answer, the 201 with Idempotency-Replayed: true (common.idempotency):
    its 201 gains that header and no 200 is declared; a GET with the same header is left alone."""
    key = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}}
    created = {"description": "created", "content": {"application/json": {"schema": {"type": "object"}}}}
    doc = {"paths": {"/residents/v1/persons": {
        "post": {"parameters": [dict(key)], "responses": {"201": dict(created)}},
        "get": {"parameters": [dict(key)], "responses": {"200": dict(created)}}}}}
    finish(doc)
    item = doc["paths"]["/residents/v1/persons"]
    assert "200" not in item["post"]["responses"]
    assert item["post"]["responses"]["201"]["headers"]["Idempotency-Replayed"]["schema"]["enum"] == ["true", "false"]
    assert "headers" not in item["get"]["responses"]["200"]
    assert finish(doc) == doc
