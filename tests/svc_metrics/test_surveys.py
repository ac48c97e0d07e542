"""Surveys (issue 29): questionnaires, lifecycle, invitations with one-time tokens, responses through the app, the
kiosk and household visits, bad input refused with nothing kept, results with the minimum group size, the KPI's
survey source and the rectification case, on both databases."""
from __future__ import annotations

import asyncio
import io
from collections import Counter

import pytest
from sqlalchemy import func, select

from svc_metrics.alerts.models import RectificationCase
from svc_metrics.surveys import lifecycle, sampling
from svc_metrics.surveys.models import Invitation, SurveyResponse, SurveyTally, SurveyToken
from tests.svc_metrics.conftest import C1, C2, G1, G3, NOW, ev

G2 = C1 + "002"
PEOPLE = [(f"p-{i:02d}", G1 if i < 10 else (G2 if i < 12 else G3), "60+" if i % 2 else "30+",
           ["elderly"] if i % 2 else []) for i in range(16)]


def questionnaire(kind_needs: bool = True) -> dict:
    qs = [{"key": "overall", "kind": "likert", "title": "您对社区服务总体满意吗？", "kpi": True},
          {"key": "used", "kind": "single", "title": "本季度是否使用过社区服务？",
           "options": [{"key": "yes", "label": "是"}, {"key": "no", "label": "否"}]},
          {"key": "which", "kind": "multiple", "title": "使用过哪些？", "show_if": {"question": "used", "any_of": ["yes"]},
           "options": [{"key": "canteen", "label": "助餐"}, {"key": "clinic", "label": "卫生站"}]},
          {"key": "visits", "kind": "number", "title": "到访次数", "min": 0, "max": 100, "required": False},
          {"key": "comment", "kind": "text", "title": "意见建议", "required": False}]
    if kind_needs:
        qs.append({"key": "needs", "kind": "needs", "title": "您需要哪些服务？", "required": False,
                   "categories": ["elderly_care", "health", "legal"]})
    return {"sections": [{"key": "main", "title": "满意度", "questions": qs}]}


@pytest.fixture
def staff(auth):
    return auth(role="community_staff", user="staff1", scopes=[f"community:{C1}"])


@pytest.fixture
def street(auth):
    return auth(role="street_staff", user="street1", scopes=[f"street:{C1[:9]}"])


async def register(post):
    events = [ev("person.registered", NOW, pid, grid=g, age_band=band) for pid, g, band, _ in PEOPLE]
    events += [ev("person.tagged", NOW, pid, grid=g, code=t) for pid, g, _, tags in PEOPLE for t in tags]
    await post(events)


async def published(client, who, *, scope=C1, anonymous=True, sample=None, period="2026-Q2") -> dict:
    r = await client.post("/metrics/v1/surveys", headers=who, json={
        "title": "2026年第二季度居民满意度测评", "kind": "satisfaction", "anonymous": anonymous, "scope": scope,
        "period": period, "questionnaire": questionnaire(), "sample": sample or {"mode": "all"}})
    assert r.status_code == 201, r.text
    s = r.json()
    r = await client.post(f"/metrics/v1/surveys/{s['id']}/transitions", headers=who,
                          json={"action": "publish", "version": s["version"]})
    assert r.status_code == 200, r.text
    return r.json()


def resident(auth, pid):
    return auth(role="resident", user=f"u-{pid}", scopes=[f"person:{pid}"])


async def token_of(client, headers, sid, invitation_id=None) -> str:
    r = await client.post(f"/metrics/v1/surveys/{sid}/invitations/token", headers=headers,
                          json={"invitation_id": invitation_id} if invitation_id else {})
    assert r.status_code == 200, r.text
    return r.json()["token"]


async def counts(client) -> tuple[int, int, int]:
    async with client.app.state.db.session() as s:
        return tuple([(await s.execute(select(func.count()).select_from(m))).scalar_one()
                      for m in (SurveyResponse, SurveyTally)]
                     + [(await s.execute(select(func.count()).where(SurveyToken.spent.is_(True)))).scalar_one()])


def test_the_lifecycle_is_one_declared_table():
    assert lifecycle.replay(["publish", "close"]) == "closed"
    assert lifecycle.allowed("draft") == ["publish"] and lifecycle.allowed("closed") == []
    with pytest.raises(KeyError):
        lifecycle.replay(["close"])


