"""What closing a survey does: an anonymous survey's responses are mixed (service.mix); the demand its needs
questions show goes to svc_matching as one aggregate per place and category (anonymous: no person); a quarterly
satisfaction survey below the floor in a community opens that community's rectification case (整改), unless that
community's figure is withheld (results.withheld: a community narrower than the survey answered by fewer than
`min_group`), which opens nothing."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.outbox import record_event
from svc_metrics.alerts import service as alerts
from svc_metrics.base import OutboxEvent
from svc_metrics.surveys import service
from svc_metrics.surveys.results import RESPONDENTS, withheld
from svc_metrics.surveys.models import Survey, SurveyTally
from svc_metrics.surveys.questionnaire import SATISFIED_FROM, Questionnaire


async def close(session: AsyncSession, s: Survey, now: datetime, *, floor: float, min_group: int) -> None:
    qn = Questionnaire.model_validate(s.questionnaire)
    if s.anonymous:
        await service.mix(session, s)
        needs = [q.key for q in qn.questions() if q.kind == "needs"]
        if needs:
            rows = await session.execute(
                select(SurveyTally.place, SurveyTally.value, func.sum(SurveyTally.n))
                .where(SurveyTally.survey_id == s.id, SurveyTally.dim == "", SurveyTally.question.in_(needs))
                .group_by(SurveyTally.place, SurveyTally.value).order_by(SurveyTally.place, SurveyTally.value))
            items = [{"place_code": p, "category": c, "count": int(n)} for p, c, n in rows if n]
            record_event(session, OutboxEvent, "survey_need.demand", subject=s.id, now=now,
                         data={"kind": "demand", "survey_id": s.id, "title": s.title, "scope": s.scope,
                               "items": items, "version": 1})
    if s.kind == "satisfaction" and s.period:
        await rectify(session, s, qn, now, floor, min_group)


async def rectify(session: AsyncSession, s: Survey, qn: Questionnaire, now: datetime, floor: float,
                  min_group: int) -> None:
    keys = [q.key for q in qn.questions() if q.kind == "likert" and q.kpi]
    if not keys:
        return
    per: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])   # satisfied, answers, respondents
    rows = await session.execute(select(SurveyTally.place, SurveyTally.question, SurveyTally.value,
                                        func.sum(SurveyTally.n))
                                 .where(SurveyTally.survey_id == s.id, SurveyTally.dim == "",
                                        SurveyTally.question.in_([*keys, RESPONDENTS]),
                                        func.length(SurveyTally.place) >= 12)
                                 .group_by(SurveyTally.place, SurveyTally.question, SurveyTally.value))
    for place, question, value, n in rows:
        community = per[place[:12]]
        if question == RESPONDENTS:
            community[2] += n
            continue
        community[1] += n
        community[0] += n if int(value) >= SATISFIED_FROM else 0
    found = []
    for c, (sat, n, respondents) in sorted(per.items()):
        if not n or withheld(int(respondents), c != s.scope, min_group):
            continue   # a withheld figure opens no case (nor says it in a warning's evidence)
        rate = round(sat / n * 100, 2)
        if rate < floor:
            found.append(alerts._w(
                "low_satisfaction", f"survey_satisfaction:{c}:{s.period}", c, s.period,
                f"社区 {c} {s.period} 季度问卷满意度 {rate}% 低于 {floor:g}%，已立整改",
                f"Community {c}: quarterly survey satisfaction {rate}% below {floor:g}% in {s.period}; rectification opened",
                {"source": "survey", "survey_id": s.id, "satisfaction_rate": rate, "answers": int(n),
                 "satisfied": int(sat), "floor": floor}, rectification=True))
    await alerts.record(session, found, now)
