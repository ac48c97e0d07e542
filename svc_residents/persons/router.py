from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from common.deps import DbSession
from common.acting import acts, reads_only
from common.auth import Principal, get_principal
from common.clock import Clock, get_clock
from common.errors import invalid, request_language
from common.pagination import Page, PageParams, cursor_key, encode_cursor
from common.validators import COMMUNITY_CODE_PATTERN, GRID_CODE_PATTERN
from svc_residents import grants as exchange_grants, protection as prot
from svc_residents.grants import GrantSource
from svc_residents.protection import AppProtection, FieldProtection
from svc_residents.deps import Idempotent
from svc_residents.codes import TagCode
from svc_residents.persons import exchange, service
from svc_residents.persons.models import Person
from svc_residents.registrations.models import PersonRegistration
from svc_residents.registrations.schemas import RegistrationOut
from svc_residents.registrations.service import registration_out
from svc_residents.persons.schemas import (ConsentIn, ConsentOut, PersonCreate, PersonOut, PersonSearch, PersonUpdate,
                                           TagIn, TagOut)

router = APIRouter(prefix="/residents/v1/persons", tags=["persons 居民"])


class AccessLogEntry(BaseModel):
    model_config = {"from_attributes": True}

    id: str
    occurred_at: datetime
    member: str
    user_id: str
    role: str
    acting_for: str | None
    fields: list[str]
    purpose: str
    request_id: str | None


@router.post("", status_code=201, response_model=PersonOut, summary="登记居民 Register a person",
             responses={202: {"model": RegistrationOut,
                              "description": "已提交，待核实后生效 (the ID number needs confirmation first)"}})
