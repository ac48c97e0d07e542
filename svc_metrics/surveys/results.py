"""Survey results from the tallies: per question counts, means and distributions, overall and by sub-group
(grid, community, age band, special group, channel), with response rates; a sub-group answered by fewer than
`min_group` people is listed without figures, and so is a scope narrower than the survey's (a grid of a community's
survey is the sub-group by=grid would hide). Also the survey source of the satisfaction KPI, and XLSX."""
from __future__ import annotations

import io
from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from svc_metrics.kpis.periods import Period, of
from svc_metrics.surveys.models import Survey, SurveyTally
from svc_metrics.surveys.questionnaire import LIKERT_ZH, SATISFIED_FROM, Questionnaire

BY = ("grid", "community", "age_band", "group", "channel")
RESPONDENTS, INVITED = "_n", "_inv"   # the tallies of respondents and of invitees per place and sub-group


def _share(part: float, whole: float) -> float | None:
    return round(part / whole * 100, 2) if whole else None


def withheld(respondents: int, narrowed: bool, min_group: int) -> dict[str, Any] | None:
    """The minimum group size, one rule for the results, the KPI's survey source, the quarterly report and the
    rectification: the figures of a sub-group, or of a scope narrower than the survey's (a grid of a community's
    survey), answered by fewer than `min_group` people are not shown; returns why, or None when they are shown."""
    if narrowed and respondents < min_group:
        return {"shown": False, "note": f"作答不足 {min_group} 人，不分组显示 fewer than {min_group} respondents"}
    return None


def reach(scope: str, survey_scope: str) -> str | None:
    """The part of a survey a scope reads: the survey's own scope when the scope covers it ("all", a wider or the
    same place), the scope when it is narrower (then a sub-group, `withheld` applies), None when they are apart."""
    if scope == "all" or survey_scope.startswith(scope):
        return survey_scope
    return scope if scope.startswith(survey_scope) else None


