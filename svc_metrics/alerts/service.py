"""Early warnings (风险预警): each detector reads the observation rollup, never raw events, and records a
warning with its evidence once per place and window (a re-run scan adds nothing)."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Problem
from common.lookup import get_or_404
from common.ids import new_id
from common.periodic import run_periodically
from svc_metrics.alerts import cases
from svc_metrics.alerts.cases import visible  # a warning and its case follow one scope rule
from svc_metrics.alerts.models import Warning_
from svc_metrics.alerts.notices import warning_notice
from svc_metrics.kpis import measure, service as kpis
from svc_metrics.kpis.queries import Filters
from svc_metrics.kpis.models import Observation
from svc_metrics.kpis.periods import Period, local_today, of
from svc_metrics.settings import MetricsSettings

KIND_ZH = {"surge": "诉求激增", "overdue_backlog": "超期积压", "low_satisfaction": "满意度低于80%（整改）",
           "low_match": "供需匹配率未达目标", "bottom_decile": "季度排名后10%", "task_overdue": "议事决议任务逾期"}


def _w(kind: str, dedup: str, scope: str, period: str, zh: str, en: str, evidence: dict[str, Any], *,
       category: str | None = None, rectification: bool = False) -> dict[str, Any]:
    return {"kind": kind, "dedup_key": dedup, "scope": scope, "period": period, "title_zh": zh, "title_en": en,
            "evidence": evidence, "category": category, "rectification": rectification}


async def communities(session: AsyncSession) -> list[str]:
    code = func.substr(Observation.place, 1, 12)
    rows = await session.execute(select(code).where(func.length(Observation.place) >= 12).distinct())
    return sorted(r[0] for r in rows)


async def detect_surges(session: AsyncSession, now: datetime, s: MetricsSettings) -> list[dict[str, Any]]:
    """Requests per grid and category in the last 24 h against the trailing daily mean."""
    day_start = now - timedelta(days=1)
    base_start = day_start - timedelta(days=s.surge_baseline_days)
    grid = Observation.place
    recent = dict(((g, c), n) for g, c, n in await session.execute(
        select(grid, Observation.category, func.count()).where(
            Observation.kpi == "resolution", Observation.at >= day_start, Observation.at < now,
            func.length(grid) == 15).group_by(grid, Observation.category)))
    base = dict(((g, c), n) for g, c, n in await session.execute(
        select(grid, Observation.category, func.count()).where(
            Observation.kpi == "resolution", Observation.at >= base_start, Observation.at < day_start,
            func.length(grid) == 15).group_by(grid, Observation.category)))
    out = []
    today = local_today(now).isoformat()
    for (g, c), n in sorted(recent.items()):
        mean = base.get((g, c), 0) / s.surge_baseline_days
        if n >= s.surge_min_count and n > s.surge_factor * mean:
            out.append(_w("surge", f"surge:{g}:{c}:{today}", g, today,
                          f"网格 {g} 的「{c}」类诉求 24 小时内 {n} 件，是前 {s.surge_baseline_days} 天日均 {mean:.2f} 件的 {n / mean:.1f} 倍"
                          if mean else f"网格 {g} 的「{c}」类诉求 24 小时内 {n} 件，此前 {s.surge_baseline_days} 天无同类诉求",
                          f"Grid {g}: {n} '{c}' requests in 24 h against a trailing daily mean of {mean:.2f}",
                          {"count_24h": n, "baseline_daily_mean": round(mean, 3), "baseline_days": s.surge_baseline_days,
                           "factor": s.surge_factor, "window": [day_start.isoformat(), now.isoformat()]}, category=c))
    return out


async def detect_backlog(session: AsyncSession, now: datetime, s: MetricsSettings) -> list[dict[str, Any]]:
    code = func.substr(Observation.place, 1, 12)
    rows = await session.execute(select(code, func.count(), func.min(Observation.at)).where(
        Observation.kpi == "on_time", Observation.mode == "stock", Observation.at <= now,
        Observation.end_at.is_(None), func.length(Observation.place) >= 12).group_by(code))
    today = local_today(now).isoformat()
    out = []
    for community, n, oldest in rows:
        if n >= s.overdue_backlog_threshold:
            out.append(_w("overdue_backlog", f"backlog:{community}:{today}", community, today,
                          f"社区 {community} 有 {n} 件诉求超期未办结", f"Community {community}: {n} requests open past their deadline",
                          {"open_overdue": n, "oldest_due_at": oldest.isoformat() if oldest else None,
                           "threshold": s.overdue_backlog_threshold}))
    return out


async def detect_overdue_tasks(session: AsyncSession, now: datetime, s: MetricsSettings) -> list[dict[str, Any]]:
    """落实监督: a resolution task past its deadline and not done, one warning per task, to its topic's community."""
    rows = await session.execute(select(Observation.entity_id, Observation.place, Observation.key, Observation.at,
                                        Observation.category).where(
        Observation.kpi == "task_overdue", Observation.mode == "stock", Observation.at <= now,
        Observation.end_at.is_(None), func.length(Observation.place) >= 12).order_by(Observation.entity_id))
    out = []
    for task, place, topic, since, owner in rows:
        community = place[:12]
        out.append(_w("task_overdue", f"task_overdue:{task}", community, local_today(since).isoformat(),
                      f"社区 {community} 议事决议任务逾期未完成（议题 {topic}）",
                      f"Community {community}: a resolution task of topic {topic} is past its deadline",
                      {"task_id": task, "topic_id": topic, "owner_kind": owner, "overdue_since": since.isoformat()}))
    return out


