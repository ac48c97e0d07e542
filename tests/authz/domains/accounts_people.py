"""Residents' accounts (issue 25, second half; gateway/accounts/phone.py, binding.py): asking for an SMS code and
the real-name binding of a phone account; proxy authorisations (gateway/accounts/proxies.py); kiosk sign-in with an ID card (gateway/accounts/kiosk.py).

Written from the policy: asking for a code is open to anyone (it is how a resident without an account starts;
the answer is the same for every phone, and the limits are per phone and per source, not per caller); the
real-name binding belongs to a resident signed in with their own phone account, which none of the matrix's demo
callers is (their accounts were made by the seed with a password): the positive cases are in
tests/gateway/test_binding.py.

Proxy authorisations, from the policy (the table in gateway/accounts/proxies.py): a helper is authorised by the
person (a resident, for themselves) or by community or street staff whose place holds the helper, on the person's
written consent; grid workers, helpers, departments, providers, evaluators, ops and member systems authorise
nobody (403 proxy.not_allowed). A record is seen and revoked by its person, its helper, the staff of the helper's
place and ops; anyone else gets 404 as for an unknown one. The target: the seeded record of proxy1 for P3 (幸福)."""
from __future__ import annotations

from datetime import timedelta

from common.demo import person_id
from tests.authz.policy import DENY, HIDE, OK, P1, P3, XF, Rule, allow
from tests.authz.test_matrix import Cell, as_person, get, holds, ids


def _binding_code(c) -> str:
    return "binding.phone_account_required" if c.role == "resident" and not c.system \
        else "binding.resident_session_required"


def _proxy_staff(c) -> bool:
    return c.role in ("community_staff", "street_staff") and c.covers(XF)


def _sees_p3_record(c) -> bool:
    """The seeded record (proxy1 for P3, place 幸福): P3, proxy1, 幸福's and the street's staff, ops."""
    return (c.role == "resident" and c.person == P3) or c.user == "proxy1" or _proxy_staff(c) or c.ops


def _grants(c) -> bool:
    """Authorising proxy1 (幸福) for P1: P1 herself, or staff whose place holds 幸福 (on written consent)."""
    return (c.role == "resident" and c.person == P1 and not c.system) or _proxy_staff(c)


def _grant_code(c) -> str | None:
    if c.role == "resident" and not c.system:
        return "proxy.not_own_person"
    if c.role in ("community_staff", "street_staff"):
        return "proxy.helper_outside"
    return "proxy.not_allowed"


RULES = {
    "kiosk.device": Rule("a kiosk's card reader is registered by platform operations only (403 forbidden)",
                         allow(lambda c: c.ops and not c.system)),
    "kiosk.session": Rule("an ID-card sign-in is the kiosk's own: only the kiosk member the reader is registered for, "
                          "calling as itself, exchanges a reading for a resident session; anyone else presenting that "
                          "reader's reading 403 kiosk.not_this_kiosk (gateway/accounts/kiosk.py)",
                          allow(lambda c: c.system and c.member == "kiosk"), lambda c: "kiosk.not_this_kiosk"),
    "proxy.grant": Rule("a helper is authorised by the person (a resident, for themselves) or by community or street "
                        "staff whose place holds the helper, on the person's written consent; another resident 403 "
                        "proxy.not_own_person, another place's staff 403 proxy.helper_outside, anyone else 403 "
                        "proxy.not_allowed (gateway/accounts/proxies.py)", allow(_grants), _grant_code),
    "proxy.list": Rule("proxy authorisations are listed by residents (their own), helpers (theirs), community and "
                       "street staff (their place's) and ops; grid workers, departments, providers, evaluators and "
                       "member systems 403 proxy.not_allowed",
                       allow(lambda c: not c.system and c.role in ("resident", "proxy", "community_staff",
                                                                   "street_staff", "ops")),
                       lambda c: "proxy.not_allowed"),
    "proxy.read": Rule("a record (proxy1 for P3, 幸福) is read and revoked by P3, proxy1, the staff of 幸福 and the "
                       "street, ops; anyone else 404 as for an unknown one",
                       allow(lambda c: _sees_p3_record(c) and not c.system, HIDE)),

    "phone.code": Rule("an SMS sign-in code is asked for by anyone, with or without a token: it is how a resident "
                       "without an account registers (issue 25); the same 202 for every phone, limited per phone "
                       "and per source address (gateway/accounts/phone.py)", lambda c: OK),
    "identity.bind.phone_account": Rule(
        "real-name binding (实名认证) is a resident's own, from the session of their phone account "
        "(gateway/accounts/binding.py): a password account's resident 403 binding.phone_account_required; staff, "
        "proxies, administrators and member systems 403 binding.resident_session_required",
        lambda c: DENY, _binding_code),
}

_phones = iter(range(10**7, 10**8))


def code_for_new_phone(w, c, oid):
    return "POST", "/auth/v1/phone/codes", {"json": {"phone": f"139{next(_phones)}"}}


def _until(w) -> str:
    return (w.gw.state.clock.now() + timedelta(days=30)).isoformat()


