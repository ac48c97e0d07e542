"""Accounts end to end against real processes (issue 25): a new resident registers by phone (the SMS code read
from the SMS platform's emulator, as local runs allow), binds his ID (公安 through the exchange, svc_residents
finds his record) and submits a request; 安康's administrator (TOTP) creates a grid worker, who enrols TOTP,
signs in with it and accepts the request."""
from __future__ import annotations

import httpx
import pyotp
import pytest

from common.clock import Clock
from common.demo import DEMO_PASSWORD
from tests.e2e.harness import Platform

pytestmark = pytest.mark.e2e
HUANG = ("黄磊", "110105197511300713")  # on record in 安康 (grid 110105001002002), no account yet
GRID = "110105001002002"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("accounts"))
    try:
        p.start()
        yield p
    finally:
        p.stop()


def ok(r: httpx.Response, status: int = 200) -> dict:
    assert r.status_code == status, r.text
    return r.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def code(secret: str, step: int = 0) -> str:
    """What the person's authenticator shows (the processes run on the system clock)."""
    return pyotp.TOTP(secret).at(Clock().now(), counter_offset=step)


def test_register_bind_submit_and_a_new_grid_worker_accepts(platform):
    gw, http = platform.gw, httpx.Client(timeout=30)
    phone = "13900007777"

    # the resident: an SMS code, the sign-in that registers him, the binding, the request
    ok(http.post(f"{gw}/auth/v1/phone/codes", json={"phone": phone}), 202)
    sms = ok(http.get(f"{gw}/auth/v1/testing/sms", params={"phone": phone}))["code"]
    me = ok(http.post(f"{gw}/auth/v1/token", data={"grant_type": "urn:onenet:params:oauth:grant-type:sms",
                                                   "phone": phone, "code": sms}))
    bound = ok(http.post(f"{gw}/auth/v1/me/identity", headers=bearer(me["access_token"]),
                         json={"name": HUANG[0], "id_number": HUANG[1], "consent": True}))
    assert bound["binding"] == "bound" and bound["person_id"]
    req = ok(http.post(f"{gw}/services/v1/requests", headers={**bearer(bound["access_token"]),
                                                              "Idempotency-Key": "e2e-accounts-1"},
                       json={"item_code": "SH-WX-001", "channel": "app", "description": "楼道灯不亮",
                             "attributes": {"appliance": "electric"}, "location": {"grid": GRID}}), 201)
    assert req["state"] == "submitted" and req["person_id"] == bound["person_id"]

    # 安康's administrator: password, enrolment ticket, TOTP enrolled, then signed in with a code
    r = http.post(f"{gw}/auth/v1/token", data={"grant_type": "password", "username": "admin_ak",
                                               "password": DEMO_PASSWORD})
    assert r.status_code == 403 and r.json()["code"] == "mfa.enrolment_required", r.text
    ticket = bearer(r.json()["enrolment_token"])
    secret = ok(http.post(f"{gw}/auth/v1/mfa/totp/enrol", headers=ticket))["secret"]
    ok(http.post(f"{gw}/auth/v1/mfa/totp/activate", headers=ticket, json={"code": code(secret)}))
    admin = ok(http.post(f"{gw}/auth/v1/token", data={"grant_type": "password", "username": "admin_ak",
                                                      "password": DEMO_PASSWORD, "otp": code(secret, 1)}))

    # the grid worker it creates enrols TOTP with its first session; from then on its sign-in asks for the code
    password = "Anka0ng-grid-2026!"
    ok(http.post(f"{gw}/auth/v1/accounts", headers=bearer(admin["access_token"]), json={
        "username": "grid-ak-02", "display_name": "赵敏（安康二网格网格员）", "role": "grid_worker",
        "scopes": [f"grid:{GRID}"], "password": password}), 201)
    first = ok(http.post(f"{gw}/auth/v1/token", data={"grant_type": "password", "username": "grid-ak-02",
                                                      "password": password}))
    mine = bearer(first["access_token"])
    wsecret = ok(http.post(f"{gw}/auth/v1/mfa/totp/enrol", headers=mine))["secret"]
    ok(http.post(f"{gw}/auth/v1/mfa/totp/activate", headers=mine, json={"code": code(wsecret)}))
    r = http.post(f"{gw}/auth/v1/token", data={"grant_type": "password", "username": "grid-ak-02",
                                               "password": password})
    assert r.status_code == 401 and r.json()["code"] == "mfa.required", r.text
    worker = ok(http.post(f"{gw}/auth/v1/token", data={"grant_type": "password", "username": "grid-ak-02",
                                                       "password": password, "otp": code(wsecret, 1)}))

    # and accepts 黄磊's request
    done = ok(http.post(f"{gw}/services/v1/requests/{req['id']}/transitions", headers=bearer(worker["access_token"]),
                        json={"action": "accept", "version": req["version"]}))
    assert done["state"] == "accepted"
