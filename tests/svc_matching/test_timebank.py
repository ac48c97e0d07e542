"""Time bank: balanced postings, no negative member balance, idempotent posting ids, statements, concurrency,
and property tests over random operation sequences."""
from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from common.errors import Problem

COMMUNITY = "110105001001"


async def _credit(client, headers, person="p-1", amount=10, pid="c-1", unit="point"):
    return await client.post("/matching/v1/timebank/credits", headers=headers,
                             json={"posting_id": pid, "person_id": person, "community": COMMUNITY, "unit": unit,
                                   "amount": amount, "memo": "参加居民议事会"})


async def test_credit_redeem_statement_and_idempotency(client, staff, auth):
    r = await _credit(client, staff, amount=30)
    assert r.status_code == 201, r.text
    assert sum(e["amount"] for e in r.json()["entries"]) == 0
    again = await _credit(client, staff, amount=30)
    assert again.status_code == 200 and again.headers["idempotency-replayed"] == "true"
    assert again.json()["id"] == r.json()["id"]
    assert (await _credit(client, staff, amount=31)).status_code == 409       # same id, different posting
    me = auth(role="resident", scopes=["person:p-1"])
    accs = (await client.get("/matching/v1/timebank/accounts", params={"person_id": "p-1"}, headers=me)).json()
    acc = accs[0]
    assert acc["balance"] == 30 and acc["unit"] == "point"
    assert (await client.get(f"/matching/v1/timebank/accounts/{acc['id']}",
                             headers=auth(role="resident", scopes=["person:p-2"]))).status_code == 404
    red = {"posting_id": "r-1", "account_id": acc["id"], "community": COMMUNITY, "amount": 12, "memo": "兑换助浴"}
    r = await client.post("/matching/v1/timebank/redemptions", headers=me, json=red)
    assert r.status_code == 201, r.text
    # too large: a problem naming the amount, nothing written
    r = await client.post("/matching/v1/timebank/redemptions", headers=me, json={**red, "posting_id": "r-2", "amount": 19})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "amount"
    assert r.json()["errors"][0]["code"] == "ledger.insufficient_balance"
    r = await client.post("/matching/v1/timebank/redemptions", headers=me, json={**red, "posting_id": "r-3", "amount": -1})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "amount"
    r = await client.post("/matching/v1/timebank/redemptions", headers=auth(role="resident", scopes=["person:p-2"]),
                          json={**red, "posting_id": "r-4", "amount": 1})
    assert r.status_code == 404   # another person's account reads as unknown
    # staff record redemptions only for residents of their own places
    other_staff = auth(role="community_staff", scopes=["community:110105001002"])
    r = await client.post("/matching/v1/timebank/redemptions", headers=other_staff,
                          json={**red, "posting_id": "r-5", "amount": 1})
    assert r.status_code == 404
    st_ = (await client.get(f"/matching/v1/timebank/accounts/{acc['id']}/statement", params={"limit": 1},
                            headers=me)).json()
    assert [(x["amount"], x["balance_after"]) for x in st_["items"]] == [(30, 30)] and st_["next_cursor"]
    st2 = (await client.get(f"/matching/v1/timebank/accounts/{acc['id']}/statement",
                            params={"cursor": st_["next_cursor"]}, headers=me)).json()
    assert [(x["amount"], x["balance_after"]) for x in st2["items"]] == [(-12, 18)]


