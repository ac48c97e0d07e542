"""What the Open311 routes read themselves is declared with the constraints the code enforces (issue 31): the POST's
form body (form-encoded, or multipart with `media`) and its 201, the request documents' query; a value outside its
declared schema is a 400 in GeoReport's error list, one inside it is taken."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings, strategies as st

from common.validators import GRID_CODE_PATTERN
from svc_services.open311 import contract
from tests.svc_services.test_open311 import BASE, error_list, post, rows


async def test_the_post_declares_its_form_body_and_answers(client):
    doc = (await client.get("/openapi.json")).json()
    op = doc["paths"][f"{BASE}/requests.{{fmt}}"]["post"]
    content = op["requestBody"]["content"]
    assert op["requestBody"]["required"] is True
    assert set(content) == {"application/x-www-form-urlencoded", "multipart/form-data"}
    for media_type, body in content.items():
        schema = body["schema"]
        assert schema["required"] == ["service_code"]
        props = schema["properties"]
        assert props["address_id"]["pattern"] == GRID_CODE_PATTERN
        assert props["lat"]["type"] == props["long"]["type"] == "number"
        assert {"api_key", "attribute[code]"} - set(props) == {"attribute[code]"}  # attributes by pattern
        assert re.fullmatch(next(iter(schema["patternProperties"])), "attribute[meal_time]")
    assert content["multipart/form-data"]["schema"]["properties"]["media"] == {
        "type": "string", "format": "binary", "description": "一张照片（JPEG、PNG、WebP）a photo"}
    assert "media" not in content["application/x-www-form-urlencoded"]["schema"]["properties"]
    assert {"201", "400", "401", "403", "404", "413", "415", "429", "503"} <= set(op["responses"])
    assert {"application/json", "text/xml"} <= set(op["responses"]["201"]["content"])
    assert op["responses"]["404"]["content"]["application/json"]["schema"]["type"] == "array"  # GeoReport's list


async def test_the_list_declares_its_query(client):
    doc = (await client.get("/openapi.json")).json()
    params = {p["name"]: p["schema"] for p in doc["paths"][f"{BASE}/requests.{{fmt}}"]["get"]["parameters"]}
    assert set(params) == {"fmt", "service_request_id", "service_code", "status", "start_date", "end_date",
                           "extensions"}
    assert params["status"]["pattern"] == contract.STATUS_PATTERN
    assert params["start_date"]["format"] == params["end_date"]["format"] == "date-time"
    assert params["extensions"] == {"type": "boolean"}
    one = doc["paths"][f"{BASE}/requests/{{request_id}}.{{fmt}}"]["get"]["parameters"]
    assert [p["schema"] for p in one if p["name"] == "extensions"] == [{"type": "boolean"}]


@pytest.mark.parametrize("query", [
    "status=OPEN", "status=", "status=open,", "status=pending", "extensions=1", "extensions=yes",
    "start_date=2026-03-01", "start_date=2026-03-01T00:00:00", "end_date=yesterday", "start_date=",
    "start_date=2026-02-30T00:00:00Z", "end_date=2026-03-01T25:00:00Z"])
async def test_a_query_outside_its_declared_schema_is_a_georeport_400(client, query):
    r = await client.get(f"{BASE}/requests.json?{query}")
    assert r.status_code == 400, r.text
    (err,) = error_list(r, "json")
    assert err["code"] == 400 and err["description"].startswith(query.split("=")[0] + ":")


@pytest.mark.parametrize("query", [
    "status=open,closed", "extensions=false", "extensions=true", "start_date=2026-03-01T00:00:00Z",
    "start_date=2026-03-01T00:00:00+08:00",  # an unencoded `+` arrives as a space: taken as the `+` it was
    "start_date=2026-03-01T00:00:00.123456-05:00&end_date=2026-03-02t00:00:00z", "service_request_id=a,b"])
async def test_a_query_inside_its_declared_schema_is_taken(client, query):
    r = await client.get(f"{BASE}/requests.xml?{query}")
    assert r.status_code == 200, r.text
    assert rows(r, "xml") == []


_2 = st.integers(0, 59).map("{:02d}".format)
RFC3339 = st.builds("{}T{:02d}:{}:{}{}{}".format, st.dates().map(str), st.integers(0, 23), _2, _2,
                    st.just("") | st.text("0123456789", min_size=1, max_size=9).map(".".__add__),
                    st.just("Z") | st.builds("{}{:02d}:{}".format, st.sampled_from("+-"), st.integers(0, 23), _2))


@settings(max_examples=300, deadline=None)
@given(value=RFC3339, status=st.from_regex(contract.STATUS_PATTERN, fullmatch=True))
def test_every_declared_value_is_taken(value, status):
    """What a client (or the fuzzer) may send by the declared `format: date-time` and status pattern is read."""
    assert contract.date({"d": value}, "d").tzinfo is not None
    assert set(contract.statuses({"status": status})) <= {"open", "closed"}


async def test_a_post_answers_201_with_its_id_only(ready, make_token):
    token = make_token("resident", user="resident1", scopes=["person:person-1"])
    r = await post(ready, token, data={"lat": None, "long": None, "address_id": "110105001001001"})
    assert r.status_code == 201, r.text
    (doc,) = r.json()
    assert set(doc) <= set(contract.SUBMITTED["items"]["properties"]) and "token" not in doc
    r = await post(ready, token, data={"lat": None, "long": None, "address_id": "11010500100100١"})  # not ASCII
    assert r.status_code == 400 and error_list(r, "json")[0]["description"].startswith("address_id:")


@pytest.mark.parametrize("media_type", ["application/x-www-form-urlencoded", "multipart/form-data"])
async def test_the_posts_declared_example_is_taken(ready, make_token, media_type):
    """The example a client or a fuzzer copies from the document is a submission the district takes (a fuzzer mixes
    it into its valid cases: an example missing the item's required attribute was a 400)."""
    from tests.svc_services.conftest import P1

    client = ready
    doc = (await client.get("/openapi.json")).json()
    example = doc["paths"][f"{BASE}/requests.{{fmt}}"]["post"]["requestBody"]["content"][media_type]["example"]
    form = {k: str(v) for k, v in example.items()}
    h = {"Authorization": f"Bearer {make_token('resident', user='resident1', scopes=[f'person:{P1}'])}"}
    if media_type == "multipart/form-data":  # its fields alone, no file
        parts = "".join(f'--b0\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in form.items())
        r = await client.post(f"{BASE}/requests.json", content=(parts + "--b0--\r\n").encode(),
                              headers={**h, "Content-Type": "multipart/form-data; boundary=b0"})
    else:
        r = await client.post(f"{BASE}/requests.json", data=form, headers=h)
    assert r.status_code == 201, r.text
