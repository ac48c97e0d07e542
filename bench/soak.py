"""Bounded soak: mixed traffic through the gateway against the real processes on loopback.

    .venv/bin/python -m bench.soak --duration 300 --workers 8

Reports requests, errors (any 5xx, and any 4xx the scenario does not expect), throughput, latency
percentiles, and each process's resident memory sampled through the run. It fails (exit 1) on any error, and when
a process's memory still grows over the second half of the run by more than max(8 MiB, 5 %): the first half is
warm-up (caches, pools, the SQLite page cache), after which a process without a leak stays flat.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.support import rss_kib
from tests.e2e.harness import Platform


async def soak(p: Platform, duration: float, workers: int) -> dict:
    tokens = {u: p.token(u) for u in ("resident1", "grid1", "staff1", "evaluator1")}
    latencies: list[float] = []
    errors: list[str] = []
    count = 0
    deadline = time.monotonic() + duration
    seq = 0
    submitted: collections.deque[str] = collections.deque(maxlen=1000)  # requests waiting to be accepted

    def scenario() -> tuple[str, str, dict, dict | None, tuple[int, ...]]:
        nonlocal seq
        seq += 1
        roll = random.random()
        if roll < 0.25:
            return ("POST", "/services/v1/requests", tokens["grid1"] | {"Idempotency-Key": f"soak-{seq}"},
                    {"item_code": "WG-SJ-001", "channel": "grid_patrol", "description": f"巡查发现问题 {seq}",
                     "attributes": {"event_type": "environment"}, "location": {"grid": "110105001001001"}}, (201,))
        if roll < 0.35 and submitted:  # a state change with its version check, timeline entry and event
            return ("POST", f"/services/v1/requests/{submitted.popleft()}/transitions", tokens["staff1"],
                    {"action": "accept", "version": 1, "note": "受理"}, (200,))
        if roll < 0.5:
            return ("GET", "/services/v1/requests?limit=20", tokens["staff1"], None, (200,))
        if roll < 0.65:
            return ("GET", "/residents/v1/persons?limit=20", tokens["staff1"], None, (200,))
        if roll < 0.8:
            return ("GET", "/matching/v1/hsds/services?per_page=10", tokens["staff1"], None, (200,))
        if roll < 0.9:
            return ("GET", "/metrics/v1/kpis?scope=110105001001&period=month", tokens["evaluator1"], None, (200,))
        return ("GET", "/services/v1/catalogue/items", tokens["resident1"], None, (200,))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal count
        while time.monotonic() < deadline:
            method, path, headers, body, ok = scenario()
            t0 = time.perf_counter()
            try:
                r = await client.request(method, path, headers=headers, json=body)
                status = r.status_code
            except httpx.HTTPError as exc:
                status = 0
                errors.append(f"{method} {path}: {type(exc).__name__}")
            latencies.append(time.perf_counter() - t0)
            count += 1
            if status and status not in ok:
                errors.append(f"{method} {path}: {status}")
            elif status == 201 and path == "/services/v1/requests":
                submitted.append(r.json()["id"])

    pids = {name: child.proc.pid for name, child in p.children.items() if child.proc}
    samples = [{n: rss_kib(pid) for n, pid in pids.items()}]  # ten samples over the run
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=p.gw, timeout=30) as client:
        tasks = [asyncio.create_task(worker(client)) for _ in range(workers)]
        for _ in range(10):
            await asyncio.sleep(duration / 10)
            samples.append({n: rss_kib(pid) for n, pid in pids.items()})
        await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    memory = {"start": samples[0], "middle": samples[5], "end": samples[-1], "samples": samples}
    lat = sorted(latencies)
    return {"requests": count, "errors": errors, "seconds": elapsed, "rps": count / elapsed,
            "p50_ms": statistics.median(lat) * 1000, "p95_ms": lat[int(len(lat) * 0.95)] * 1000,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000, "memory": memory}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=300)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    p = Platform(Path(tempfile.mkdtemp(prefix="onenet-soak-"))).start()
    try:
        result = asyncio.run(soak(p, args.duration, args.workers))
    finally:
        p.stop()
    print(f"soak: {result['requests']} requests in {result['seconds']:.0f} s = {result['rps']:.0f} req/s, "
          f"errors {len(result['errors'])}, p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, "
          f"p99 {result['p99_ms']:.1f} ms")
    print("resident memory (MiB) start → middle → end, growth over the second half:")
    growing = []
    for name in result["memory"]["start"]:
        m = [result["memory"][k][name] / 1024 for k in ("start", "middle", "end")]
        growth = m[2] - m[1]
        flat = growth <= max(8.0, 0.05 * m[1])
        if not flat:
            growing.append(name)
        print(f"  {name:<14} {m[0]:7.1f} → {m[1]:7.1f} → {m[2]:7.1f}   {growth:+6.1f} {'flat' if flat else 'GROWING'}")
    for e in result["errors"][:20]:
        print("  error:", e)
    raise SystemExit(1 if result["errors"] or growing else 0)


if __name__ == "__main__":
    main()
