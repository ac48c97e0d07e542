"""An anonymous response cannot be joined back to its person from svc_metrics' database alone (issue 29):
no shared ids or tokens, no times, no row order, and attributes that always fit at least five invitees."""
from __future__ import annotations

import json
from collections import Counter

from sqlalchemy import inspect, text

from tests.svc_metrics.conftest import C1, G1
from tests.svc_metrics.test_surveys import PEOPLE, published, register, resident, token_of


async def test_an_anonymous_response_cannot_be_joined_to_its_person(client, auth, post, backend):
    staff = auth(role="community_staff", user="staff1", scopes=[f"community:{C1}"])
    await register(post)
    s = await published(client, staff)
    sid = s["id"]
    assert (await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)).status_code == 201
    order = [pid for pid, *_ in PEOPLE[:12]][::-1][:8]        # answered in a known order, each a different score
    tokens = {}
    for k, pid in enumerate(order):
        tokens[pid] = await token_of(client, resident(auth, pid), sid)
        r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=resident(auth, pid), json={
            "token": tokens[pid], "answers": {"overall": 1 + k % 5, "used": "no", "comment": f"第{k}位"}})
        assert r.status_code == 201
    cur = (await client.get(f"/metrics/v1/surveys/{sid}", headers=staff)).json()
    assert (await client.post(f"/metrics/v1/surveys/{sid}/transitions", headers=staff,
                              json={"action": "close", "version": cur["version"]})).status_code == 200

    async with client.app.state.db.engine.connect() as conn:
        def dump(sync):
            insp = inspect(sync)
            return {t: ([c["name"] for c in insp.get_columns(t)],
                        [tuple(r) for r in sync.execute(text(f"SELECT * FROM {t}"))])
                    for t in insp.get_table_names() if t != "alembic_version_svc_metrics"}
        tables = await conn.run_sync(dump)
        physical = [r[0] for r in (await conn.execute(text(
            "SELECT id FROM survey_responses" + (" ORDER BY rowid" if backend == "sqlite" else " ORDER BY ctid"))))]
        xmins = {} if backend == "sqlite" else {t: {r[0] for r in await conn.execute(text(
            f"SELECT xmin::text FROM {t}"))} for t in ("survey_responses", "survey_tallies", "survey_tokens")}
        tokens_heap = [r[0] for r in await conn.execute(text("SELECT digest FROM survey_tokens ORDER BY rowid"))] \
            if backend == "sqlite" else []

    cols, responses = tables["survey_responses"]
    resp = [dict(zip(cols, r)) for r in responses]
    assert len(resp) == 8
    # 1. the response row holds no person, no token, no time
    assert all(r["person_id"] is None and r["entered_by"] is None for r in resp)
    assert not [c for c in cols if c.endswith("_at") or "time" in c or c in ("token", "digest", "invitation_id")]
    # 2. no value of a response (its id, or any attribute) appears in a person-linked row but the survey's own
    #    id and the place and age band the invitees share
    person_linked = [dict(zip(tables["survey_invitations"][0], r)) for r in tables["survey_invitations"][1]]
    linked_values = {str(v) for row in person_linked for k, v in row.items() if k not in ("survey_id", "delivered")}
    for r in resp:
        for k, v in r.items():
            if k in ("survey_id", "place", "channel", "age_band", "groups", "answers", "person_id", "entered_by"):
                continue
            assert str(v) not in linked_values, k
    # 3. the tokens left nowhere a person is: invitations kept no token (handed out or dropped at close)
    assert all(row["token"] is None for row in person_linked)
    spent_digests = {r[0] for r in tables["survey_tokens"][1]}
    everywhere = {str(v) for t, (_, rows) in tables.items() if t != "survey_tokens" for row in rows for v in row}
    assert not spent_digests & everywhere and not set(tokens.values()) & everywhere
    # 4. no order: the rows lie in the order of their random ids (re-written at close), not the answer order; the
    #    tallies (their autoincrement ids said which answer values came first) and the spent tokens (their row
    #    versions said when) were re-written at close too, the tallies with new ids in the order of their keys
    assert physical == sorted(physical)
    tcols, tallies = tables["survey_tallies"]
    tally = sorted((dict(zip(tcols, r)) for r in tallies), key=lambda t: t["id"])
    assert [(t["place"], t["question"], t["value"], t["dim"], t["dim_value"]) for t in tally] == \
        sorted((t["place"], t["question"], t["value"], t["dim"], t["dim_value"]) for t in tally)
    assert tokens_heap == sorted(tokens_heap)
    if backend == "postgresql":   # one transaction (the close) wrote them all: row versions do not date them
        assert len(set().union(*xmins.values())) == 1, xmins
    # 5. the attributes a response carries fit at least five invitees (k-anonymity against the person feed)
    invitees = Counter((p[1], p[2]) for p in PEOPLE if p[1].startswith(C1))
    for r in resp:
        fits = sum(n for (grid, band), n in invitees.items()
                   if grid.startswith(r["place"]) and (not r["age_band"] or band == r["age_band"]))
        assert fits >= 5, r
    # 6. nothing written beside the responses names a respondent: the invitation notices, written at invitation,
    #    name every invitee alike (respondent or not) and no token; every other outbox row (the demand aggregate,
    #    the rectification's warning notice) names no person; no idempotency record ties a caller to the moment
    #    of a response
    outbox = [dict(zip(tables["outbox"][0], row)) for row in tables["outbox"][1]]
    invitations = [r for r in outbox if r["type"] == "notice.survey.invited"]
    told = sorted(p for r in invitations
                  for p in (json.loads(r["data"]) if isinstance(r["data"], str) else r["data"])["person_ids"])
    assert told == sorted(p for p, g, *_ in PEOPLE if g.startswith(C1))
    others = [r for r in outbox if r["type"] != "notice.survey.invited"]
    assert [r["type"] for r in others].count("survey_need.demand") == 1
    assert not any(p in str(r) for r in others for p, *_ in PEOPLE)
    assert not any(tok in str(r) for r in outbox for tok in tokens.values())
    assert not [r for r in tables["idempotency_keys"][1] if "responses" in str(r)]


