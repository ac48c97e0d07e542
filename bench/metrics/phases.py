"""The measured phases: ingest over keep-alive connections (events/s, per server CPU-second), the KPI query mix
one at a time (p50 / p95), and the rebuild check (the incremental rollup against a rebuild from the events)."""
from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import timedelta

import httpx

from bench.metrics.events import CATEGORIES, COMMUNITIES, DISTRICT, FIRST_DAY, GRIDS, LAST_DAY, STREETS
from bench.metrics.server import Server
from bench.support import pct



async def ingest(server: Server, bodies: list[bytes], n_events: int, connections: int) -> float:
    headers = {**server.token("system"), "Content-Type": "application/json"}
    queue = list(reversed(bodies))
    accepted = 0
    latencies: list[float] = []

    per_batch = n_events / max(1, len(bodies))
    step = 100_000   # a progress line per this many events: where the rate falls as the database grows
    mark = {"sent": 0, "t": 0.0, "cpu": 0.0, "next": step}

    def progress() -> None:
        now, cpu = time.perf_counter(), server.cpu_seconds()
        done = mark["sent"] * per_batch
        print(f"  {done:>9,.0f} events: {step / (now - mark['t']):6,.0f} events/s in the last {step:,}, "
              f"{step / max(cpu - mark['cpu'], 1e-9):6,.0f} per server CPU-s; {server.size()}", flush=True)
        mark.update(t=now, cpu=cpu, next=mark["next"] + step)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            r = await client.post("/metrics/v1/events", content=body, headers=headers)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise SystemExit(f"batch refused: {r.status_code} {r.text[:500]}")
            accepted += r.json()["accepted"]
            mark["sent"] += 1
            if mark["sent"] * per_batch >= mark["next"]:
                progress()

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=server.base, timeout=None, limits=limits, auth=server.auth) as client:
        t0, cpu0 = time.perf_counter(), server.cpu_seconds()
        mark.update(t=t0, cpu=cpu0)
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        seconds, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
    rate = n_events / seconds
    print(f"ingest: {n_events:,} events in {len(bodies):,} batches, {seconds:.1f} s -> {rate:,.0f} events/s "
          f"(accepted {accepted:,}); batch latency p50 {pct(latencies, .5) * 1000:.0f} ms, "
          f"p95 {pct(latencies, .95) * 1000:.0f} ms; server CPU {cpu:.1f} s = {n_events / cpu:,.0f} events per "
          f"server CPU-second; load average {os.getloadavg()[0]:.1f}", flush=True)
    return rate


CATALOGUE_CODES = ["response_time", "resolution_rate", "on_time_rate", "satisfaction_rate", "satisfaction_score",
                   "match_rate", "grid_closure_time", "emergency_ack_time", "online_rate", "errand_time",
                   "participation_rate", "elderly_usage", "duplicate_investment", "volunteer_ratio"]


def query_mix(n: int, seed: int = 5) -> list[tuple[str, dict[str, str]]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = rnd.choice(["district", "street", "community", "grid", "all"])
        scope = {"district": DISTRICT, "street": rnd.choice(STREETS), "community": rnd.choice(COMMUNITIES),
                 "grid": rnd.choice(GRIDS), "all": "all"}[kind]
        pk = rnd.choice(["day", "week", "month", "month", "quarter"])
        d = FIRST_DAY + timedelta(days=rnd.randrange((LAST_DAY - FIRST_DAY).days + 1))
        period = {"day": d.isoformat(), "week": f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}",
                  "month": f"{d.year}-{d.month:02d}", "quarter": f"{d.year}-Q{(d.month - 1) // 3 + 1}"}[pk]
        params = {"scope": scope, "period": period}
        f = rnd.random()
        if f < 0.2:
            params["category"] = rnd.choice(CATEGORIES)[0]
        elif f < 0.27:
            params["channel"] = rnd.choice(["app", "phone", "counter"])
        elif f < 0.32:
            params["group"] = rnd.choice(["elderly", "*"])
        if i % 2 == 0:
            out.append(("/metrics/v1/kpis", params))
        else:
            out.append((f"/metrics/v1/kpis/{rnd.choice(CATALOGUE_CODES)}", {**params, "trend": "1"}))
    return out


async def queries(server: Server, n: int) -> dict[str, tuple[float, float]]:
    headers = server.token("ops")
    mix = query_mix(n)
    lat: dict[str, list[float]] = {"table": [], "single": []}
    async with httpx.AsyncClient(base_url=server.base, timeout=None, auth=server.auth) as client:
        for path, params in mix[:10]:   # warm-up (connections, caches)
            await client.get(path, params=params, headers=headers)
        for path, params in mix:
            t0 = time.perf_counter()
            r = await client.get(path, params=params, headers=headers)
            dt = time.perf_counter() - t0
            if r.status_code != 200:
                raise SystemExit(f"query failed: {path} {params} {r.status_code} {r.text[:300]}")
            lat["table" if path.endswith("/kpis") else "single"].append(dt)
    out = {}
    for k, v in [("KPI table (23 indicators)", lat["table"]), ("single indicator", lat["single"]),
                 ("all queries", lat["table"] + lat["single"])]:
        out[k] = (pct(v, .5) * 1000, pct(v, .95) * 1000)
        print(f"query {k:<26} n={len(v):>4}  p50 {out[k][0]:6.1f} ms  p95 {out[k][1]:6.1f} ms  "
              f"max {max(v) * 1000:6.1f} ms", flush=True)
    return out


async def rebuild_check(server: Server) -> bool:
    headers = server.token("ops")
    probes = [{"scope": "all", "period": "2026-Q1"}, {"scope": DISTRICT, "period": "2026-03"},
              {"scope": STREETS[1], "period": "2026-W10"}, {"scope": COMMUNITIES[7], "period": "2026-Q3"},
              {"scope": GRIDS[42], "period": "2026-06"}, {"scope": "all", "period": "2026-05-12"},
              {"scope": "all", "period": "2026-Q2", "category": "grid_event"},
              {"scope": DISTRICT, "period": "2026-Q2", "group": "elderly"}]
    async with httpx.AsyncClient(base_url=server.base, timeout=None, auth=server.auth) as client:
        async def tables():
            return [(await client.get("/metrics/v1/kpis", params=p, headers=headers)).json()["items"] for p in probes]
        before = await tables()
        t0 = time.perf_counter()
        r = await client.post("/metrics/v1/rebuild", headers=headers)
        took = time.perf_counter() - t0
        after = await tables()
    same = before == after
    diffs = [(p, b["code"], b["value"], a["value"]) for p, tb, ta in zip(probes, before, after)
             for b, a in zip(tb, ta) if b != a]
    print(f"rebuild: {r.json()} in {took:.1f} s; incremental rollup vs rebuild on {len(probes)} KPI tables: "
          f"{'OK' if same else 'MISMATCH'}", flush=True)
    for d in diffs[:10]:
        print("  differs:", d)
    return same
