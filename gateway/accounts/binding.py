"""Real-name binding (实名认证) of a resident's phone account (issue 25).

`POST /auth/v1/me/identity`: the resident, signed in by phone, gives name, ID number and consent (and, for a
person with no record yet, the community they live in). The gateway checks the ID number's checksum, then asks
svc_residents (`POST /residents/v1/account-bindings`, its own call with the gateway's assertion), which asks 公安
through the exchange and finds the person by the number's blind index (svc_residents/identity/binding.py):
- bound: the account now carries the person's scopes (`person:`, `household:`), and the answer brings a new
  access token of the same session with them, so `POST /services/v1/requests` works at once;
- pending: no record holds the number; the community's staff confirm it (making the record) or refuse it, and
  `GET /auth/v1/me/identity` picks the outcome up;
- refused by 公安 (a name it does not confirm), a bad checksum, no consent, a number bound to another account:
  a problem naming the field, nothing written on either side; every refusal in the account audit.
"""
from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy import select

from common.auth import Principal
from common.clock import local_date
from common.crypto import mask_id_number
from common.errors import Problem, invalid
from common.validators import ValidationFailure, parse_resident_id
from gateway.accounts.audit import entry, record_refusal
from gateway.accounts.models import AuthSession, ResidentAccount
from gateway.accounts.own_calls import own_client, own_token
from gateway.members.models import User

ID_DOMAIN = "account.id_number"
CONSENT_TEXT = ("本人同意一网通办平台将本人姓名与身份证号提交公安机关核验，用于账号实名认证与关联居民档案。 "
                "I agree that my name and ID number are checked with the police to bind my account.")


@dataclass
class Binder:
    client: httpx.AsyncClient | None
    token: object

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def call(self, method: str, path: str, *, lang: str | None, json: dict | None = None,
                   bearer: str | None = None) -> httpx.Response:
        """The gateway's own call; with `bearer`, on a caller's behalf (svc_residents checks that caller)."""
        if self.client is None:
            raise Problem(503, "upstream_unavailable", ("居民档案服务未配置", "svc_residents is not configured"))
        headers = {"Authorization": f"Bearer {bearer or await self.token()}"}
        if lang:
            headers["Accept-Language"] = lang
        try:
            return await self.client.request(method, path, json=json, headers=headers)
        except httpx.HTTPError:
            raise Problem(503, "upstream_unavailable", ("居民档案服务暂时无法访问，请稍后再试",
                                                        "svc_residents is unavailable; try again")) from None


def build_binder(issuer, residents_upstream) -> Binder:
    return Binder(own_client(residents_upstream) if residents_upstream else None, own_token(issuer))


def _passed_on(resp: httpx.Response) -> Problem:
    """svc_residents' problem, as it said it (in the caller's language)."""
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if resp.status_code >= 500 or not isinstance(body, dict):
        return Problem(503, "upstream_unavailable", ("居民档案服务暂时无法应答，请稍后再试",
                                                     "svc_residents could not answer; try again"))
    errors = body.get("errors") if isinstance(body.get("errors"), list) else None
    return Problem(resp.status_code, body.get("code") or "error", body.get("detail") or body.get("title"),
                   errors=errors)


@dataclass
class Ctx:
    parts: object  # gateway.accounts.deps.AccountParts
    principal: Principal
    now: object
    source: str | None
    lang: str | None


def _out(acc: ResidentAccount, token: dict | None = None) -> dict:
    out = {"binding": acc.binding, "person_id": acc.person_id, "registration_id": acc.registration_id,
           "name": acc.name, "id_number": acc.id_number_masked, "bound_at": acc.bound_at}
    if token:
        out.update(access_token=token["access_token"], token_type="Bearer", expires_in=token["expires_in"])
    return out


async def _account(session, principal: Principal) -> ResidentAccount:
    if principal.role != "resident" or not principal.claims.get("sid"):
        raise Problem(403, "binding.resident_session_required", ("须以居民本人登录后办理实名认证",
                                                                 "Sign in as the resident first"))
    acc = await session.get(ResidentAccount, principal.user)
    if acc is None:
        raise Problem(403, "binding.phone_account_required", ("该账号不是手机号注册的居民账号",
                                                              "This is not a phone-registered resident account"))
    return acc