def test_samples_are_reproducible_and_stratified():
    people = [sampling.Person(f"p{i:03d}", G1 if i < 60 else G3, C1 if i < 60 else C2, "60+" if i % 3 else "30+", ())
              for i in range(100)]
    a = sampling.draw(people, "stratified", 20, seed=7)
    assert a == sampling.draw(people, "stratified", 20, seed=7) and len(a) == 20
    assert a != sampling.draw(people, "stratified", 20, seed=8)
    assert sum(p.grid == G1 for p in a) == 12          # 60 % of the frame, 60 % of the sample
    # by grid and age band: quotas 8, 4, 5.2, 2.8 → largest remainder gives 安康's 30+ the twentieth
    assert Counter((p.grid, p.age_band) for p in a) == {(G1, "60+"): 8, (G1, "30+"): 4, (G3, "60+"): 5,
                                                        (G3, "30+"): 3}
    assert len(sampling.draw(people, "random", 10, seed=1)) == 10
    # a stratum of fewer than 5 invitees is generalised until 5 share the token's attributes
    lone = sampling.Person("q1", G3, C2, "90+", ("disabled",))
    assert sampling.strata(people[:60] + [lone], 5)["q1"] == (C2[:9], "", "")   # alone in 安康: the street
    peers = [sampling.Person(f"q{i}", G3, C2, "30+", ()) for i in range(2, 6)]
    st = sampling.strata(people[:60] + [lone, *peers], 5)
    assert st["q1"] == (G3, "", "") and st["p001"] == (G1, "60+", "")


async def test_questionnaire_rules_and_a_published_version_never_changes(client, staff, auth):
    bad = questionnaire()
    bad["sections"][0]["questions"][2]["show_if"] = {"question": "comment", "any_of": ["x"]}
    r = await client.post("/metrics/v1/surveys", headers=staff, json={
        "title": "t", "scope": C1, "questionnaire": bad})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert any("questionnaire" in e["field"] for e in r.json()["errors"])
    r = await client.post("/metrics/v1/surveys", headers=auth(role="grid_worker", scopes=[f"grid:{G1}"]),
                          json={"title": "t", "scope": C1, "questionnaire": questionnaire()})
    assert r.status_code == 403 and r.json()["code"] == "survey.not_manager"
    s = await published(client, staff)
    assert s["status"] == "published" and s["questionnaire"]["sections"][0]["questions"][0]["labels"][4] == "非常满意"
    r = await client.put(f"/metrics/v1/surveys/{s['id']}", headers=staff, json={"version": s["version"], "title": "x"})
    assert r.status_code == 409 and r.json()["code"] == "survey.frozen"
    r = await client.post(f"/metrics/v1/surveys/{s['id']}/revisions", headers=staff)
    assert r.status_code == 201 and r.json()["revision"] == 2 and r.json()["status"] == "draft"
    assert r.json()["family_id"] == s["family_id"]
    r2 = await client.put(f"/metrics/v1/surveys/{r.json()['id']}", headers=staff,
                          json={"version": 1, "title": "第二版"})
    assert r2.status_code == 200 and r2.json()["title"] == "第二版"
    # the first version is as published
    assert (await client.get(f"/metrics/v1/surveys/{s['id']}", headers=staff)).json()["title"] == s["title"]
    # drafts are hidden from residents; published ones are read by them
    assert (await client.get(f"/metrics/v1/surveys/{r.json()['id']}", headers=resident(auth, "p-01"))).status_code == 404
    assert (await client.get(f"/metrics/v1/surveys/{s['id']}", headers=resident(auth, "p-01"))).status_code == 200
    # lists: the same rule, newest first, in pages
    listed = (await client.get("/metrics/v1/surveys", headers=resident(auth, "p-01"))).json()
    assert [x["id"] for x in listed["items"]] == [s["id"]] and listed["next_cursor"] is None
    mine = (await client.get("/metrics/v1/surveys", params={"limit": 1}, headers=staff)).json()
    assert mine["items"][0]["id"] == r.json()["id"] and mine["next_cursor"]
    nxt = await client.get("/metrics/v1/surveys", params={"limit": 1, "cursor": mine["next_cursor"]}, headers=staff)
    assert [x["id"] for x in nxt.json()["items"]] == [s["id"]]
    grid = auth(role="grid_worker", user="grid1", scopes=[f"grid:{G1}"])
    assert len((await client.get("/metrics/v1/surveys", headers=grid)).json()["items"]) == 2     # a draft over A1
    other = auth(role="grid_worker", user="grid3", scopes=[f"grid:{G3}"])
    assert len((await client.get("/metrics/v1/surveys", headers=other)).json()["items"]) == 1


