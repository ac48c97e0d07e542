"""Keeping one response: who may answer through which channel, the answers against the questionnaire, the token
spent exactly once, the tallies, and a named response's needs as an event for svc_matching. Everything is checked
before anything is written, and all of it is one transaction: a refused response leaves nothing behind."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Conflict, Forbidden, invalid
from common.lookup import get_or_404
from common.outbox import record_event
from svc_metrics.base import OutboxEvent
from svc_metrics.surveys.models import Survey, SurveyResponse, SurveyToken
from svc_metrics.surveys.questionnaire import Questionnaire, check_answers
from svc_metrics.surveys.schemas import ResponseIn
from svc_metrics.surveys.service import PLACE_STAFF, digest, get_survey
from svc_metrics.surveys.tallies import add_tallies


def channel_for(principal: Principal, asked: str) -> str:
    """Residents and proxies answer in the app or at a kiosk; the kiosk (a member system) only at the kiosk;
    place staff only on a household visit (入户, entering the household's answers); nobody else answers."""
    if principal.role in ("resident", "proxy"):
        if asked == "visit":
            raise invalid("channel", "survey.visit_by_staff", "入户答卷由工作人员录入", "Visit answers are entered by staff")
        return asked
    if principal.role == "system" and principal.member == "kiosk":
        return "kiosk"
    if principal.role in PLACE_STAFF:
        if asked != "visit":
            raise invalid("channel", "survey.staff_enter_visits", "工作人员只能录入入户调查的答卷",
                          "Staff enter answers only on a household visit (channel visit)")
        return "visit"
    raise Forbidden(("当前角色不能作答问卷", "Your role does not answer surveys"), code="survey.not_respondent")


def _visits(principal: Principal, place: str) -> bool:
    """Staff enter visit answers for a token of their area: its place covered by theirs, or (a place generalised
    for anonymity, e.g. to the community) one of their grids lying within it."""
    mine = [v for k in ("district", "street", "community", "grid") for v in principal.scope_values(k)]
    return principal.covers_place(place) or any(p.startswith(place) for p in mine)


async def respond(session: AsyncSession, principal: Principal, survey_id: str, body: ResponseIn,
                  now: datetime) -> tuple[Survey, SurveyResponse, list[str]]:
    s = await get_survey(session, principal, survey_id)
    if s.status != "published":
        raise Conflict("survey.closed" if s.status == "closed" else "survey.not_published",
                       ("问卷已结束，不再接受答卷" if s.status == "closed" else "问卷尚未发布",
                        "The survey is closed" if s.status == "closed" else "The survey is not published"))
    channel = channel_for(principal, body.channel)
    qn = Questionnaire.model_validate(s.questionnaire)
    answers = check_answers(qn, body.answers)
    tok = await get_or_404(session, SurveyToken, digest(body.token),
                           invalid("token", "survey.token_invalid", "令牌无效", "The token is not one of this survey's"),
                           visible=lambda t: t.survey_id == s.id)
    if tok.spent:
        raise Conflict("survey.token_spent", ("该令牌已作答，每人只能答一次", "This token has been used: one response each"))
    place = tok.place or s.scope
    if channel == "visit" and not _visits(principal, place):
        raise Forbidden(("只能为本辖区的住户录入答卷", "Only for households in your own area"),
                        code="survey.visit_out_of_scope")
    spent = await session.execute(update(SurveyToken).where(SurveyToken.digest == tok.digest,
                                                            SurveyToken.spent.is_(False)).values(spent=True))
    if spent.rowcount != 1:  # another response with this token got in first
        raise Conflict("survey.token_spent", ("该令牌已作答，每人只能答一次", "This token has been used: one response each"))
    named = not s.anonymous
    r = SurveyResponse(id=str(uuid.uuid4()), survey_id=s.id, channel=channel, place=place, age_band=tok.age_band,
                       groups=tok.groups, answers=answers, person_id=tok.person_id if named else None,
                       entered_by=principal.caller if named and channel == "visit" else None)
    session.add(r)
    await add_tallies(session, s.id, qn, r)
    needs = [c for q in qn.questions() if q.kind == "needs" for c in answers.get(q.key, [])]
    needs = list(dict.fromkeys(needs))
    if named and needs:
        record_event(session, OutboxEvent, "survey_need.recorded", subject=r.id, now=now,
                     community=place[:12] if len(place) >= 12 else None, grid=place if len(place) >= 15 else None,
                     data={"kind": "named", "survey_id": s.id, "person_id": tok.person_id, "categories": needs,
                           "place_code": place, "version": 1})
    await session.flush()
    return s, r, needs if named else []