async def create_person(idem: Idempotent, body: PersonCreate, request: Request, protection: AppProtection, principal: Principal = Depends(get_principal),
                        clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        made = await service.create_person(session, principal, protection, body, now=now)
        if isinstance(made, PersonRegistration):  # on record out of the caller's reach: registrations/service.py
            return 202, registration_out(made, principal, None, request_language(request))
        person, tags = made
        return 201, service.person_out(person, tags, now=now)

    # The stored fingerprint must not be a plain hash of the ID number (its space is small enough to brute-force):
    # the sensitive fields enter it through the keyed blind index.
    keyed = body.model_dump()
    for name in ("id_number", "phone"):
        if keyed.get(name):
            keyed[name] = prot.fingerprint_digest(protection, name, keyed[name])
    return await idem.run(keyed, create, now=now)


async def _search(session: AsyncSession, protection: FieldProtection, grants: GrantSource | None, request: Request,
                  principal: Principal, q: PersonSearch, now: datetime) -> Page[PersonOut]:
    if principal.role in exchange_grants.GRANT_ROLES:
        return await _grant_search(session, protection, grants, request, principal, q, now)
    after = cursor_key(q.cursor)
    rows = await service.search(session, principal, protection, q, after, now=now)
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    tags = await service.tags_for(session, [r.id for r in rows])
    return Page[PersonOut](items=[service.person_out(r, tags.get(r.id, []), now=now) for r in rows],
                           next_cursor=encode_cursor(rows[-1].id) if more else None)


def _purpose(request: Request) -> str | None:
    value = request.headers.get(exchange_grants.PURPOSE_HEADER)
    return unquote(value, errors="replace") if value else None


async def _grant_search(session: AsyncSession, protection: FieldProtection, grants: GrantSource | None,
                        request: Request, principal: Principal, q: PersonSearch, now: datetime) -> Response:
    """A department or member system with a grant: exact ID number only, fields as the grant allows."""
    grant = await exchange_grants.grant_for(grants, principal, request.headers, now)
    exchange.check_search(q)
    async with session.begin():
        rows = await exchange.search(session, protection, q)
        tags = await service.tags_for(session, [r.id for r in rows])
        items = [exchange.view(session, principal, protection, grant, r, tags.get(r.id, []), service.person_out,
                               _purpose(request), now=now) for r in rows]
    return Response(json.dumps({"items": items, "next_cursor": None}, ensure_ascii=False, default=str),
                    media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("", response_model=Page[PersonOut], summary="居民列表（脱敏）List persons in scope")
async def list_persons(session: DbSession, protection: AppProtection, grants: exchange_grants.AppGrants,
                       request: Request, name: str | None = Query(None, min_length=1, max_length=50),
                       grid_code: str | None = Query(None, pattern=GRID_CODE_PATTERN),
                       community_code: str | None = Query(None, pattern=COMMUNITY_CODE_PATTERN),
                       household_id: str | None = Query(None, max_length=36), tag: TagCode | None = None,
                       age_min: int | None = Query(None, ge=0, le=150), age_max: int | None = Query(None, ge=0, le=150),
                       page: PageParams = Depends(), principal: Principal = Depends(get_principal),
                       clock: Clock = Depends(get_clock)):
    for sensitive in ("id_number", "phone"):
        if sensitive in request.query_params:  # refuse rather than silently list everyone
            raise invalid(sensitive, "search.use_post", "身份证号、手机号请通过 POST /residents/v1/persons/search 的请求体查询",
                          "Search by ID number or phone with POST /residents/v1/persons/search", where="query")
    q = PersonSearch(name=name, grid_code=grid_code, community_code=community_code, household_id=household_id,
                     tag=tag, age_min=age_min, age_max=age_max, limit=page.limit, cursor=page.cursor)
    return await _search(session, protection, grants, request, principal, q, clock.now())


@router.post("/search", response_model=Page[PersonOut], dependencies=[reads_only()],
             summary="检索居民（身份证号、手机号精确匹配走请求体）Search persons")
async def search_persons(session: DbSession, protection: AppProtection, grants: exchange_grants.AppGrants,
                         body: PersonSearch, request: Request, principal: Principal = Depends(get_principal),
                         clock: Clock = Depends(get_clock)):
    return await _search(session, protection, grants, request, principal, body, clock.now())


@router.get("/{person_id}", response_model=PersonOut, summary="居民详情 Get a person (masked unless reveal=true)")
async def get_person(session: DbSession, person_id: str, request: Request, protection: AppProtection,
                     grants: exchange_grants.AppGrants, principal: Principal = Depends(get_principal),
                     reveal: bool = Query(False, description="请求明文身份证号与手机号（须有权限，并记录审计）"),
                     purpose: str | None = Query(None, max_length=200, description="查看明文的用途，reveal=true 时必填"),
                     clock: Clock = Depends(get_clock)):
    now = clock.now()
    if principal.role in exchange_grants.GRANT_ROLES:  # a department or member system: only under a grant
        grant = await exchange_grants.grant_for(grants, principal, request.headers, now)
        async with session.begin():
            person = await session.get(Person, person_id)
            if person is None:
                raise service.not_found()
            tags = await service.tags_for(session, [person.id])
            out = exchange.view(session, principal, protection, grant, person, tags.get(person.id, []),
                                service.person_out, purpose or _purpose(request), now=now)
        return Response(json.dumps(out, ensure_ascii=False, default=str), media_type="application/json",
                        headers={"Cache-Control": "no-store"})
    async with session.begin():
        person = await service.get_person(session, principal, person_id)
        clear = (await service.reveal_person(session, principal, protection, person, purpose, now=now)
                 if reveal else None)
        tags = await service.tags_for(session, [person.id])
        out = service.person_out(person, tags.get(person.id, []), now=now, clear=clear)
    if clear:
        return Response(out.model_dump_json(), media_type="application/json",
                        headers={"Cache-Control": "no-store"})
    return out


@router.patch("/{person_id}", response_model=PersonOut, dependencies=[acts("profile.contact")],
              summary="修改居民档案 Update a person")
async def update_person(session: DbSession, person_id: str, body: PersonUpdate, protection: AppProtection,
                        principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    now = clock.now()
    async with session.begin():
        person = await service.update_person(session, principal, protection, person_id, body, now=now)
        tags = await service.tags_for(session, [person.id])
        return service.person_out(person, tags.get(person.id, []), now=now)


@router.put("/{person_id}/tags/{code}", response_model=TagOut, dependencies=[acts("profile.tags")],
            summary="设置特殊群体标签 Set a tag")
async def put_tag(session: DbSession, person_id: str, code: TagCode, body: TagIn, request: Request,
                  principal: Principal = Depends(get_principal), clock: Clock = Depends(get_clock)):
    if body.code != code:
        raise invalid("code", "tag.code_mismatch", "路径与请求体中的标签代码不一致", "Path and body tag codes differ")
    now = clock.now()
    async with session.begin():
        return service.tag_out(await service.set_tag(session, principal, person_id, body, now=now), now)


@router.delete("/{person_id}/tags/{code}", status_code=204, dependencies=[acts("profile.tags")],
               summary="撤销标签 Remove a tag")
async def delete_tag(session: DbSession, person_id: str, code: TagCode, request: Request, principal: Principal = Depends(get_principal),
                     clock: Clock = Depends(get_clock)):
    async with session.begin():
        await service.remove_tag(session, principal, person_id, code, now=clock.now())
    return Response(status_code=204)


@router.post("/{person_id}/consents", status_code=201, response_model=ConsentOut,
             dependencies=[acts("profile.consents")], summary="记录授权同意 Record consent")
async def add_consent(idem: Idempotent, person_id: str, body: ConsentIn, principal: Principal = Depends(get_principal),
                      clock: Clock = Depends(get_clock)):
    now = clock.now()

    async def create(session):
        return 201, ConsentOut.model_validate(await service.add_consent(session, principal, person_id, body, now=now))

    return await idem.run(body.model_dump(), create, now=now)


@router.get("/{person_id}/consents", response_model=list[ConsentOut], summary="授权记录 Consent history")
async def list_consents(session: DbSession, person_id: str, request: Request, principal: Principal = Depends(get_principal)):
    return [ConsentOut.model_validate(c) for c in await service.list_consents(session, principal, person_id)]


@router.get("/{person_id}/access-log", response_model=Page[AccessLogEntry],
            summary="明文查看记录 Who read this person's clear data")
async def access_log(session: DbSession, person_id: str, request: Request, page: PageParams = Depends(),
                     principal: Principal = Depends(get_principal)):
    rows = await service.access_log(session, principal, person_id,
                                    after=page.after_key(), limit=page.limit)
    return page.page(rows, key=lambda r: r.id, item=AccessLogEntry.model_validate)