async def test_quarterly_survey_end_to_end_with_bad_input_refused(client, staff, auth, post, ops):
    await register(post)
    s = await published(client, staff)
    sid = s["id"]
    r = await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)
    assert r.status_code == 201 and r.json()["invited"] == 12, r.text   # 幸福's 12 residents
    assert (await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)).json()["code"] == \
        "survey.already_invited"
    good = {"overall": 2, "used": "yes", "which": ["canteen"], "needs": ["health"]}
    # app: p-00 … p-05 answer in the app, mostly dissatisfied
    for i in range(6):
        tok = await token_of(client, resident(auth, f"p-{i:02d}"), sid)
        r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=resident(auth, f"p-{i:02d}"),
                              json={"token": tok, "channel": "app", "answers": {**good, "overall": 2 if i < 4 else 5}})
        assert r.status_code == 201, r.text
        assert r.json()["needs"] == []   # anonymous: no person's needs
    # a token is handed out once
    r = await client.post(f"/metrics/v1/surveys/{sid}/invitations/token", headers=resident(auth, "p-00"), json={})
    assert r.status_code == 409 and r.json()["code"] == "survey.token_delivered"
    before = await counts(client)
    tok6 = await token_of(client, resident(auth, "p-06"), sid)
    cases = [
        ({"overall": 3, "used": "no", "which": ["clinic"]}, "answers.which", "survey.hidden_question"),
        ({"overall": 6, "used": "no"}, "answers.overall", "survey.likert_range"),
        ({"used": "no"}, "answers.overall", "survey.answer_required"),
        ({"overall": 3, "used": "maybe"}, "answers.used", "survey.unknown_option"),
        ({"overall": 3, "used": "no", "ghost": 1}, "answers.ghost", "survey.unknown_question"),
        ({"overall": 3, "used": "no", "visits": 1000}, "answers.visits", "survey.number_range"),
        ({"overall": 3, "used": "no", "needs": ["spaceflight"]}, "answers.needs", "survey.unknown_option"),
    ]
    for answers, field, code in cases:
        r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=resident(auth, "p-06"),
                              json={"token": tok6, "answers": answers})
        assert r.status_code == 422, (answers, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [(field, code)], r.text
        assert "未保存" in r.json()["detail"]
    # a spent token: 409, nothing kept
    r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=resident(auth, "p-00"),
                          json={"token": tok6[:-4] + "AAAA", "answers": {"overall": 3, "used": "no"}})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "survey.token_invalid"
    assert await counts(client) == before
    # kiosk: p-06 answers at the kiosk (the kiosk member system)
    kiosk = auth(role="system", user="kiosk", member="kiosk")
    r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=kiosk,
                          json={"token": tok6, "channel": "app", "answers": {"overall": 4, "used": "no"}})
    assert r.status_code == 201 and r.json()["channel"] == "kiosk"
    r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=kiosk,
                          json={"token": tok6, "answers": {"overall": 4, "used": "no"}})
    assert r.status_code == 409 and r.json()["code"] == "survey.token_spent"
    # visit: a grid worker of A1 enters p-07's answers (入户); one of 安康 cannot, nor may a resident claim a visit
    async with client.app.state.db.session() as session:
        invs = {i.person_id: i.id for i in (await session.execute(select(Invitation))).scalars()}
    grid1 = auth(role="grid_worker", user="grid1", scopes=[f"grid:{G1}"])
    grid3 = auth(role="grid_worker", user="grid3", scopes=[f"grid:{G3}"])
    r = await client.post(f"/metrics/v1/surveys/{sid}/invitations/token", headers=grid3,
                          json={"invitation_id": invs["p-07"]})
    assert r.status_code == 404
    tok7 = await token_of(client, grid1, sid, invs["p-07"])
    before = await counts(client)
    r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=grid3,
                          json={"token": tok7, "channel": "visit", "answers": {"overall": 4, "used": "no"}})
    assert r.status_code == 403 and r.json()["code"] == "survey.visit_out_of_scope"
    r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=resident(auth, "p-07"),
                          json={"token": tok7, "channel": "visit", "answers": {"overall": 4, "used": "no"}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channel"
    assert await counts(client) == before
    r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=grid1,
                          json={"token": tok7, "channel": "visit", "answers": {"overall": 5, "used": "no"}})
    assert r.status_code == 201 and r.json()["channel"] == "visit"

    # close: then no more answers
    cur = (await client.get(f"/metrics/v1/surveys/{sid}", headers=staff)).json()
    r = await client.post(f"/metrics/v1/surveys/{sid}/transitions", headers=staff,
                          json={"action": "close", "version": cur["version"]})
    assert r.status_code == 200 and r.json()["status"] == "closed"
    r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=resident(auth, "p-08"),
                          json={"token": "x" * 32, "answers": {"overall": 4, "used": "no"}})
    assert r.status_code == 409 and r.json()["code"] == "survey.closed"

    # results: 8 of 12; overall 2,2,2,2,5,5,4,5 → 4 of 8 satisfied; by channel app 6 (shown), kiosk 1, visit 1 (hidden)
    res = (await client.get(f"/metrics/v1/surveys/{sid}/results", params={"by": "channel"}, headers=staff)).json()
    assert (res["invited"], res["respondents"], res["response_rate"]) == (12, 8, 66.67)
    overall = next(q for q in res["questions"] if q["key"] == "overall")
    assert overall["count"] == 8 and overall["mean"] == 3.375 and overall["satisfied_rate"] == 50.0
    assert [d["count"] for d in overall["distribution"]] == [0, 4, 0, 1, 3]
    groups = {g["group"]: g for g in res["groups"]}
    assert groups["app"]["shown"] and groups["app"]["respondents"] == 6
    assert not groups["kiosk"]["shown"] and "questions" not in groups["kiosk"] and not groups["visit"]["shown"]
    which = next(q for q in res["questions"] if q["key"] == "which")
    assert which["distribution"][0]["count"] == 6
    by_grid = (await client.get(f"/metrics/v1/surveys/{sid}/results", params={"by": "grid"}, headers=staff)).json()
    assert {g["group"]: g["shown"] for g in by_grid["groups"]}[G1] is True
    xlsx = await client.get(f"/metrics/v1/surveys/{sid}/results", params={"format": "xlsx"}, headers=staff)
    assert xlsx.status_code == 200
    from openpyxl import load_workbook
    ws = load_workbook(io.BytesIO(xlsx.content)).active
    assert "作答 8" in [c.value for c in ws[1]]

    # KPI: the survey source beside ratings; below 80 % in 幸福 → a rectification case with the survey evidence
    kpi = (await client.get("/metrics/v1/kpis/satisfaction_rate", params={"period": "2026-Q2", "scope": C1},
                            headers=ops)).json()
    assert kpi["by_source"]["survey"] == {"value": 50.0, "count": 8, "surveys": 1, "respondents": 8, "shown": True,
                                          "withheld": 0}
    assert kpi["by_source"]["ratings"]["count"] == 0 and kpi["value"] is None
    async with client.app.state.db.session() as session:
        cases = list((await session.execute(select(RectificationCase))).scalars())
    assert [(c.scope, c.period, c.evidence["source"], c.evidence["satisfaction_rate"]) for c in cases] == \
        [(C1, "2026-Q2", "survey", 50.0)]
    # the quarterly report lists the survey with its response rate and satisfaction
    page = await client.get("/metrics/v1/report", params={"scope": C1, "period": "2026-Q2"}, headers=ops)
    assert page.status_code == 200 and f'data-survey="{sid}"' in page.text, page.text[-800:]
    assert "受邀 12 人，作答 8 人" in page.text and "满意率 50" in page.text
    # the outbox carries the anonymous demand by place and category for svc_matching (no person)
    from svc_metrics.base import OutboxEvent
    async with client.app.state.db.session() as session:
        rows = list((await session.execute(select(OutboxEvent).where(OutboxEvent.type.like("survey_need.%")))).scalars())
    assert [r.type for r in rows] == ["survey_need.demand"]
    assert rows[0].data["items"] == [{"place_code": G1, "category": "health", "count": 6}]
    assert "person_id" not in str(rows[0].data)


