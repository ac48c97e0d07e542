"""The household file (一户一档): the household, its members with their tags, and what the other services hold
about them: requests (svc_services), matches and time-bank balances (svc_matching).

The upstream parts are read through the gateway with the caller's own token, so each service applies its own
object-level rules to the caller; the parts are fetched in parallel and each is independent: a part whose service
is down, slow or refuses the caller is returned as `{"status": "unavailable" | "forbidden", "reason": ...}` and
the rest of the file is still returned.

The upstream lists filter by grid, not by person or household, so this reads the household's grid (at most
`upstream_max_pages` pages) and keeps what belongs to the household's members; a part cut short says
`"truncated": true`.
"""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import select

from common.auth import Principal
from common.db import Database
from common.http_client import ServiceClient, UpstreamError, UpstreamTimeout
from svc_residents.households import service as households
from svc_residents.households.schemas import HouseholdOut
from svc_residents.persons.models import Person
from svc_residents.persons.service import person_out, tags_for

PAGE = 200


class PartUnavailable(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def _get(client: ServiceClient, path: str, params: dict[str, Any]) -> Any:
    try:
        resp = await client.get(path, params=params)
    except UpstreamTimeout:
        raise PartUnavailable("unavailable", f"{client.name} 应答超时 / timed out") from None
    except UpstreamError:
        raise PartUnavailable("unavailable", f"{client.name} 暂时无法访问 / unreachable") from None
    if resp.status_code in (401, 403):
        raise PartUnavailable("forbidden", f"{client.name} 拒绝了当前用户（HTTP {resp.status_code}）/ "
                                           f"not allowed for this caller")
    if resp.status_code != 200:
        raise PartUnavailable("unavailable", f"{client.name} 返回 HTTP {resp.status_code}")
    try:
        return resp.json()
    except ValueError:
        raise PartUnavailable("unavailable", f"{client.name} 应答无法解析 / unreadable answer") from None


async def _pages(client: ServiceClient, path: str, params: dict[str, Any], max_pages: int, keep) -> tuple[list, bool]:
    """Items of a cursor-paginated list that `keep` accepts, and whether the list was cut short."""
    items, cursor = [], None
    for _ in range(max_pages):
        page = await _get(client, path, {**params, "limit": PAGE, **({"cursor": cursor} if cursor else {})})
        items += [i for i in page.get("items", []) if keep(i)]
        cursor = page.get("next_cursor")
        if not cursor:
            return items, False
    return items, True


async def _part(coro) -> dict[str, Any]:
    try:
        return {"status": "ok", **await coro}
    except PartUnavailable as exc:
        return {"status": exc.status, "reason": exc.reason}


async def _requests(client: ServiceClient, max_pages: int, grid: str, members: set[str]) -> dict[str, Any]:
    items, truncated = await _pages(client, "/services/v1/requests", {"grid": grid}, max_pages,
                                    lambda r: r.get("person_id") in members)
    keys = ("id", "item_code", "category", "state", "state_name", "priority", "person_id", "channel", "overdue",
            "created_at", "updated_at", "resolved_at", "closed_at")
    return {"items": [{k: r[k] for k in keys if k in r} for r in items], "truncated": truncated}


async def _matches(client: ServiceClient, max_pages: int, grid: str, household_id: str,
                   members: set[str]) -> dict[str, Any]:
    needs, truncated = await _pages(client, "/matching/v1/needs", {"place_code": grid}, max_pages,
                                    lambda n: n.get("household_id") == household_id or n.get("person_id") in members)
    offers = await asyncio.gather(*(_get(client, "/matching/v1/offers", {"need_id": n["id"], "limit": PAGE})
                                    for n in needs if n.get("status") != "open" or n.get("matched_id")))
    by_need: dict[str, list] = {}
    for page in offers:
        for o in page.get("items", []):
            by_need.setdefault(o.get("need_id"), []).append(
                {k: o.get(k) for k in ("id", "provider_kind", "provider_id", "status", "created_at", "responded_at",
                                       "completed_at", "hours", "rating")})
    keys = ("id", "category", "person_id", "household_id", "priority", "status", "matched_kind", "matched_id",
            "matched_at", "created_at")
    return {"items": [{**{k: n.get(k) for k in keys}, "offers": by_need.get(n["id"], [])} for n in needs],
            "truncated": truncated}


async def _timebank(client: ServiceClient, members: list[str]) -> dict[str, Any]:

    async def one(pid: str):
        try:
            return pid, await _get(client, "/matching/v1/timebank/accounts", {"person_id": pid})
        except PartUnavailable as exc:
            if exc.status == "forbidden":  # this caller may not see that member's accounts
                return pid, None
            raise

    results = await asyncio.gather(*(one(p) for p in members))
    balances, withheld = [], []
    for pid, accounts in results:
        if accounts is None:
            withheld.append(pid)
            continue
        if not isinstance(accounts, list):  # an answer of another shape: this part cannot be read
            raise PartUnavailable("unavailable", f"{client.name} 应答无法解析 / unreadable answer")
        for a in accounts:
            if not isinstance(a, dict):
                continue
            balances.append({"person_id": pid, "account_id": a.get("id"), "unit": a.get("unit"),
                             "kind": a.get("kind"), "balance": a.get("balance")})
    return {"balances": balances, "withheld": withheld}


async def household_file(db: Database, principal: Principal, household_id: str, *, services: ServiceClient,
                         matching: ServiceClient, max_pages: int, now: datetime) -> dict[str, Any]:
    """`services` / `matching`: the clients of svc_services and svc_matching; `max_pages`: of each grid list read."""
    async with db.session() as session:
        household = await households.get_household(session, principal, household_id)
        members = list((await session.execute(
            select(Person).where(Person.household_id == household.id, Person.merged_into.is_(None))
            .order_by(Person.id))).scalars())
        tags = await tags_for(session, [m.id for m in members])
    ids = [m.id for m in members]
    requests, matches, timebank = await asyncio.gather(
        _part(_requests(services, max_pages, household.grid_code, set(ids))),
        _part(_matches(matching, max_pages, household.grid_code, household.id, set(ids))),
        _part(_timebank(matching, ids)))
    return {"household": HouseholdOut.model_validate(household).model_dump(mode="json"),
            "members": [person_out(m, tags.get(m.id, []), now=now).model_dump(mode="json") for m in members],
            "requests": requests, "matches": matches, "timebank": timebank}