async def detect_by_community(session: AsyncSession, period: Period, now: datetime,
                              s: MetricsSettings) -> list[dict[str, Any]]:
    out = []
    defs = {d.code: d for d in await kpis.definitions(session)}
    overrides = await kpis.overrides(session)
    mg = s.survey_min_group
    scores = []
    for c in await communities(session):
        f = Filters(scope=c)
        sat = await measure.evaluate(session, defs["satisfaction_rate"], period, f, now, overrides, min_group=mg)
        if sat["value"] is not None and sat["value"] < s.satisfaction_floor:
            out.append(_w("low_satisfaction", f"satisfaction:{c}:{period.label}", c, period.label,
                          f"社区 {c} {period.label} 满意度 {sat['value']}% 低于 {s.satisfaction_floor:g}%，已立整改",
                          f"Community {c}: satisfaction {sat['value']}% below {s.satisfaction_floor:g}% in {period.label}; rectification opened",
                          {"satisfaction_rate": sat["value"], "ratings": sat["denominator"],
                           "satisfied": sat["numerator"], "floor": s.satisfaction_floor}, rectification=True))
        match = await measure.evaluate(session, defs["match_rate"], period, f, now, overrides, min_group=mg)
        if match["status"] in ("warning", "missed"):
            out.append(_w("low_match", f"match:{c}:{period.label}", c, period.label,
                          f"社区 {c} {period.label} 供需匹配率 {match['value']}% 未达目标 {match['target']['value']}%",
                          f"Community {c}: match rate {match['value']}% below the {match['target']['value']}% target",
                          {"match_rate": match["value"], "needs": match["denominator"], "matched": match["numerator"],
                           "target": match["target"]}))
        if period.kind == "quarter":
            items = [await measure.evaluate(session, d, period, f, now, overrides, min_group=mg)
                     for d in defs.values() if (d.params or {}).get("scoped", True)]
            judged = [i for i in items if i["status"]]
            if judged:
                met = sum(1 for i in judged if i["status"] == "met") / len(judged)
                scores.append((met, sat["value"] if sat["value"] is not None else 100.0, c, len(judged)))
    if scores:
        scores.sort()
        n_bottom = math.ceil(len(scores) * 0.1)
        for rank, (met, sat, c, judged) in enumerate(scores[:n_bottom], start=1):
            out.append(_w("bottom_decile", f"bottom:{c}:{period.label}", c, period.label,
                          f"社区 {c} {period.label} 达标率 {met * 100:.0f}%，列全部 {len(scores)} 个社区后 10%",
                          f"Community {c}: {met * 100:.0f}% of indicators met, bottom 10% of {len(scores)} in {period.label}",
                          {"share_met": round(met * 100, 2), "indicators_judged": judged, "rank_from_bottom": rank,
                           "communities": len(scores), "ranking": [{"community": x[2], "share_met": round(x[0] * 100, 2)}
                                                                   for x in scores]}))
    return out


async def scan(session: AsyncSession, now: datetime, s: MetricsSettings, period: Period | None = None) -> list[Warning_]:
    period = period or of("quarter", local_today(now))
    found = (await detect_surges(session, now, s) + await detect_backlog(session, now, s)
             + await detect_overdue_tasks(session, now, s) + await detect_by_community(session, period, now, s))
    return await record(session, found, now)


async def record(session: AsyncSession, found: list[dict[str, Any]], now: datetime) -> list[Warning_]:
    """Store the warnings not stored yet (by dedup key) and open the rectification cases they call for."""
    if not found:
        return []
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    rows = [{"id": new_id(), "status": "open", "created_at": now, **w} for w in found]
    new_ids = (await session.execute(insert(Warning_).values(rows).on_conflict_do_nothing(
        index_elements=["dedup_key"]).returning(Warning_.id))).scalars().all()
    if not new_ids:
        return []
    created = list((await session.execute(select(Warning_).where(Warning_.id.in_(new_ids))
                                          .order_by(Warning_.kind, Warning_.scope))).scalars())
    # Satisfaction below the floor opens a rectification case (整改) with the warning's evidence.
    session.add_all(cases.open_for(created, now))
    for w in created:  # the place's staff are told (svc_residents' notifications), in this transaction
        warning_notice(session, w, now)
    await session.flush()
    return created


async def acknowledge(session: AsyncSession, principal: Principal, warning_id: str, note: str | None,
                      now: datetime) -> Warning_:
    w = await get_or_404(session, Warning_, warning_id,
                         Problem(404, "warning.not_found", ("预警不存在或无权查看", "Warning not found")),
                         visible=lambda w: visible(principal, w))
    if principal.role != "ops" and not principal.covers_place(w.scope):
        raise Problem(403, "forbidden", ("只能确认本辖区的预警", "Only warnings in your own area"))
    if w.status == "acknowledged":
        raise Problem(409, "warning.already_acknowledged", ("该预警已被确认", "The warning is already acknowledged"))
    w.status, w.acknowledged_at, w.acknowledged_by, w.ack_note = "acknowledged", now, principal.caller, note
    await session.flush()
    return w


async def scan_loop(app, stop) -> None:
    """Background job: run the detectors every `warning_scan_seconds` (POST .../warnings/scan runs them now)."""
    async def scan_now() -> None:
        async with app.state.db.session() as session, session.begin():
            await scan(session, app.state.clock.now(), app.state.settings)

    await run_periodically("svc_metrics/warnings", scan_now, stop, interval=app.state.settings.warning_scan_seconds,
                           run_first=False)