async def test_named_needs_survey_records_needs_events(client, staff, auth, post):
    await register(post)
    s = await published(client, staff, anonymous=False, scope=G1)
    sid = s["id"]
    assert (await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)).json()["invited"] == 10
    tok = await token_of(client, resident(auth, "p-03"), sid)
    r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=resident(auth, "p-03"), json={
        "token": tok, "answers": {"overall": 4, "used": "no", "needs": ["legal", "elderly_care"]}})
    assert r.status_code == 201 and r.json()["needs"] == ["elderly_care", "legal"]
    from svc_metrics.base import OutboxEvent
    async with client.app.state.db.session() as session:
        rows = list((await session.execute(select(OutboxEvent).where(OutboxEvent.type.like("survey_need.%")))).scalars())
        resp = (await session.execute(select(SurveyResponse))).scalar_one()
    assert [(r.type, r.data["person_id"], r.data["categories"]) for r in rows] == \
        [("survey_need.recorded", "p-03", ["elderly_care", "legal"])]
    assert resp.person_id == "p-03" and resp.place == G1


async def test_two_responses_racing_on_one_token_keep_one(client, staff, auth, post):
    await register(post)
    s = await published(client, staff, scope=G1)
    sid = s["id"]
    await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)
    me = resident(auth, "p-02")
    tok = await token_of(client, me, sid)
    kiosk = auth(role="system", user="kiosk", member="kiosk")
    rs = await asyncio.gather(*(client.post(f"/metrics/v1/surveys/{sid}/responses", headers=who, json={
        "token": tok, "answers": {"overall": v, "used": "no"}}) for who, v in ((me, 5), (kiosk, 1))))
    assert sorted(r.status_code for r in rs) == [201, 409], [r.text for r in rs]
    assert next(r for r in rs if r.status_code == 409).json()["code"] == "survey.token_spent"
    assert await counts(client) == (1, (await counts(client))[1], 1)
    res = (await client.get(f"/metrics/v1/surveys/{sid}/results", headers=staff)).json()
    assert res["respondents"] == 1 and next(q for q in res["questions"] if q["key"] == "overall")["count"] == 1


