"""The command line: generate and encode the events, start the server, run the phases, clean up."""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import bench.metrics
from bench.metrics import events
from bench.metrics.events import Generator, dumps
from bench.metrics.phases import ingest, queries, rebuild_check
from bench.metrics.server import Server


def main() -> None:
    ap = argparse.ArgumentParser(description=bench.metrics.__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=500, help="events per POST (a relay sends 200–1000)")
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--random-ids", action="store_true",
                    help="UUIDv4 event and entity ids instead of the producers' time-ordered UUIDv7 (worst case)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (database, server log)")
    ap.add_argument("--postgres", metavar="URL",
                    help="run on PostgreSQL: a database of its own is created through this admin URL "
                         "(e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    ap.add_argument("--reuse", type=Path, help="a directory kept by --keep: skip generation and ingest, run the "
                                               "queries and the rebuild check on its database")
    args = ap.parse_args()
    events.RANDOM_IDS = args.random_ids
    if args.reuse:
        server = Server(args.reuse)
        try:
            server.start()
            asyncio.run(queries(server, args.queries))
            ok = asyncio.run(rebuild_check(server))
        finally:
            server.stop()
        raise SystemExit(0 if ok else 1)

    t0 = time.perf_counter()
    bodies, batch, counts, n = [], [], {}, 0
    for env in Generator(args.events, args.seed):
        batch.append(env)
        counts[env["type"]] = counts.get(env["type"], 0) + 1
        n += 1
        if len(batch) == args.batch:
            bodies.append(dumps({"events": batch}))
            batch = []
    if batch:
        bodies.append(dumps({"events": batch}))
    size = sum(len(b) for b in bodies)
    print(f"generated {n:,} events ({len(counts)} types, {size / n:.0f} bytes each on average, "
          f"largest batch {max(len(b) for b in bodies) / 1024:.0f} KiB) in {time.perf_counter() - t0:.1f} s", flush=True)
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    print("  " + ", ".join(f"{k} {v:,}" for k, v in top), flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="onenet_bench_metrics_"))
    server = Server(workdir, args.postgres)
    ok = True
    try:
        server.start()
        print(f"svc_metrics on {server.base}, {server.url if server.postgres else f'SQLite {server.db}'}", flush=True)
        asyncio.run(ingest(server, bodies, n, args.connections))
        del bodies
        print(server.size(), flush=True)
        asyncio.run(queries(server, args.queries))
        ok = asyncio.run(rebuild_check(server))
    finally:
        server.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            server.drop()
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    if not ok:
        raise SystemExit(1)

