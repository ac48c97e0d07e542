"""Benchmark: survey results over 100,000 responses, against the KPI query goal (p95 ≤ 100 ms).

    .venv/bin/python -m bench.surveys [--responses 100000] [--queries 300] [--writes 2000] [--pg-url URL]

A fresh svc_metrics database (SQLite file, or a fresh PostgreSQL database with --pg-url) migrated to head; one
anonymous quarterly satisfaction survey of a street (5 communities × 5 grids, six age bands, a few special
groups) with --responses responses of 8 questions (Likert, single, multiple, needs, number, text), their tokens
and tallies loaded in bulk (the tallies the per-response upserts would give, `responding.tally_rows`). Then
--writes more responses through `responding.respond` one transaction each (the real write path: token spent,
response, tally upserts), and --queries results queries one at a time (by nothing / grid / community / age band /
group / channel at street, community and grid scope, plus the KPI's survey source), reporting p50 / p95 / max.
No wall-clock assertion; never part of `make test`.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

STREET = "110105001"
GRIDS = [f"{STREET}{c:03d}{g:03d}" for c in range(1, 6) for g in range(1, 6)]
BANDS = ["20+", "30+", "40+", "50+", "60+", "70+"]
GROUPS = ["", "", "", ",elderly,", ",disabled,", ",dibao,elderly,"]
QUESTIONNAIRE = {"sections": [{"key": "s", "title": "满意度", "questions": [
    {"key": "overall", "kind": "likert", "title": "总体满意度", "kpi": True},
    {"key": "service", "kind": "likert", "title": "服务态度"},
    {"key": "used", "kind": "single", "title": "是否使用", "options": [{"key": "yes", "label": "是"},
                                                                     {"key": "no", "label": "否"}]},
    {"key": "which", "kind": "multiple", "title": "使用过哪些", "show_if": {"question": "used", "any_of": ["yes"]},
     "options": [{"key": k, "label": k} for k in ("canteen", "clinic", "library", "daycare")]},
    {"key": "needs", "kind": "needs", "title": "需要的服务", "required": False},
    {"key": "visits", "kind": "number", "title": "到访次数", "min": 0, "max": 100},
    {"key": "age_group_ok", "kind": "likert", "title": "适老化", "show_if": {"question": "used", "any_of": ["yes"]}},
    {"key": "comment", "kind": "text", "title": "意见", "required": False}]}]}


def answers(rng: random.Random) -> dict:
    used = rng.random() < 0.6
    a = {"overall": rng.choices(range(1, 6), [1, 2, 3, 5, 6])[0], "service": rng.randint(2, 5),
         "used": "yes" if used else "no", "visits": float(rng.randint(0, 20)),
         "needs": rng.sample(["elderly_care", "health", "legal", "culture", "housing"], rng.randint(0, 2))}
    if used:
        a["which"] = rng.sample(["canteen", "clinic", "library", "daycare"], rng.randint(1, 2))
        a["age_group_ok"] = rng.randint(1, 5)
    return a


async def load(db, n: int, seed: int) -> str:
    from sqlalchemy import insert

    from svc_metrics.surveys.models import Survey, SurveyResponse, SurveyTally, SurveyToken
    from svc_metrics.surveys.questionnaire import Questionnaire, check_answers
    from svc_metrics.surveys.tallies import invited_rows, tally_rows

    qn = Questionnaire.model_validate(QUESTIONNAIRE)
    now = datetime.now(timezone.utc)
    sid = str(uuid.uuid4())
    rng = random.Random(seed)
    tallies: dict[tuple, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    async with db.session() as s, s.begin():
        await s.execute(insert(Survey).values(
            id=sid, family_id=sid, revision=1, title="bench", kind="satisfaction", anonymous=True, scope=STREET,
            period=f"{now.year}-Q{(now.month - 1) // 3 + 1}", questionnaire=qn.model_dump(mode="json"), sample={},
            status="published", version=3, invited=n, created_by="bench", created_at=now, published_at=now))
    for start in range(0, n, 10_000):
        tokens, responses = [], []
        for _ in range(min(10_000, n - start)):
            grid, band, groups = rng.choice(GRIDS), rng.choice(BANDS), rng.choice(GROUPS)
            tokens.append({"digest": secrets.token_hex(32), "survey_id": sid, "place": grid, "age_band": band,
                           "groups": groups, "person_id": None, "spent": True})
            r = SurveyResponse(id=str(uuid.uuid4()), survey_id=sid, channel=rng.choice(["app", "app", "kiosk", "visit"]),
                               place=grid, age_band=band, groups=groups, answers=check_answers(qn, answers(rng)))
            responses.append({c.name: getattr(r, c.key) for c in SurveyResponse.__table__.columns})
            for t in tally_rows(sid, qn, r):
                cell = tallies[(t["place"], t["question"], t["value"], t["dim"], t["dim_value"])]
                cell[0] += t["n"]
                cell[1] += t["total"]
                cell[2] += t["total_sq"]
        for t in invited_rows(sid, [SimpleNamespace(**t) for t in tokens]):
            cell = tallies[(t["place"], t["question"], t["value"], t["dim"], t["dim_value"])]
            cell[0] += t["n"]
        async with db.session() as s, s.begin():
            await s.execute(insert(SurveyToken), tokens)
            await s.execute(insert(SurveyResponse), responses)
    rows = [{"survey_id": sid, "place": k[0], "question": k[1], "value": k[2], "dim": k[3], "dim_value": k[4],
             "n": int(v[0]), "total": v[1], "total_sq": v[2]} for k, v in tallies.items()]
    async with db.session() as s, s.begin():
        await s.execute(insert(SurveyTally), rows)
    return sid


async def writes(db, sid: str, count: int, seed: int) -> float:
    from sqlalchemy import insert

    from common.auth import Principal
    from svc_metrics.surveys.models import SurveyToken
    from svc_metrics.surveys.responding import respond
    from svc_metrics.surveys.schemas import ResponseIn
    from svc_metrics.surveys.service import digest

    rng = random.Random(seed + 1)
    tokens = [secrets.token_urlsafe(24) for _ in range(count)]
    async with db.session() as s, s.begin():
        await s.execute(insert(SurveyToken), [{"digest": digest(t), "survey_id": sid, "place": rng.choice(GRIDS),
                                               "age_band": rng.choice(BANDS), "groups": rng.choice(GROUPS),
                                               "person_id": None, "spent": False} for t in tokens])
    who = Principal(member="portal", user="bench", role="resident", scopes=("person:bench",))
    t0 = time.perf_counter()
    for t in tokens:
        async with db.session() as s, s.begin():
            await respond(s, who, sid, ResponseIn(token=t, channel="app", answers=answers(rng)),
                          datetime.now(timezone.utc))
    return count / (time.perf_counter() - t0)


async def queries(db, sid: str, count: int, seed: int) -> dict[str, list[float]]:
    from svc_metrics.kpis.periods import of
    from svc_metrics.surveys import results
    from svc_metrics.surveys.models import Survey

    rng = random.Random(seed + 2)
    scopes = [STREET, *{g[:12] for g in GRIDS}, *GRIDS]
    out: dict[str, list[float]] = defaultdict(list)
    period = of("quarter", datetime.now(timezone.utc).date())
    for i in range(count):
        scope = rng.choice(scopes)
        by = rng.choice([None, "grid", "community", "age_band", "group", "channel"])
        t0 = time.perf_counter()
        async with db.session() as s:
            survey = await s.get(Survey, sid)
            if i % 10 == 9:
                await results.satisfaction(s, scope, period, 5)
                kind = "kpi survey source"
            else:
                await results.results(s, survey, scope, by, 5)
                kind = f"results by {by or 'nothing'}"
        ms = (time.perf_counter() - t0) * 1000
        out[kind].append(ms)
        out["all"].append(ms)
    return out


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) > 1 else values[0]


async def run(args) -> None:
    from common.db import Database
    from common.migrations import upgrade

    if args.pg_url:
        import asyncpg
        base = args.pg_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(base)
        await conn.execute('DROP DATABASE IF EXISTS "onenet_bench_surveys" WITH (FORCE)')
        await conn.execute('CREATE DATABASE "onenet_bench_surveys"')
        await conn.close()
        url = base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/onenet_bench_surveys"
    else:
        url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp(prefix='onenet-bench-surveys-')) / 'svc_metrics.db'}"
    await asyncio.to_thread(upgrade, "svc_metrics", url)
    db = Database(url)
    t0 = time.perf_counter()
    sid = await load(db, args.responses, args.seed)
    print(f"loaded {args.responses:,} responses (tokens, responses, tallies) in {time.perf_counter() - t0:.1f} s")
    rate = await writes(db, sid, args.writes, args.seed)
    print(f"{args.writes:,} more responses through respond(), one transaction each: {rate:,.0f} responses/s")
    times = await queries(db, sid, args.queries, args.seed)
    for kind, v in sorted(times.items()):
        print(f"{kind:28s} n={len(v):4d}  p50 {statistics.median(v):6.1f} ms  p95 {pct(v, 95):6.1f} ms  "
              f"max {max(v):6.1f} ms")
    print(f"goal: results p95 ≤ 100 ms — {'met' if pct(times['all'], 95) <= 100 else 'MISSED'}")
    await db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--responses", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--writes", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=29)
    ap.add_argument("--pg-url", default=None, help="PostgreSQL server (a fresh database onenet_bench_surveys)")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