def grant_for_p1(w, c, oid):
    h = w.headers(c) if c.system else w.session(c)["h"]
    return "POST", "/auth/v1/proxies", {"headers": h, "json": {
        "helper": "proxy1", "person_id": P1, "actions": ["requests"], "expires_at": _until(w),
        "consent_ref": "授权矩阵书面授权书"}}


def revoke_fresh(w, c, oid):
    """A fresh record of proxy1 for P3 (made by 幸福's staff on written consent) for each call."""
    if oid is None:
        oid = w.call("staff1", "POST", "/auth/v1/proxies", json={
            "helper": "proxy1", "person_id": P3, "actions": ["bookings"], "expires_at": _until(w),
            "consent_ref": "授权矩阵书面授权书"})["id"]
    return "POST", f"/auth/v1/proxies/{oid}/revoke", {}


READER = None
HUANG_CARD = "110105197511300713"  # 黄磊, P8, on record in 安康


def _reader():
    global READER
    if READER is None:
        from gateway.accounts.card_reader import CardReader

        READER = CardReader("authz-kiosk-reader")
    return READER


def device_fresh(w, c, oid):
    return "POST", "/auth/v1/kiosk/devices", {"json": {"id": w.uid("authz-reader"), "member": "kiosk",
                                                        "public_key": _reader().public_key}}


def kiosk_reading(w, c, oid):
    """黄磊 (P8, on record) taps his card at the matrix's registered reader, a fresh reading each call."""
    return "POST", "/auth/v1/kiosk/sessions", {"json": _reader().read(
        card_number=HUANG_CARD, name="黄磊", chip_serial="AUTHZ", at=w.gw.state.clock.now())}


CELLS = {
    "POST /auth/v1/kiosk/devices": [Cell("kiosk.device", device_fresh)],
    "POST /auth/v1/kiosk/sessions": [Cell("kiosk.session", kiosk_reading)],
    "POST /auth/v1/proxies": [Cell("proxy.grant", grant_for_p1)],
    "GET /auth/v1/proxies": [Cell("proxy.list", get("/auth/v1/proxies"), listed=holds("proxy_p3"),
                                  sees=_sees_p3_record)],
    "GET /auth/v1/proxies/{auth_id}": [Cell("proxy.read", get("/auth/v1/proxies/{}", ids("proxy_p3")))],
    "POST /auth/v1/proxies/{auth_id}/revoke": [Cell("proxy.read", revoke_fresh)],

    "POST /auth/v1/phone/codes": [Cell("phone.code", code_for_new_phone)],
    "POST /auth/v1/me/identity": [Cell("identity.bind.phone_account", as_person(
        "POST", "/auth/v1/me/identity", json={"name": "黄磊", "id_number": "110105197511300713", "consent": True}))],
    "GET /auth/v1/me/identity": [Cell("identity.bind.phone_account", as_person("GET", "/auth/v1/me/identity"))],
}


def setup(w) -> None:
    """The matrix's platform: its own field keys (never the developer's var/), and a source limit above the
    number of cells asking for codes (every caller calls from the same test address)."""
    settings = w.gw.state.settings
    settings.field_keys_file = w.pt.platform.tmp / "gateway-fields.json"
    settings.sms_source_per_hour = 10_000
    from sqlalchemy import select

    from gateway.accounts.models import ProxyAuthorisation

    async def seeded() -> str:
        async with w.gw.state.db.session() as s:
            return (await s.execute(select(ProxyAuthorisation.id).where(
                ProxyAuthorisation.helper == "proxy1", ProxyAuthorisation.person_id == P3)
                .order_by(ProxyAuthorisation.id))).scalars().first()
    w.ids["proxy_p3"] = w.pt.run(seeded())
    w.call("ops1", "POST", "/auth/v1/kiosk/devices", json={"id": _reader().device_id, "member": "kiosk",
                                                          "public_key": _reader().public_key})
    w.pt.run(_card_used_before(w))


async def _card_used_before(w) -> None:
    """黄磊's card was used at a kiosk before (checked with 公安 then, tests/gateway/test_kiosk.py): svc_residents
    holds the card account's binding, so the matrix's kiosk sign-ins need no department behind them."""
    from common.ids import new_id
    from gateway.accounts.binding import ID_DOMAIN
    from gateway.accounts.kiosk import KIOSK_CONSENT, card_username
    from svc_residents import protection as prot
    from svc_residents.identity.models import AccountBinding

    number, now = HUANG_CARD, w.gw.state.clock.now()
    account = card_username(w.gw.state.phone_signin.protection.blind_index.digest(number, domain=ID_DOMAIN))
    residents = w.pt.platform.apps["svc_residents"]
    protection = residents.state.protection
    bid = new_id()
    async with residents.state.db.session() as s, s.begin():
        s.add(AccountBinding(id=bid, account=account, status="bound", name="黄磊", person_id=person_id("P8"),
                             id_number_enc=protection.cipher.encrypt(number, aad=f"svc_residents:account_bindings:{bid}"),
                             id_number_bidx=prot.id_number_index(protection, number),
                             id_number_masked=number[:6] + "********" + number[-4:], community_code="110105001002",
                             channel="kiosk", consent_text=KIOSK_CONSENT, consented_at=now, requested_at=now,
                             decided_by="公安核验", decided_at=now))


FILL = {"{auth_id}": "no-such-proxy-authorisation"}