async def test_a_visit_with_a_token_generalised_to_the_community(client, staff, auth, post):
    """安康's four invitees share only the community, so their tokens carry 安康 (no grid): its grid worker still
    enters a visit's answers (his grid lies within the token's place); a worker of 幸福 with such a token cannot."""
    await register(post)
    s = await published(client, auth(role="community_staff", user="staff2", scopes=[f"community:{C2}"]), scope=C2)
    sid = s["id"]
    assert (await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=auth(
        role="community_staff", user="staff2", scopes=[f"community:{C2}"]))).json()["invited"] == 4
    async with client.app.state.db.session() as session:
        assert {t.place for t in (await session.execute(select(SurveyToken))).scalars()} == {C2}
        invs = {i.person_id: i.id for i in (await session.execute(select(Invitation))).scalars()}
    grid3 = auth(role="grid_worker", user="grid3", scopes=[f"grid:{G3}"])
    grid1 = auth(role="grid_worker", user="grid1", scopes=[f"grid:{G1}"])
    tok = await token_of(client, resident(auth, "p-12"), sid)
    before = await counts(client)
    r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=grid1,
                          json={"token": tok, "channel": "visit", "answers": {"overall": 4, "used": "no"}})
    assert r.status_code == 403 and r.json()["code"] == "survey.visit_out_of_scope"
    assert await counts(client) == before
    tok = await token_of(client, grid3, sid, invs["p-13"])
    r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=grid3,
                          json={"token": tok, "channel": "visit", "answers": {"overall": 4, "used": "no"}})
    assert r.status_code == 201 and r.json()["channel"] == "visit", r.text


async def test_results_by_age_band_and_special_group(client, staff, auth, post):
    """A1's ten residents all answer: by age band and by special group each sub-group of five is shown, with its
    own invited count, response rate, distribution and mean."""
    await register(post)
    sid = (await published(client, staff, scope=G1))["id"]
    await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)
    for i in range(10):   # odd: 60+ and elderly, satisfied; even: 30+, not
        me = resident(auth, f"p-{i:02d}")
        r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=me, json={
            "token": await token_of(client, me, sid), "answers": {"overall": 5 if i % 2 else 2, "used": "no"}})
        assert r.status_code == 201, r.text
    url = f"/metrics/v1/surveys/{sid}/results"
    bands = {g["group"]: g for g in (await client.get(url, params={"by": "age_band"}, headers=staff)).json()["groups"]}
    groups = {g["group"]: g for g in (await client.get(url, params={"by": "group"}, headers=staff)).json()["groups"]}
    for g, mean, rate in ((bands["60+"], 5.0, 100.0), (bands["30+"], 2.0, 0.0), (groups["elderly"], 5.0, 100.0)):
        assert (g["shown"], g["respondents"], g["invited"], g["response_rate"]) == (True, 5, 5, 100.0), g
        overall = next(q for q in g["questions"] if q["key"] == "overall")
        assert (overall["count"], overall["mean"], overall["satisfied_rate"]) == (5, mean, rate)
    assert set(bands) == {"60+", "30+"} and set(groups) == {"elderly"}
