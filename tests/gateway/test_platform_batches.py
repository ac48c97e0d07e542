"""The emulated SMS platform's and push provider's batch calls (gateway/departments/sms.py, push.py): many messages
a call, one shared text or each its own, an answer per message (its id, or `failed` when the half-failing knob
dropped it), receipts of many at once; bad input (too many, a bad number, a message without a text, unknown
fields) is a 422 problem naming the field and sends nothing; the platform down refuses the whole call (503); a
`ref` sent before answers the first message and sends nothing twice. The one-message calls still work."""
from __future__ import annotations

import httpx
import pytest

from common.auth import TokenVerifier
from gateway.departments.app import EmulatorSettings, create_app
from gateway.departments.outbound import BATCH_MAX
from tests.conftest import gateway_auth

SMS, PUSH = "/departments/sms/v1", "/departments/push/v1"


@pytest.fixture
async def emu(jwks, make_token):
    settings = EmulatorSettings(jwks_url=None)
    app = create_app(settings, verifier=TokenVerifier(settings, jwks=jwks))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://emulators", auth=gateway_auth()) as c:
        c.app = app
        c.h = {"Authorization": f"Bearer {make_token('system', user='svc_residents', member='svc_residents')}"}
        c.other = {"Authorization": f"Bearer {make_token('system', user='svc_services', member='svc_services')}"}
        yield c


def phones(n: int, start: int = 0) -> list[str]:
    return [f"139{start + i:08d}" for i in range(n)]


