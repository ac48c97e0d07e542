"""Benchmark: the gateway (token check, rate limit, grant check, message log on) against nginx proxying the same
backend endpoint, in one run.

    .venv/bin/python -m bench.gateway [--duration 10] [--connections 16] [--workers 1] [--masked]
                                      [--edge both|on|off]

What runs (all real processes on loopback, started and stopped by this script):
- backend: a minimal ASGI app under uvicorn (uvloop + httptools) answering `POST /departments/renshe/v1/queries`
  with the department emulator's answer shape (fixed bytes, so the backend costs the same for both proxies);
- nginx (Debian package) with a generated config: one worker, keepalive upstream pool to the backend;
- the gateway: `uvicorn gateway.app:create_app --factory` (uvloop + httptools) on a temporary SQLite database
  migrated to head and seeded with one member (client secret) that obtains its token at `POST /auth/v1/token`
  and applies for `renshe.insurance` (unconditional: granted on application) through the gateway's own API.
  Every benchmarked call is authenticated (RS256 token), rate-limited (in-memory buckets; limits raised so
  the benchmark is not throttled), checked against the grant, forwarded over a pooled connection and written
  to the hash-chained message log, counted in its batch's `exchange.calls` outbox events (off the request path).
  `--masked` grants only part of the fields, so every response is parsed and masked as well.
- the gateway with its edge (`gateway+edge`, ADR 0012; as `onenet up` runs it when Debian's nginx Lua module is
  installed): nginx with `gateway/edge/onenet_edge.lua` in front of the same gateway, answering the calls on the
  gateway's cached decision (rate limit, breaker, both bodies hashed, the record shipped to the gateway's message
  log). `--edge both` (the default) measures the gateway without and with it; `off` without, `on` with only.

Load comes from `wrk` (Debian package; C, not the bottleneck): throughput with 16 connections (2 threads), the
targets taking turns (`--rounds`, 4 by default, the order rotating) so that the machine's drift weighs on each
alike; median latency with 1 connection (1 thread). Each target is warmed up first. Goals (issue #3): gateway
throughput ≥ 0.5 × nginx's at 16 connections; gateway median latency at 1 connection ≤ nginx's + 0.5 ms.

The machine is shared and small (2 cores here): wrk, nginx or the gateway, and the backend all compete for the
same cores, so figures vary from run to run; the table prints what this run measured. Never part of
`make test`; no assertion on time anywhere.

Figures and where the time goes: README (Figures). `--baseline DIR` measures another source tree's gateway (say
`git archive` of an earlier commit) in the same turns, before and after in one run; its edge is configured by
this tree's `gateway/edge/config.py`.

Modules: `backend` (the endpoint both proxies forward to), `rig` (the processes and their set-up), `load` (wrk and
the turns), `report` (the table and the goals), `run` (the command line).
"""
from __future__ import annotations

from bench.gateway.backend import backend_app
from bench.gateway.load import Load, Turns, combined, run_wrk, write_script
from bench.gateway.rig import Rig
from bench.gateway.run import main

__all__ = ["Load", "Rig", "Turns", "backend_app", "combined", "main", "run_wrk", "write_script"]
