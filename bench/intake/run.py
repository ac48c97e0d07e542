"""bench.intake's run: one backend's platform and the two cases in turns, and the report."""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import httpx

from bench.intake.load import BARE_PATH, INTAKE_PATH, SUBMISSION, Result, load, request_maker
from bench.intake.platform import (BENCH_DB, _pg, helper_processes, measured_cpu, pg_database_url, start_bare,
                                   start_platform)
from bench.support import cpu_seconds, loadavg


def run_backend(backend: str, args) -> list[Result]:
    """The bare endpoint, then intake through the gateway (behind its edge when `args.edge`), then with the edge the
    Python gateway alone (its own port), taking turns; each case with the CPU per request of its processes."""
    var = Path(tempfile.mkdtemp(prefix=f"onenet-bench-intake-{backend}-"))
    if backend == "postgresql":
        asyncio.run(_pg(args.pg_url, f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        asyncio.run(_pg(args.pg_url, f'CREATE DATABASE "{BENCH_DB}"'))
        os.environ["ONENET_SVC_SERVICES_DATABASE_URL"] = pg_database_url(args.pg_url)
    print(f"[{backend}] starting the platform in {var} …", flush=True)
    bare_proc, bare_port = start_bare()
    p = None
    try:
        p = start_platform(var, edge=args.edge)
        token = p.token("grid1")
        gw_port = int(p.gw.rsplit(":", 1)[1])
        # one submission by hand, to fail early and clearly
        r = httpx.post(p.gw + INTAKE_PATH, json=SUBMISSION, headers=token, timeout=30)
        if r.status_code != 201:
            raise RuntimeError(f"intake answered {r.status_code}: {r.text[:500]}")
        keyed = not args.no_idempotency_key
        pids = {name: c.proc.pid for name, c in p.children.items() if c.proc is not None}
        pids.update(helper_processes(pids))
        platform_cpu = lambda: {name: cpu_seconds(pid) for name, pid in pids.items()}  # noqa: E731
        cases = [(Result("bare FastAPI"), bare_port, request_maker(BARE_PATH, bare_port, {}, SUBMISSION,
                                                                    idempotency=keyed),
                  lambda: {"bare endpoint": cpu_seconds(bare_proc.pid)})]
        ports = [(f"intake {backend}" + (" (edge)" if args.edge else ""), gw_port)]
        if args.edge:
            ports.append((f"intake {backend} (no edge)", p.launcher.ports["gateway_app"]))
        cases += [(Result(name), port, request_maker(INTAKE_PATH, port, token, SUBMISSION, idempotency=keyed),
                   platform_cpu) for name, port in ports]

        def edge_answered() -> int:
            r = httpx.get(f"http://127.0.0.1:{p.launcher.ports['edge_control']}/_edge/state",
                          headers={"X-OneNet-Edge-Secret": p.launcher.edge_secret}, timeout=5)
            return r.json()["answered"]

        async def measure() -> list[Result]:
            # The cases take turns in `rounds` slices each, so a change in this shared machine's speed during the
            # run weighs on all alike instead of on whichever ran at that moment
            for _, port, make, _ in cases:
                await load("warm-up", port, make, connections=args.connections, duration=0, warmup=args.warmup)
            cpu: list[dict[str, float]] = [{} for _ in cases]
            for _ in range(args.rounds):
                for (result, port, make, own_cpu), spent in zip(cases, cpu):
                    before = own_cpu() | measured_cpu()
                    answered = edge_answered() if args.edge else 0
                    part = await load(result.name, port, make, connections=args.connections,
                                      duration=args.duration / args.rounds, warmup=0)
                    if args.edge:  # which side answered: the edge's own counter (tests/gateway/test_edge.py)
                        part.edge_answered = edge_answered() - answered
                    result.add(part)
                    for name, seconds in (own_cpu() | measured_cpu()).items():
                        spent[name] = spent.get(name, 0.0) + seconds - before[name]
            for (result, port, *_), spent in zip(cases, cpu):
                result.cpu_ms = {name: seconds * 1000 / max(1, result.requests) for name, seconds in spent.items()}
                if args.edge and port != bare_port:
                    result.note = f"answered by the edge itself: {result.edge_answered:,} of {result.requests:,}"
            return [result for result, *_ in cases]

        try:
            import uvloop

            return uvloop.run(measure())
        except ImportError:
            return asyncio.run(measure())
    finally:
        if p is not None:
            p.stop()
        bare_proc.terminate()
        bare_proc.wait(timeout=10)
        if backend == "postgresql":
            # Platform.stop() restores the environment it cleared, this URL included: the next backend must not
            # inherit it
            os.environ.pop("ONENET_SVC_SERVICES_DATABASE_URL", None)
            asyncio.run(_pg(args.pg_url, f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        if not args.keep_var:
            shutil.rmtree(var, ignore_errors=True)


def main() -> None:
    import bench.intake

    ap = argparse.ArgumentParser(prog="python -m bench.intake", description=bench.intake.__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds measured per case")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=4, help="turns each case takes, duration/rounds seconds each")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=os.environ.get("ONENET_TEST_POSTGRES_URL",
                                                       "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--no-idempotency-key", action="store_true", help="submit without Idempotency-Key")
    ap.add_argument("--keep-var", action="store_true", help="keep the temporary var dirs (logs, SQLite files)")
    ap.add_argument("--edge", choices=("auto", "on", "off"), default="auto",
                    help="the gateway behind its edge, as `onenet up` runs it (auto: when nginx's Lua module is "
                         "installed); with it the Python gateway alone is measured too, on its own port")
    args = ap.parse_args()
    args.edge = edge_wanted(args.edge)
    rows = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        rows.append(run_backend(backend, args))
    print()
    print(f"intake at {args.connections} connections, {args.duration:.0f} s per case in {args.rounds} turns"
          f" ({os.cpu_count()} CPUs, load generator in-process; load average {loadavg()})")
    print(f"{'case':<30}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}{'ratio':>8}")
    failed = False
    for bare, *intakes in rows:
        for res in (bare, *intakes):
            ratio = "" if res is bare else f"{res.rps / bare.rps:.3f}"
            print(f"{res.name:<30}{res.rps:9.0f}{res.pct(0.5):9.1f}{res.pct(0.95):9.1f}{res.errors:8d}{ratio:>8}")
            if res.errors:
                failed = True
                print(f"    statuses {res.statuses}; first error: {res.sample_error}")
            if res.cpu_ms:
                # idle is the machine's CPU left unused per request: near 0, the case was bound by the CPU
                print("    CPU ms per request: " + ", ".join(f"{n} {v:.2f}" for n, v in sorted(
                    res.cpu_ms.items(), key=lambda kv: (kv[0] == "idle", -kv[1])) if v >= 0.01))
            if res.note:
                print(f"    {res.note}")
    print("goal: intake ≥ 0.15 × the bare endpoint's throughput")
    raise SystemExit(1 if failed else 0)


def edge_wanted(mode: str) -> bool:
    from gateway.edge.config import find_runtime

    runtime = find_runtime()
    if mode == "on" and isinstance(runtime, str):
        raise SystemExit(f"--edge on, but the edge cannot run here: {runtime}")
    return mode == "on" or (mode == "auto" and not isinstance(runtime, str))