def problem(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    if code:
        assert body["code"] == code, body
    return body


async def test_sms_batch_one_text_for_many_numbers_and_receipts_of_each(emu):
    sms = emu.app.state.sms
    body = {"text": "【一网通办】明日停水，请提前储水。", "messages": [{"phone": p, "ref": f"r{i}"}
                                                      for i, p in enumerate(phones(300))]}
    r = await emu.post(f"{SMS}/batches", json=body, headers=emu.h)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["accepted"] == 300 and out["failed"] == 0
    assert [x["index"] for x in out["results"]] == list(range(300))
    assert [x["ref"] for x in out["results"]] == [f"r{i}" for i in range(300)]
    assert sms.sent == 300 and {m.text for m in sms.messages.values()} == {body["text"]}
    one = out["results"][7]
    r = await emu.get(f"{SMS}/messages/{one['id']}", headers=emu.h)   # the per-message receipt, as before
    assert r.status_code == 200 and r.json()["status"] == "delivered" and r.json()["phone"] == "139****0007"
    ids = [x["id"] for x in out["results"][:250]]
    r = await emu.post(f"{SMS}/receipts/query", json={"ids": [*ids, "no-such-id"]}, headers=emu.h)
    assert r.status_code == 200 and [x["id"] for x in r.json()] == ids   # unknown ones left out
    assert {x["status"] for x in r.json()} == {"delivered"}
    # another member reads none of them
    r = await emu.post(f"{SMS}/receipts/query", json={"ids": ids}, headers=emu.other)
    assert r.status_code == 200 and r.json() == []


async def test_sms_batch_of_pairs_and_the_same_ref_sends_once(emu):
    sms = emu.app.state.sms
    pairs = [{"phone": "+86 139-0000-0001", "text": "【一网通办】甲", "ref": "a"}, {"phone": "13900000002", "text": "【一网通办】乙"}]
    r = await emu.post(f"{SMS}/batches", json={"messages": pairs}, headers=emu.h)
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    first = r.json()["results"][0]["id"]
    assert [(m.phone, m.text) for m in sms.messages.values()] == [("13900000001", "【一网通办】甲"),
                                                                  ("13900000002", "【一网通办】乙")]
    again = await emu.post(f"{SMS}/batches", json={"text": "【一网通办】丙", "messages": [{"phone": "13900000001",
                                                                                   "ref": "a"}]}, headers=emu.h)
    assert again.json()["results"][0]["id"] == first and sms.sent == 2       # the ref was sent: not again
    # the one-message call still works beside it
    r = await emu.post(f"{SMS}/messages", json={"phone": "13900000003", "text": "验证码 123456"}, headers=emu.h)
    assert r.status_code == 202 and sms.sent == 3


@pytest.mark.parametrize("path,item", [(SMS, {"phone": "13900000001"}), (PUSH, {"alias": "person:p1"})])
async def test_bad_batches_are_422_naming_the_field_and_send_nothing(emu, path, item):
    key = "phone" if path == SMS else "alias"
    bad_value = "12900000001" if path == SMS else "nobody"
    platform = emu.app.state.sms if path == SMS else emu.app.state.push
    cases = [
        ({"text": "x", "messages": []}, "messages"),
        ({"text": "x", "messages": [item] * (BATCH_MAX + 1)}, "messages"),
        ({"text": "x", "messages": [item, {key: bad_value}]}, f"messages.1.{key}"),
        ({"messages": [item]}, "messages.0.text"),                       # no text of its own nor the batch's
        ({"text": "x", "messages": [{**item, "colour": "red"}]}, "messages.0.colour"),
        ({"text": "x" * 501, "messages": [item]}, "text"),
        ({"text": "x", "messages": [{**item, "ref": "r" * 81}]}, "messages.0.ref"),
    ]
    for body, field in cases:
        got = problem(await emu.post(f"{path}/batches", json=body, headers=emu.h), 422, "validation_failed")
        assert field in [e["field"] for e in got["errors"]], (body, got)
    assert platform.sent == 0
    problem(await emu.post(f"{path}/receipts/query", json={"ids": []}, headers=emu.h), 422)
    problem(await emu.post(f"{path}/receipts/query", json={"ids": ["x"] * (BATCH_MAX + 1)}, headers=emu.h), 422)
    # a member system only: no token, no call
    problem(await emu.post(f"{path}/batches", json={"text": "x", "messages": [item]}), 401)


@pytest.mark.parametrize("path,item", [(SMS, lambda i: {"phone": f"1390000{i:04d}", "ref": f"r{i}"}),
                                       (PUSH, lambda i: {"alias": f"person:p{i}", "ref": f"r{i}"})])
async def test_half_failing_fails_messages_on_their_own_and_down_refuses_the_call(emu, path, item):
    platform = emu.app.state.sms if path == SMS else emu.app.state.push
    body = {"title": "停水通知", "text": "明日停水"} if path == PUSH else {"text": "【一网通办】明日停水"}
    body["messages"] = [item(i) for i in range(200)]
    platform.down = True
    problem(await emu.post(f"{path}/batches", json=body, headers=emu.h), 503, f"{path.split('/')[2]}.unavailable")
    assert platform.sent == 0
    platform.down, platform.failure_rate = False, 0.5
    taken: dict[str, str] = {}
    for _ in range(30):  # the sender sends again what failed, with the same refs, until all are taken
        r = await emu.post(f"{path}/batches", json=body, headers=emu.h)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["accepted"] + out["failed"] == 200
        for x in out["results"]:
            if x["id"]:
                assert taken.setdefault(x["ref"], x["id"]) == x["id"]  # a ref taken answers its first message
            else:
                assert x["status"] == "failed" and x["error"].endswith(".unavailable")
        if len(taken) == 200:
            break
    assert len(taken) == 200 and platform.sent == 200                    # none lost, none twice


async def test_push_batch_shared_or_own_title_and_receipts(emu):
    push = emu.app.state.push
    body = {"title": "停水通知", "text": "明日停水", "messages": [
        {"alias": "person:p1", "ref": "x1"}, {"alias": "user:grid1", "title": "紧急", "text": "请回电"}]}
    r = await emu.post(f"{PUSH}/batches", json=body, headers=emu.h)
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    got = [(m.to, m.title, m.text, m.ref) for m in push.messages.values()]
    assert got == [("person:p1", "停水通知", "明日停水", "x1"), ("user:grid1", "紧急", "请回电", None)]
    ids = [x["id"] for x in r.json()["results"]]
    r = await emu.post(f"{PUSH}/receipts/query", json={"ids": ids}, headers=emu.h)
    assert [x["alias"] for x in r.json()] == ["person:p1", "user:grid1"]
    # the one-message call with a ref sent in a batch answers the batch's message
    r = await emu.post(f"{PUSH}/messages", json={"alias": "person:p1", "title": "t", "text": "t", "ref": "x1"},
                       headers=emu.h)
    assert r.status_code == 202 and r.json()["id"] == ids[0] and push.sent == 2
