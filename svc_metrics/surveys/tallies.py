"""The survey tallies (running sums per place, question, value and sub-group) a response or an invitation adds."""
from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from svc_metrics.surveys.models import SurveyResponse, SurveyTally, SurveyToken
from svc_metrics.surveys.questionnaire import Questionnaire


def _dims(age_band: str, groups: str) -> list[tuple[str, str]]:
    return [("", ""), *([("age_band", age_band)] if age_band else []),
            *(("group", g) for g in groups.strip(",").split(",") if g)]


def invited_rows(survey_id: str, tokens: list[SurveyToken]) -> list[dict[str, Any]]:
    """The invited counts per place and sub-group (question "_inv"), so response rates read tallies too."""
    counts: dict[tuple, int] = {}
    for t in tokens:
        for dim, dv in _dims(t.age_band, t.groups):
            counts[(t.place, dim, dv)] = counts.get((t.place, dim, dv), 0) + 1
    return [{"survey_id": survey_id, "place": p, "question": "_inv", "value": "", "dim": d, "dim_value": dv, "n": n,
             "total": 0.0, "total_sq": 0.0} for (p, d, dv), n in sorted(counts.items())]


def tally_rows(survey_id: str, qn: Questionnaire, r: SurveyResponse) -> list[dict[str, Any]]:
    dims = [*_dims(r.age_band, r.groups), ("channel", r.channel)]
    rows: dict[tuple, dict[str, Any]] = {}
    for dim, dv in dims:   # respondents per place and sub-group (results.RESPONDENTS)
        rows[(survey_id, r.place, "_n", "", dim, dv)] = {"survey_id": survey_id, "place": r.place, "question": "_n",
                                                         "value": "", "dim": dim, "dim_value": dv, "n": 1,
                                                         "total": 0.0, "total_sq": 0.0}
    for q in qn.questions():
        v = r.answers.get(q.key)
        if v is None or q.kind == "text":
            continue
        if q.kind == "number":
            values = [("", float(v))]
        elif q.kind == "likert":
            values = [(str(v), float(v))]
        else:
            values = [(k, 1.0) for k in (v if isinstance(v, list) else [v])]
        for value, x in values:
            for dim, dv in dims:
                key = (survey_id, r.place, q.key, value, dim, dv)
                rows[key] = {"survey_id": survey_id, "place": r.place, "question": q.key, "value": value,
                             "dim": dim, "dim_value": dv, "n": 1, "total": x, "total_sq": x * x}
    return [rows[k] for k in sorted(rows)]  # sorted: one lock order for concurrent responses (PostgreSQL)


async def add_tallies(session: AsyncSession, survey_id: str, qn: Questionnaire, r: SurveyResponse) -> None:
    rows = tally_rows(survey_id, qn, r)
    if not rows:
        return
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(SurveyTally)
    stmt = stmt.on_conflict_do_update(
        index_elements=["survey_id", "place", "question", "value", "dim", "dim_value"],
        set_={"n": SurveyTally.n + stmt.excluded.n, "total": SurveyTally.total + stmt.excluded.total,
              "total_sq": SurveyTally.total_sq + stmt.excluded.total_sq})
    await session.execute(stmt, rows)

