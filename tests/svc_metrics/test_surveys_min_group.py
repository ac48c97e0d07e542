"""The minimum group size (issue 29: results below 5 respondents are not shown by sub-group) holds beyond the
results: the satisfaction KPI's survey source and the quarterly report show no figure for a scope narrower than the
survey answered by fewer than 5 (withheld, with the reason), and closing opens no rectification case from such a
figure; a grid or community answered by 5 or more is shown and judged. On both databases."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from svc_metrics.alerts.models import RectificationCase, Warning_
from tests.svc_metrics.conftest import C1, C2, G1, G2, G3, NOW, ev
from tests.svc_metrics.test_surveys import published, resident, token_of

STREET = C1[:9]
# six invitees per grid (one age band, no groups): every token carries its grid (5 share it)
PEOPLE = [(f"m-{g[-4:]}-{i}", g) for g in (G1, G2, G3) for i in range(6)]
# 幸福一 (G1) 4 answers, 幸福二 (G2) 5 answers: 幸福 (C1) 9, 5 satisfied (55.56 %); 安康 (C2, G3) 4 answers, none
ANSWERS = {G1: [2, 2, 2, 5], G2: [5, 5, 5, 4, 2], G3: [1, 1, 1, 1]}
WITHHELD = "作答不足 5 人"


@pytest.fixture
def street(auth):
    return auth(role="street_staff", user="street1", scopes=[f"street:{STREET}"])


async def survey_of_the_street(client, street, auth, post) -> str:
    await post([ev("person.registered", NOW, pid, grid=g, age_band="60+") for pid, g in PEOPLE])
    s = await published(client, street, scope=STREET)
    sid = s["id"]
    assert (await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=street)).json()["invited"] == 18
    for g, values in ANSWERS.items():
        for (pid, _), v in zip([p for p in PEOPLE if p[1] == g], values):
            who = resident(auth, pid)
            r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=who,
                                  json={"token": await token_of(client, who, sid), "answers": {"overall": v, "used": "no"}})
            assert r.status_code == 201, r.text
    cur = (await client.get(f"/metrics/v1/surveys/{sid}", headers=street)).json()
    r = await client.post(f"/metrics/v1/surveys/{sid}/transitions", headers=street,
                          json={"action": "close", "version": cur["version"]})
    assert r.status_code == 200, r.text
    return sid


async def test_kpi_survey_source_report_and_rectification_keep_the_minimum_group(client, street, auth, post, kpi,
                                                                                  ops):
    sid = await survey_of_the_street(client, street, auth, post)

    def survey(code, scope):
        return kpi(code, period="2026-Q2", scope=scope)

    # the KPI's survey source: a grid of 4 shows nothing, with the reason; a grid of 5 and the communities of 9
    # and the street are shown; 安康 (4 answers) is withheld as well
    for code in ("satisfaction_rate", "satisfaction_score"):
        g1 = (await survey(code, G1))["by_source"]["survey"]
        assert g1["value"] is None and g1["shown"] is False and WITHHELD in g1["note"], g1
        assert (g1["count"], g1["respondents"], g1["withheld"], g1["surveys"]) == (0, 0, 1, 1)
    shown = {scope: (await survey("satisfaction_rate", scope))["by_source"]["survey"] for scope in (G2, C1, STREET)}
    assert {k: (v["value"], v["count"], v["shown"], v["withheld"]) for k, v in shown.items()} == {
        G2: (80.0, 5, True, 0), C1: (55.56, 9, True, 0), STREET: (38.46, 13, True, 0)}
    assert all("note" not in v for v in shown.values())
    assert (await survey("satisfaction_score", G2))["by_source"]["survey"]["value"] == 4.2
    c2 = (await survey("satisfaction_rate", C2))["by_source"]["survey"]
    assert c2["value"] is None and not c2["shown"]
    # the survey's own results say the same (one rule)
    res = (await client.get(f"/metrics/v1/surveys/{sid}/results", params={"scope": G1}, headers=street)).json()
    assert res["shown"] is False and res["questions"] == []

    # the quarterly report: the grid of 4 lists the survey with the reason and no rates; the grid of 5 its rate
    page = (await client.get("/metrics/v1/report", params={"scope": G1, "period": "2026-Q2"}, headers=ops)).text
    item = page.split(f'data-survey="{sid}"')[1].split("</li>")[0]
    assert "作答 4 人" in item and WITHHELD in item and "满意率" not in item and "回收率" not in item, item
    page = (await client.get("/metrics/v1/report", params={"scope": G2, "period": "2026-Q2"}, headers=ops)).text
    item = page.split(f'data-survey="{sid}"')[1].split("</li>")[0]
    assert "作答 5 人" in item and "回收率 83.33%" in item and "满意率 80%" in item and WITHHELD not in item, item
    page = (await client.get("/metrics/v1/report", params={"scope": C2, "period": "2026-Q2"}, headers=ops)).text
    assert WITHHELD in page.split(f'data-survey="{sid}"')[1].split("</li>")[0]

    # rectification: 幸福 (9 answers, 55.56 %) opens its case; 安康 (4 answers, 0 %) opens none, nor a warning
    async with client.app.state.db.session() as session:
        cases = list((await session.execute(select(RectificationCase))).scalars())
        warnings = list((await session.execute(select(Warning_))).scalars())
    assert [(c.scope, c.period, c.evidence["source"], c.evidence["satisfaction_rate"]) for c in cases] == \
        [(C1, "2026-Q2", "survey", 55.56)]
    assert C2 not in {w.scope for w in warnings}


async def test_a_survey_of_the_community_itself_is_shown_and_judged_whatever_its_size(client, auth, post, kpi):
    """The survey's own scope is no sub-group (as in the results): a community survey answered by 4 is shown,
    and opens its case when under the floor."""
    staff = auth(role="community_staff", user="staff2", scopes=[f"community:{C2}"])
    await post([ev("person.registered", NOW, pid, grid=g, age_band="60+") for pid, g in PEOPLE if g == G3])
    s = await published(client, staff, scope=C2)
    sid = s["id"]
    await client.post(f"/metrics/v1/surveys/{sid}/invitations", headers=staff)
    for pid, _ in [p for p in PEOPLE if p[1] == G3][:4]:
        who = resident(auth, pid)
        r = await client.post(f"/metrics/v1/surveys/{sid}/responses", headers=who,
                              json={"token": await token_of(client, who, sid), "answers": {"overall": 2, "used": "no"}})
        assert r.status_code == 201, r.text
    cur = (await client.get(f"/metrics/v1/surveys/{sid}", headers=staff)).json()
    await client.post(f"/metrics/v1/surveys/{sid}/transitions", headers=staff,
                      json={"action": "close", "version": cur["version"]})
    src = (await kpi("satisfaction_rate", period="2026-Q2", scope=C2))["by_source"]["survey"]
    assert (src["value"], src["count"], src["shown"]) == (0.0, 4, True)
    async with client.app.state.db.session() as session:
        cases = list((await session.execute(select(RectificationCase))).scalars())
    assert [(c.scope, c.evidence["satisfaction_rate"]) for c in cases] == [(C2, 0.0)]