async def _apply(ctx: Ctx, acc_name: str, answer: dict, *, id_bidx: str, masked: str, name: str) -> dict:
    """svc_residents' answer onto the account (and its user's scopes); the session's new token when bound."""
    state, now = ctx.parts, ctx.now
    async with state.db.session() as session, session.begin():
        acc = await session.get(ResidentAccount, acc_name, with_for_update=True)
        user = await session.get(User, acc_name, with_for_update=True)
        before = {"binding": acc.binding, "scopes": list(user.scopes or [])}
        acc.name, acc.id_number_masked, acc.id_number_bidx = name, masked, id_bidx
        acc.registration_id = answer.get("id")
        if answer.get("status") == "bound" and answer.get("person_id"):
            acc.binding, acc.person_id, acc.bound_at = "bound", answer["person_id"], now
            scopes = [f"person:{answer['person_id']}"]
            if answer.get("household_id"):
                scopes.append(f"household:{answer['household_id']}")
            user.scopes, user.display_name = scopes, name
            user.version, user.updated_at = (user.version or 1) + 1, now
        elif answer.get("status") == "refused":
            acc.binding, acc.id_number_bidx = "refused", None
        else:
            acc.binding = "pending"
        session.add(entry(now=now, actor=ctx.principal.user, actor_role="resident", action="account.bind",
                          target=acc_name, source=ctx.source, before=before,
                          after={"binding": acc.binding, "person_id": acc.person_id, "id_number": masked,
                                 "scopes": list(user.scopes or [])}))
        token = None
        if acc.binding == "bound":
            sess = await session.get(AuthSession, ctx.principal.claims.get("sid"))
            if sess is not None:
                token = state.sessions.access(user, sess, now)
        return _out(acc, token)


async def bind(ctx: Ctx, *, name: str, id_number: str, consent: bool, community: str | None) -> tuple[int, dict]:
    state, now = ctx.parts, ctx.now

    async def refused(p: Problem, target: str | None) -> Problem:
        await record_refusal(state.db, now=now, actor=ctx.principal.user, actor_role=ctx.principal.role,
                             action="account.bind", target=target, code=p.code if p.code != "validation_failed"
                             else (p.errors or [{}])[0].get("code", p.code), source=ctx.source)
        return p

    try:
        async with state.db.session() as session:
            acc = await _account(session, ctx.principal)
            try:
                number = parse_resident_id(id_number.strip(), today=local_date(now)).number
            except ValidationFailure as exc:
                raise invalid("id_number", exc.code, exc.message_zh, exc.message_en) from None
            if not consent:
                raise invalid("consent", "consent.required", "须同意由公安核验姓名与身份证号",
                              "Consent to the police identity check is required")
            if acc.binding == "bound":
                raise Problem(409, "binding.exists", ("该账号已实名认证", "This account is bound already"))
            protection = state.phone.protection
            id_bidx = protection.blind_index.digest(number, domain=ID_DOMAIN)
            other = (await session.execute(select(ResidentAccount.username).where(
                ResidentAccount.id_number_bidx == id_bidx, ResidentAccount.username != acc.username))).first()
            if other is not None:
                raise Problem(409, "binding.id_number_taken", ("该身份证号已绑定其他账号，如有疑问请联系社区",
                                                                "This ID number is bound to another account"))
        resp = await state.binder.call("POST", "/residents/v1/account-bindings", lang=ctx.lang, json={
            "account": acc.username, "name": name.strip(), "id_number": number, "consent": True,
            "consent_text": CONSENT_TEXT, "channel": "app", "community": community})
        if resp.status_code not in (200, 202):
            raise _passed_on(resp)
        out = await _apply(ctx, acc.username, resp.json(), id_bidx=id_bidx, masked=mask_id_number(number),
                           name=name.strip())
    except Problem as p:
        raise await refused(p, ctx.principal.user) from None
    return (200 if out["binding"] == "bound" else 202), out


async def read(ctx: Ctx) -> dict:
    """The account's binding; a pending one is asked after (staff may have decided meanwhile)."""
    state = ctx.parts
    async with state.db.session() as session:
        acc = await _account(session, ctx.principal)
        if acc.binding != "pending" or not acc.registration_id:
            return _out(acc)
        binding_id, masked, name, bidx = acc.registration_id, acc.id_number_masked, acc.name, acc.id_number_bidx
    resp = await state.binder.call("GET", f"/residents/v1/account-bindings/{binding_id}", lang=ctx.lang)
    if resp.status_code != 200:
        raise _passed_on(resp)
    answer = resp.json()
    if answer.get("status") == "pending":
        async with state.db.session() as session:
            return _out(await session.get(ResidentAccount, ctx.principal.user))
    return await _apply(ctx, ctx.principal.user, answer, id_bidx=bidx, masked=masked, name=name)