def _questions(qn: Questionnaire, tallies: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    out = []
    for q in qn.questions():
        if q.kind == "text":
            out.append({"key": q.key, "kind": q.kind, "title": q.title, "count": None,
                        "note": "填空题不做统计 free text is not tallied"})
            continue
        by_value = tallies.get(q.key, {})
        item: dict[str, Any] = {"key": q.key, "kind": q.kind, "title": q.title}
        if q.kind == "number":
            n, total, sq = by_value.get("", [0, 0.0, 0.0])
            item.update(count=int(n), mean=round(total / n, 3) if n else None,
                        sd=round(max(sq / n - (total / n) ** 2, 0.0) ** 0.5, 3) if n else None)
        else:
            labels = dict(zip(q.option_keys(), q.labels or LIKERT_ZH)) if q.kind == "likert" else \
                {o.key: o.label for o in q.options}
            counts = {k: int(by_value.get(k, [0])[0]) for k in q.option_keys()}
            answered = sum(counts.values()) if q.kind in ("single", "likert") else None
            item["distribution"] = [{"value": k, "label": labels.get(k, k), "count": c} for k, c in counts.items()]
            if q.kind == "likert":
                n = answered or 0
                item.update(count=n, mean=round(sum(int(k) * c for k, c in counts.items()) / n, 3) if n else None,
                            satisfied_rate=_share(sum(c for k, c in counts.items() if int(k) >= SATISFIED_FROM), n))
            else:
                item["count"] = answered
            base = answered if answered is not None else None
            for d in item["distribution"]:
                d["share"] = _share(d["count"], base) if base is not None else None
        out.append(item)
    return out


async def results(session: AsyncSession, s: Survey, scope: str, by: str | None, min_group: int) -> dict[str, Any]:
    qn = Questionnaire.model_validate(s.questionnaire)
    dim = {"age_band": "age_band", "group": "group", "channel": "channel"}.get(by or "", "")
    rows = await session.execute(
        select(SurveyTally.place, SurveyTally.question, SurveyTally.value, SurveyTally.dim_value,
               func.sum(SurveyTally.n), func.sum(SurveyTally.total), func.sum(SurveyTally.total_sq))
        .where(SurveyTally.survey_id == s.id, SurveyTally.place.startswith(scope), SurveyTally.dim.in_(("", dim)))
        .group_by(SurveyTally.place, SurveyTally.question, SurveyTally.value, SurveyTally.dim, SurveyTally.dim_value))
    groups: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    for place, question, value, dim_value, n, total, sq in rows:
        keys = []
        if dim_value == "":
            keys.append("all")
            if by in ("grid", "community"):
                keys.append(place[: 15 if by == "grid" else 12])
        else:
            keys.append(dim_value)
        for k in keys:
            cell = groups[k][question].setdefault(value, [0, 0.0, 0.0])
            cell[0] += n
            cell[1] += total or 0.0
            cell[2] += sq or 0.0
    narrowed = scope != s.scope   # a grid or community of the survey's scope is a sub-group too (as by=grid shows)

    def group(key: str) -> dict[str, Any]:
        t = groups.get(key, {})
        n = int(t.get(RESPONDENTS, {}).get("", [0])[0])
        inv = int(t.get(INVITED, {}).get("", [0])[0]) if by != "channel" or key == "all" else None
        item: dict[str, Any] = {"group": key, "respondents": n, "invited": inv,
                                "response_rate": _share(n, inv) if inv else None}
        hidden = withheld(n, key != "all" or narrowed, min_group)
        if hidden:
            item.update(hidden, response_rate=None)
        else:
            item.update(shown=True, questions=_questions(qn, t))
        return item

    overall = group("all")
    sub = [group(k) for k in sorted(groups) if k != "all"] if by else []
    return {"survey_id": s.id, "title": s.title, "status": s.status, "anonymous": s.anonymous, "scope": scope,
            "period": s.period, "by": by, "min_group": min_group, "invited": overall["invited"],
            "respondents": overall["respondents"], "response_rate": overall["response_rate"],
            "shown": overall["shown"], **({"note": overall["note"]} if "note" in overall else {}),
            "questions": overall.get("questions", []), "groups": sub}


def quarter(label: str) -> Period:
    year, q = label.split("-Q")
    return of("quarter", date(int(year), 3 * int(q) - 2, 1))


async def satisfaction(session: AsyncSession, scope: str, period: Period, min_group: int) -> dict[str, Any]:
    """The survey source of satisfaction: Likert answers of the questions marked `kpi` in satisfaction surveys
    measuring a quarter that overlaps the period, in the scope; satisfied = 4–5 (as ratings). A survey whose part
    in the scope is withheld (`withheld`: a narrower scope answered by fewer than `min_group`) adds nothing but
    its count in `withheld`; when every survey that was answered there is withheld, the source shows no value."""
    surveys = [s for s in (await session.execute(select(Survey).where(
        Survey.kind == "satisfaction", Survey.status.in_(("published", "closed")), Survey.period.is_not(None))
        .order_by(Survey.id))).scalars()
        if quarter(s.period).start < period.end and period.start < quarter(s.period).end
        and reach(scope, s.scope) is not None]
    num = den = total = 0.0
    respondents = hidden = 0
    note = None
    for s in surveys:
        keys = [q.key for q in Questionnaire.model_validate(s.questionnaire).questions() if q.kind == "likert" and q.kpi]
        inner = reach(scope, s.scope)  # not None: the list above holds only surveys the scope reaches
        rows = [(q, v, int(n)) for q, v, n in await session.execute(
            select(SurveyTally.question, SurveyTally.value, func.sum(SurveyTally.n))
            .where(SurveyTally.survey_id == s.id, SurveyTally.dim == "", SurveyTally.question.in_([*keys, RESPONDENTS]),
                   SurveyTally.place.startswith(inner))
            .group_by(SurveyTally.question, SurveyTally.value))]
        n = sum(c for q, _, c in rows if q == RESPONDENTS)
        if not keys or not n:
            continue
        why = withheld(n, inner != s.scope, min_group)
        if why:
            hidden, note = hidden + 1, why["note"]
            continue
        respondents += n
        for q, value, c in rows:
            if q != RESPONDENTS:
                den += c
                total += int(value) * c
                num += c if int(value) >= SATISFIED_FROM else 0
    shown = not (hidden and not respondents)
    return {"value": _share(num, den), "score": round(total / den, 2) if den else None, "numerator": num,
            "denominator": den, "surveys": len(surveys), "respondents": respondents, "shown": shown,
            "withheld": hidden, **({"note": note} if not shown else {})}


def to_xlsx(res: dict[str, Any]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "问卷结果"
    ws.append([f"问卷 {res['title']}", f"范围 {res['scope']}", f"受邀 {res['invited']}", f"作答 {res['respondents']}",
               f"回收率 {res['response_rate']}%"])
    ws.append(["分组 group", "题目 key", "题目 question", "题型 kind", "作答数 count", "平均 mean", "选项 value",
               "选项 label", "人数 n", "占比 share %"])
    for g in [{"group": "all", "shown": True, "questions": res["questions"]}, *res["groups"]]:
        if not g.get("shown"):
            ws.append([g["group"], None, g.get("note")])
            continue
        for q in g["questions"]:
            for d in q.get("distribution") or [{}]:
                ws.append([g["group"], q["key"], q["title"], q["kind"], q.get("count"), q.get("mean"),
                           d.get("value"), d.get("label"), d.get("count"), d.get("share")])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


async def of_quarter(session: AsyncSession, scope: str, label: str, min_group: int) -> list[dict[str, Any]]:
    """The quarter's surveys in (or over) the scope, for the quarterly report: response rate and, for
    satisfaction surveys, the share satisfied on the `kpi` questions; a narrower scope than the survey's answered by
    fewer than `min_group` is listed without them (`withheld`), as the results list it."""
    stmt = select(Survey).where(Survey.period == label, Survey.status.in_(("published", "closed"))).order_by(Survey.id)
    out = []
    for s in (await session.execute(stmt)).scalars():
        inner = reach(scope, s.scope)
        if inner is None:
            continue
        rows = dict(((q, v), (n, t)) for q, v, n, t in await session.execute(
            select(SurveyTally.question, SurveyTally.value, func.sum(SurveyTally.n), func.sum(SurveyTally.total))
            .where(SurveyTally.survey_id == s.id, SurveyTally.dim == "", SurveyTally.place.startswith(inner))
            .group_by(SurveyTally.question, SurveyTally.value)))
        keys = {q.key for q in Questionnaire.model_validate(s.questionnaire).questions() if q.kind == "likert" and q.kpi}
        sat = sum(n for (q, v), (n, _) in rows.items() if q in keys and int(v) >= SATISFIED_FROM)
        answered = sum(n for (q, _), (n, _) in rows.items() if q in keys)
        invited, responded = (int(rows.get((k, ""), (0, 0))[0] or 0) for k in (INVITED, RESPONDENTS))
        item = {"id": s.id, "title": s.title, "kind": s.kind, "scope": inner, "status": s.status,
                "anonymous": s.anonymous, "invited": invited, "respondents": responded,
                "response_rate": _share(responded, invited), "satisfied_rate": _share(sat, answered), "shown": True}
        hidden = withheld(responded, inner != s.scope, min_group)
        if hidden:
            item.update(hidden, response_rate=None, satisfied_rate=None)
        out.append(item)
    return out
