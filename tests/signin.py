"""The tests' one way of signing a demo person in by password: with the second factor where the person has one
(the demo ops1: ops sign in with TOTP, gateway/settings.py), the code computed from the seeded secret
(common/demo.py DEMO_TOTP_SECRETS) at the platform's clock.

A TOTP code is accepted once per 30-s step (gateway/accounts/mfa.py), so `SignIns` keeps such a person's session
and renews its access token with the refresh token instead of signing in again."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from common.clock import Clock
from common.demo import DEMO_PASSWORD, DEMO_TOTP_SECRETS
from gateway.accounts.seed import demo_code


def password_form(username: str, now: datetime, *, password: str = DEMO_PASSWORD, step_offset: int = 0,
                  **extra: Any) -> dict[str, str]:
    """The token endpoint's form for a password sign-in, with `otp` for a person with a demo authenticator."""
    form = {"grant_type": "password", "username": username, "password": password}
    code = demo_code(username, now, step_offset)
    if code:
        form["otp"] = code
    return {**form, **extra}


class SignIns:
    """Sign-ins at a gateway of real processes (their clock: the system's, `common.clock.Clock`)."""

    def __init__(self, gw: str, clock: Clock | None = None) -> None:
        self.gw, self.clock = gw, clock or Clock()
        self._kept: dict[str, tuple[dict, float]] = {}  # username → (token answer, when it was got)

    def answer(self, username: str) -> dict:
        if username not in DEMO_TOTP_SECRETS:  # a fresh session each time, as before
            return self._sign_in(username)
        now = self.clock.timestamp()
        kept = self._kept.get(username)
        if kept and now < kept[1] + kept[0]["expires_in"] - 60:
            return kept[0]
        out = None
        if kept and kept[0].get("refresh_token"):
            r = httpx.post(f"{self.gw}/auth/v1/token", data={"grant_type": "refresh_token",
                                                             "refresh_token": kept[0]["refresh_token"]}, timeout=30)
            out = r.json() if r.status_code == 200 else None
        out = out or self._sign_in(username)
        self._kept[username] = (out, now)
        return out

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.answer(username)['access_token']}"}

    def _sign_in(self, username: str) -> dict:
        r = None
        for offset in (0, 1):  # this step's code already used (by another sign-in): the next step's is good too
            r = httpx.post(f"{self.gw}/auth/v1/token", timeout=30,
                           data=password_form(username, self.clock.now(), step_offset=offset))
            if r.status_code == 200 or r.json().get("code") != "mfa.code_reused":
                break
        assert r.status_code == 200, r.text
        return r.json()
