"""Benchmark: svc_metrics ingest and KPI queries on 1,000,000 events, through the real HTTP API.

    .venv/bin/python -m bench.metrics [--events 1000000] [--batch 500] [--connections 2] [--queries 300]
                                      [--postgres URL] [--random-ids] [--keep] [--reuse DIR]

What it does, against one real uvicorn process of svc_metrics (uvloop, httptools, no access log) on a fresh
SQLite file in a temporary directory (or, with `--postgres URL`, a database of its own created there and dropped
afterwards; migrated with `common.migrations.upgrade`), with the gauge and warning background jobs switched off
so they do not compete with the load:

1. generates a year (2025-11 … 2026-10, Asia/Shanghai) of realistic events for one district (4 streets × 5
   communities × 5 grids), shaped like the producers' outbox events (svc_services' `event_data`, svc_matching's
   needs/offers/ledger, svc_residents' people, the gateway's exchange items and calls): the request lifecycle
   with channels, categories, priorities, special groups, departments, due times, overdue, reopen, cancel and
   ratings; needs with proposals and offers; residents, volunteers, hours offered and used, participation,
   resources, the service catalogue, members. Event and entity ids are UUIDv7 made at the moment the producer
   would make them, as `common.ids.new_id` does (`--random-ids`: UUIDv4, the worst case for the event store's
   indexes). Events leave in time order as a relay would send them, with 2%
   delivered late (up to a day) so out-of-order arrival is exercised. All bodies are encoded before the clock
   starts, so the generator does not compete with the server for the CPU.
2. POSTs them to `/metrics/v1/events` in batches of `--batch` over `--connections` keep-alive connections,
   and reports events/s (goal ≥ 5,000).
3. runs a mix of KPI queries one at a time: the KPI table (`/metrics/v1/kpis`, every indicator) and single
   indicators (`/metrics/v1/kpis/{code}?trend=1`) for scopes all / district / street / community / grid, periods
   day / week / month / quarter, some with a category, channel or special-group filter; reports p50 / p95
   (goal p95 ≤ 100 ms).
4. takes a set of KPI tables, calls `POST /metrics/v1/rebuild`, takes them again and prints OK or MISMATCH.

Tokens are signed with a key generated for the run and published to the process as a JWKS file. Never part
of `make test`; no wall-clock assertion anywhere. Exit status 1 on MISMATCH or on a refused batch.

Modules: `events` (the generator), `server` (the process under test), `phases` (ingest, queries, rebuild
check), `run` (the command line).
"""
from __future__ import annotations

from bench.metrics.events import Generator, dumps, uid
from bench.metrics.phases import ingest, queries, query_mix, rebuild_check
from bench.metrics.run import main
from bench.metrics.server import Server

__all__ = ["Generator", "Server", "dumps", "ingest", "main", "queries", "query_mix", "rebuild_check", "uid"]