async def test_generic_posting_must_balance(client, staff, auth):
    await _credit(client, staff, person="p-1", amount=5)
    await _credit(client, staff, person="p-2", amount=1, pid="c-2")
    ops = auth(role="ops")
    a1 = (await client.get("/matching/v1/timebank/accounts", params={"person_id": "p-1"}, headers=ops)).json()[0]
    a2 = (await client.get("/matching/v1/timebank/accounts", params={"person_id": "p-2"}, headers=ops)).json()[0]
    body = {"posting_id": "t-1", "unit": "point", "entries": [{"account_id": a1["id"], "amount": -3},
                                                              {"account_id": a2["id"], "amount": 2}]}
    r = await client.post("/matching/v1/timebank/postings", headers=ops, json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "entries"
    body["entries"][1]["amount"] = 3
    assert (await client.post("/matching/v1/timebank/postings", headers=ops, json=body)).status_code == 201
    body = {"posting_id": "t-2", "unit": "point", "entries": [{"account_id": a1["id"], "amount": 10},
                                                              {"account_id": a2["id"], "amount": -10}]}
    r = await client.post("/matching/v1/timebank/postings", headers=ops, json=body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "entries.1.amount"
    assert (await client.post("/matching/v1/timebank/postings", headers=staff, json=body)).status_code == 403


async def test_concurrent_redemptions_never_overdraw(client, staff, auth):
    await _credit(client, staff, amount=10)
    me = auth(role="resident", scopes=["person:p-1"])
    acc = (await client.get("/matching/v1/timebank/accounts", params={"person_id": "p-1"}, headers=me)).json()[0]

    async def redeem(i, pid=None):
        return await client.post("/matching/v1/timebank/redemptions", headers=me, json={
            "posting_id": pid or f"r-{i}", "account_id": acc["id"], "community": COMMUNITY, "amount": 1})

    results = await asyncio.gather(*(redeem(i) for i in range(14)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 10 and codes.count(422) == 4, codes
    # the same posting id sent five times at once is posted once
    await _credit(client, staff, amount=3, pid="c-2")
    same = await asyncio.gather(*(redeem(0, pid="dup") for _ in range(5)))
    assert sorted(r.status_code for r in same) == [200, 200, 200, 200, 201]
    acc = (await client.get(f"/matching/v1/timebank/accounts/{acc['id']}", headers=me)).json()
    assert acc["balance"] == 2
    await assert_ledger_invariants(client.app.state.db)


async def assert_ledger_invariants(db):
    from svc_matching.models import Account, Entry
    async with db.session() as s:
        total = (await s.execute(select(func.coalesce(func.sum(Account.balance), 0)))).scalar()
        assert total == 0
        assert (await s.execute(select(func.count()).select_from(Account).where(
            Account.allow_negative.is_(False), Account.balance < 0))).scalar() == 0
        for acc in (await s.execute(select(Account))).scalars():
            entries = (await s.execute(select(func.coalesce(func.sum(Entry.amount), 0))
                                       .where(Entry.account_id == acc.id))).scalar()
            assert entries == acc.balance
        unbalanced = (await s.execute(select(Entry.posting_id).group_by(Entry.posting_id)
                                      .having(func.sum(Entry.amount) != 0))).all()
        assert unbalanced == []


# --- property tests: random sequences of credits, redemptions, transfers and retries --------------------------

PEOPLE = ["a", "b", "c"]
op_strategy = st.one_of(
    st.tuples(st.just("credit"), st.sampled_from(PEOPLE), st.integers(1, 20)),
    st.tuples(st.just("redeem"), st.sampled_from(PEOPLE), st.integers(1, 30)),
    st.tuples(st.just("transfer"), st.sampled_from(PEOPLE), st.sampled_from(PEOPLE), st.integers(1, 30)),
    st.tuples(st.just("retry"), st.integers(0, 50)),
)


async def _run_ops(ops) -> None:
    from common.db import Database
    from svc_matching.models import Account, Base
    from svc_matching.timebank import service

    now = datetime(2026, 11, 23, tzinfo=timezone.utc)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{tmp}/ledger.db")
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            done: list[tuple] = []
            expected = {p: 0 for p in PEOPLE}
            for n, op in enumerate(ops):
                if op[0] == "retry":
                    if not done:
                        continue
                    op = done[op[1] % len(done)]
                    pid = op[-1]
                else:
                    pid = f"op-{n}"
                    op = (*op, pid)
                try:
                    async with db.session() as s, s.begin():
                        if op[0] == "credit":
                            _, created = await service.credit_member(
                                s, person_id=op[1], community=COMMUNITY, unit="minute", amount=op[2],
                                client_posting_id=pid, memo=None, reference=None, created_by="t", now=now)
                            delta = {op[1]: op[2]}
                        elif op[0] == "redeem":
                            acc = await service.open_account(s, "person", op[1], "minute", "member", now)
                            _, created = await service.redeem(s, account=acc, community=COMMUNITY, amount=op[2],
                                                              client_posting_id=pid, memo=None, reference=None,
                                                              created_by="t", now=now)
                            delta = {op[1]: -op[2]}
                        else:
                            if op[1] == op[2]:
                                continue
                            a = await service.open_account(s, "person", op[1], "minute", "member", now)
                            b = await service.open_account(s, "person", op[2], "minute", "member", now)
                            _, created = await service.post(s, client_posting_id=pid, kind="transfer", unit="minute",
                                                            entries=[(a.id, -op[3]), (b.id, op[3])], memo=None,
                                                            reference=None, created_by="t", now=now)
                            delta = {op[1]: -op[3], op[2]: op[3]}
                    if created:
                        done.append(op)
                        for k, v in delta.items():
                            expected[k] += v
                except Problem as exc:
                    assert exc.status == 422 and exc.errors[0]["code"] == "ledger.insufficient_balance"
                    # refused only when it would really have overdrawn
                    debit = op[1]
                    amount = op[2] if op[0] == "redeem" else op[3]
                    assert expected[debit] < amount
                await assert_ledger_invariants(db)
            async with db.session() as s:
                for p in PEOPLE:
                    acc = (await s.execute(select(Account).where(Account.owner_id == p))).scalar_one_or_none()
                    assert (acc.balance if acc else 0) == expected[p]
        finally:
            await db.dispose()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_strategy, min_size=1, max_size=12))
def test_ledger_properties(ops):
    asyncio.run(_run_ops(ops))