async def test_a_scope_narrower_than_the_survey_is_a_sub_group(client, auth, post):
    """Results of a grid with fewer than five respondents are not shown, whether asked by=grid or with the grid as
    the scope of a community's survey (else the scope would show what the sub-group hides)."""
    staff = auth(role="community_staff", user="staff1", scopes=[f"community:{C1}"])
    await register(post)
    sid = (await published(client, staff))["id"]
    assert (await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)).status_code == 201
    for k, pid in enumerate(["p-00", "p-01", "p-02", "p-10", "p-11"]):   # 3 of A1, and the two of A2 (place C1)
        r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=resident(auth, pid), json={
            "token": await token_of(client, resident(auth, pid), sid), "answers": {"overall": 1 + k, "used": "no"}})
        assert r.status_code == 201, r.text
    url = f"/metrics/v1/surveys/{sid}/results"
    whole = (await client.get(url, params={"scope": C1}, headers=staff)).json()
    assert whole["shown"] and whole["respondents"] == 5 and whole["questions"][0]["count"] == 5
    by_grid = (await client.get(url, params={"by": "grid"}, headers=staff)).json()
    assert {g["group"]: g["shown"] for g in by_grid["groups"]}[G1] is False
    grid = (await client.get(url, params={"scope": G1}, headers=staff)).json()
    assert (grid["respondents"], grid["shown"], grid["questions"], grid["response_rate"]) == (3, False, [], None)
    assert "不分组显示" in grid["note"]
    for by in ("age_band", "channel"):
        res = (await client.get(url, params={"scope": G1, "by": by}, headers=staff)).json()
        assert not res["questions"] and not any(g["shown"] for g in res["groups"]), res
