"""Residents' accounts (issue 25, second half; gateway/accounts/phone.py, binding.py): asking for an SMS code and
the real-name binding of a phone account.

Written from the policy: asking for a code is open to anyone (it is how a resident without an account starts;
the answer is the same for every phone, and the limits are per phone and per source, not per caller); the
real-name binding belongs to a resident signed in with their own phone account, which none of the matrix's demo
callers is (their accounts were made by the seed with a password): the positive cases are in
tests/gateway/test_binding.py."""
from __future__ import annotations

from tests.authz.policy import DENY, OK, Rule
from tests.authz.test_matrix import Cell, as_person


def _binding_code(c) -> str:
    return "binding.phone_account_required" if c.role == "resident" and not c.system \
        else "binding.resident_session_required"


RULES = {
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


CELLS = {
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
