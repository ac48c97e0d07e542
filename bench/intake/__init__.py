"""Benchmark: request intake (POST /services/v1/requests through the gateway, with commit and outbox row)
against a bare FastAPI JSON endpoint on the same machine, in one run, on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.intake [--duration 10] [--rounds 4] [--connections 16] [--backends sqlite,postgresql]
                                     [--edge auto|on|off]

Real processes on loopback: the whole platform as `onenet up` starts it (gateway, svc_services with its SLA
scheduler and outbox relay, the other services, the department emulators) in a temporary var dir, and one more
uvicorn process serving a bare FastAPI app that parses a JSON body and answers JSON. Both are served the same
way (uvicorn, uvloop, httptools, no access log). Each submission carries its own Idempotency-Key, as a kiosk's
does. The gateway's rate limits are raised so they never refuse the burst (they still run). Where Debian's nginx
and Lua module are installed the gateway runs behind its edge (ADR 0012), as `onenet up` runs it (`--edge auto`,
the default), and the Python gateway alone is measured too, on its own port in the same platform, in the same
turns: intake through the edge, and through the decision core for what the edge leaves to Python. The edge's own
counter says how many of the calls it answered itself.

The load generator is a minimal HTTP/1.1 keep-alive client on uvloop (one coroutine per connection), far
cheaper per request than httpx, so it is not what limits the bare endpoint (checked against `wrk -t2 -c16` on
the bare endpoint: wrk 4,136 req/s, this client 4,605 req/s on the same 2-CPU machine). PostgreSQL runs against a fresh database
(`onenet_bench_services`) created for the run and dropped afterwards; the server comes from --pg-url or
ONENET_TEST_POSTGRES_URL. No wall-clock assertion anywhere; this is never part of `make test`.

Modules: `load` (the bare endpoint, the submission, the load generator), `platform` (processes, CPU time, the
database), `run` (the cases in turns, the report).
"""
from __future__ import annotations

from bench.intake.load import (BARE_PATH, HOST, INTAKE_PATH, SUBMISSION, Result, _connection, create_bare_app, load,
                               request_maker)
from bench.intake.platform import BENCH_DB, _pg, pg_database_url, start_bare, start_platform
from bench.intake.run import main, run_backend

__all__ = ["BARE_PATH", "BENCH_DB", "HOST", "INTAKE_PATH", "SUBMISSION", "Result", "_connection", "_pg",
           "create_bare_app", "load", "main", "pg_database_url", "request_maker", "run_backend", "start_bare",
           "start_platform"]
