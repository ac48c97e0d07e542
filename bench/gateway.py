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
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy.services import GATEWAY

ROOT = Path(__file__).resolve().parents[1]
PATH = "/departments/renshe/v1/queries"
ID_NUMBER = "110105194703210823"
MEMBER = "bench-consumer"
RESOURCE = "renshe.insurance"

# ---- the backend -------------------------------------------------------------------------------------------

BACKEND_BODY = json.dumps({"department": "renshe", "department_name": "人社局", "id_number": ID_NUMBER,
                           "data": {"insured": True, "pension": True}}, ensure_ascii=False,
                          separators=(",", ":")).encode()
BACKEND_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BACKEND_BODY)).encode())]


async def backend_app(scope, receive, send):  # a plain ASGI app: the cheapest Python backend there is
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": BACKEND_HEADERS})
    await send({"type": "http.response.body", "body": BACKEND_BODY})


# ---- processes ---------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def clean_env(tree: Path = ROOT, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONENET_")}
    env.update(extra)
    env["PYTHONPATH"] = str(tree)
    return env


def uvicorn_cmd(target: str, port: int, *, factory: bool = False, workers: int = 1,
                http: str = "httptools") -> list[str]:
    cmd = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
           "--http", http, "--no-access-log", "--log-level", "warning"]
    if factory:
        cmd.append("--factory")
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return cmd


NGINX_CONF = """
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    {access_log}
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Request-Id $request_id;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""


def find_nginx() -> str:
    for p in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if p and os.path.exists(p):
            return p
    raise SystemExit("nginx not found: apt-get install -y nginx")


def find_wrk() -> str:
    p = shutil.which("wrk")
    if not p:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    return p


# ---- the gateway's database --------------------------------------------------------------------------------

async def prepare_gateway_db(db_url: str, secret: str) -> None:
    from common.clock import Clock
    from common.db import Database
    from gateway.identity.tokens import hash_secret
    from gateway.members.models import Member

    db, now = Database(db_url), Clock().now()
    try:
        async with db.session() as s, s.begin():
            s.add(Member(code=MEMBER, name="压测调用方", kind="community", role="community_staff", scopes=[],
                         secret_hash=hash_secret(secret), secret_rotated_at=now, status="active",
                         created_at=now))
    finally:
        await db.dispose()


# ---- load ---------------------------------------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  io.write(string.format("BENCH {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p90_us\\":%d,"
    .. "\\"p99_us\\":%d,\\"non2xx\\":%d,\\"errors\\":%d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


@dataclass
class Load:
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non2xx: int
    errors: int


def run_wrk(wrk: str, script: Path, url: str, *, connections: int, threads: int, duration: float) -> Load:
    out = subprocess.run([wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s", "-s", str(script),
                          "--timeout", "5s", url], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^BENCH (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    d = json.loads(m.group(1))
    return Load(requests=d["requests"], rps=d["requests"] / (d["duration_us"] / 1e6), p50_ms=d["p50_us"] / 1000,
                p90_ms=d["p90_us"] / 1000, p99_ms=d["p99_us"] / 1000, non2xx=d["non2xx"], errors=d["errors"])


def combined(turns: list[Load]) -> Load:
    """Several turns at one target as one measurement: requests summed, throughput over the summed time,
    latency percentiles the median turn's (wrk reports no histogram to merge)."""
    mid = sorted(turns, key=lambda t: t.p50_ms)[len(turns) // 2]
    seconds = sum(t.requests / t.rps for t in turns if t.rps)
    requests = sum(t.requests for t in turns)
    return Load(requests=requests, rps=requests / seconds if seconds else 0.0, p50_ms=mid.p50_ms,
                p90_ms=mid.p90_ms, p99_ms=max(t.p99_ms for t in turns), non2xx=sum(t.non2xx for t in turns),
                errors=sum(t.errors for t in turns))


def write_script(path: Path, headers: dict[str, str]) -> Path:
    body = json.dumps({"id_number": ID_NUMBER})
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    path.write_text(WRK_SCRIPT.format(body=body, headers=lines))
    return path


# ---- main ---------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=4,
                    help="turns each target takes at --connections, alternating with the others (default 4)")
    ap.add_argument("--workers", default="1,2",
                    help="comma-separated gateway uvicorn worker counts to measure; nginx gets as many worker "
                         "processes, measured next to it (default 1,2)")
    ap.add_argument("--masked", action="store_true", help="grant part of the fields: every response is masked")
    ap.add_argument("--quiet-logs", action="store_true",
                    help="no access logs: nginx with access_log off, the gateway at log level WARNING; by default "
                         "both log each call as deployed (nginx its combined line, the gateway its JSON line, "
                         "each to a file here)")
    ap.add_argument("--edge", choices=("both", "on", "off"), default="both",
                    help="the gateway with its edge (nginx + Lua in front, ADR 0012; as deployed when the packages "
                         "are installed), without it (the Python gateway alone), or both (default)")
    ap.add_argument("--baseline", metavar="DIR", type=Path,
                    help="another source tree (e.g. `git archive` of an earlier commit): its gateway, with the "
                         "edge, is measured in the same turns as this one's (before/after in one run)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    ap.add_argument("--profile", metavar="FILE", help="record the gateway with py-spy during its first "
                                                   "16-connection run (collapsed stacks to FILE; prints the top frames)")
    ap.add_argument("--hold", action="store_true", help="start everything, print the URLs and token, and wait "
                                                        "for Ctrl-C instead of measuring (for profiling by hand)")
    args = ap.parse_args(argv)
    worker_counts = [int(w) for w in str(args.workers).split(",") if w.strip()]
    from gateway.edge.config import find_runtime

    runtime = find_runtime()
    if isinstance(runtime, str) and args.edge != "off":
        if args.edge == "on":
            print(f"the edge cannot run here: {runtime}", file=sys.stderr)
            return 2
        print(f"(the edge is not measured: {runtime})")
        args.edge = "off"
    edge_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.edge]

    wrk, nginx = find_wrk(), find_nginx()
    tmp = Path(tempfile.mkdtemp(prefix="onenet-bench-gw-"))
    procs: list[subprocess.Popen] = []

    def spawn(cmd: list[str], env: dict[str, str] | None = None, log: str = "proc", cwd: Path = ROOT
              ) -> subprocess.Popen:
        fh = open(tmp / f"{log}.log", "wb")
        p = subprocess.Popen(cmd, env=env or clean_env(), stdout=fh, stderr=subprocess.STDOUT, cwd=cwd,
                             start_new_session=True)
        procs.append(p)
        return p

    try:
        backend_port = free_port()
        backend = spawn(uvicorn_cmd("bench.gateway:backend_app", backend_port), log="backend")
        wait_http(f"http://127.0.0.1:{backend_port}/", proc=backend)
        # gateway database: migrated and seeded once, copied for each gateway (each its own chain)
        from common.keys import load_signing_keys
        from common.migrations import upgrade

        template = tmp / "gateway-template.db"
        upgrade("gateway", f"sqlite+aiosqlite:///{template}")
        secret = secrets.token_urlsafe(24)
        asyncio.run(prepare_gateway_db(f"sqlite+aiosqlite:///{template}", secret))
        keys = tmp / "keys"
        load_signing_keys(keys)
        unreachable = f"http://127.0.0.1:{free_port()}"

        def start_nginx(workers: int) -> str:
            prefix = tmp / f"nginx-{workers}"
            prefix.mkdir()
            port = free_port()
            conf = prefix / "nginx.conf"
            # as deployed, both proxies write an access line per call (nginx's default: one write each, no
            # buffer); --quiet-logs turns both off
            access = "access_log off;" if args.quiet_logs else f"access_log {prefix}/access.log;"
            conf.write_text(NGINX_CONF.format(prefix=prefix, backend=backend_port, port=port, workers=workers,
                                              access_log=access))
            ngx = spawn([nginx, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"], log=f"nginx-{workers}")
            wait_http(f"http://127.0.0.1:{port}/", proc=ngx)
            return f"http://127.0.0.1:{port}"

        def start_gateway(workers: int, edge: bool = False, tree: Path = ROOT) -> tuple[subprocess.Popen, str, str]:
            name = f"gateway-{workers}{'-edge' if edge else ''}{'-baseline' if tree != ROOT else ''}"
            db_file = tmp / f"{name}.db"
            shutil.copy(template, db_file)
            db_url = f"sqlite+aiosqlite:///{db_file}"
            port = free_port()
            gw_env = dict(
                ONENET_SERVICE_NAME="gateway", ONENET_DATABASE_URL=db_url, ONENET_KEYS_DIR=str(keys),
                ONENET_UPSTREAM_DEPARTMENTS=f"http://127.0.0.1:{backend_port}",
                ONENET_UPSTREAM_SERVICES=unreachable, ONENET_UPSTREAM_RESIDENTS=unreachable,
                ONENET_UPSTREAM_MATCHING=unreachable, ONENET_UPSTREAM_METRICS=unreachable,
                ONENET_OUTBOX_RELAY_ENABLED="false", ONENET_LOG_LEVEL="WARNING" if args.quiet_logs else "INFO",
                ONENET_CATALOGUE_FROM_OPENAPI="false",
                ONENET_RATE_MEMBER_PER_SECOND="1000000", ONENET_RATE_MEMBER_BURST="1000000",
                ONENET_RATE_USER_PER_SECOND="1000000", ONENET_RATE_USER_BURST="1000000",
                # the gateway's assertion on every forwarded call, as deployed (ADR 0013; the backend ignores it)
                ONENET_GATEWAY_ASSERTION_KEY=secrets.token_urlsafe(32))
            edge_proc = None
            if edge:
                # the gateway as deployed with its edge (ADR 0012): nginx + Lua in front, the gateway behind it
                from gateway.edge.config import EdgeProcess
                from gateway.settings import GatewaySettings

                secret_edge, control = secrets.token_urlsafe(24), free_port()
                gw_env.update(ONENET_EDGE_SECRET=secret_edge,
                              ONENET_EDGE_CONTROL_URL=f"http://127.0.0.1:{control}/_edge/state")
                edge_settings = GatewaySettings(**{k[len("ONENET_"):].lower(): v for k, v in gw_env.items()})
                edge_port = free_port()
                edge_proc = EdgeProcess(edge_settings, listen=f"127.0.0.1:{edge_port}", control_port=control,
                                        gateway=f"http://127.0.0.1:{port}", secret=secret_edge,
                                        prefix=tmp / f"{name}-nginx", workers=workers,
                                        access_log=None if args.quiet_logs else str(tmp / f"{name}-nginx" / "access.log"))
            http = GATEWAY.http if tree == ROOT else subprocess.run(
                [sys.executable, "-c", "from deploy.services import GATEWAY; print(GATEWAY.http)"], cwd=tree,
                env=clean_env(tree), capture_output=True, text=True, check=True).stdout.strip()
            gw = spawn(uvicorn_cmd("gateway.app:create_app", port, factory=True, workers=workers, http=http),
                       env=clean_env(tree, **gw_env), log=name, cwd=tree)
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/healthz", proc=gw)
            if edge_proc is not None:
                procs.append(edge_proc.start(stdout=open(tmp / f"{name}-nginx.log", "wb")))
                edge_proc.wait_ready()
                url = f"http://127.0.0.1:{edge_port}"
                wait_http(f"{url}/healthz", proc=procs[-1])
                edges[gw.pid] = edge_proc
            return gw, url, db_url

        def admit(gw_url: str) -> dict[str, str]:
            tok = httpx.post(f"{gw_url}/auth/v1/token", data={"grant_type": "client_credentials",
                                                              "client_id": MEMBER, "client_secret": secret})
            tok.raise_for_status()
            auth = {"Authorization": f"Bearer {tok.json()['access_token']}"}
            grant = {"resource": RESOURCE, "purpose": "压测 benchmark"}
            if args.masked:
                grant["fields"] = ["department", "department_name", "data.pension"]
            r = httpx.post(f"{gw_url}/exchange/v1/grants", json=grant, headers=auth)
            r.raise_for_status()
            assert r.json()["status"] == "approved", r.text
            for _ in range(4):  # with several workers, let each of them see the grant
                probe = httpx.post(f"{gw_url}{PATH}", json={"id_number": ID_NUMBER}, headers=auth)
                if probe.status_code == 200:
                    break
                time.sleep(1.0)  # another worker picks the grant up at its next refresh (2 s)
            assert probe.status_code == 200, probe.text
            if args.masked:
                assert "id_number" not in probe.json() and probe.json()["data"]["insured"] is None, probe.text
            return auth

        plain = write_script(tmp / "plain.lua", {})
        edges: dict = {}
        warmed: dict[str, int] = {}
        results: dict[str, tuple[Load, Load]] = {}
        logged: dict[str, int] = {}
        profiled = False

        def warm_up(name: str, url: str, script: Path) -> None:
            warmed[name] = run_wrk(wrk, script, url, connections=args.connections, threads=2, duration=2).requests

        def measure_many(targets: list[tuple[str, str, Path, int | None]]) -> None:
            """Throughput at `--connections`: the targets take turns, `--rounds` times (the order rotating), each
            turn a `--rounds`th of `--duration`, so a machine that speeds up or slows down during the run weighs
            on every target alike; then the median latency at one connection, one run each."""
            nonlocal profiled
            turns: dict[str, list[Load]] = {name: [] for name, *_ in targets}
            for r in range(args.rounds):
                for name, url, script, pid in targets[r % len(targets):] + targets[:r % len(targets)]:
                    spy = None
                    if args.profile and pid is not None and not profiled:
                        profiled = True
                        spy = subprocess.Popen(
                            [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record",
                             "-p", str(pid), "-d", str(max(1, round(args.duration / args.rounds))), "-r", "200",
                             "--format", "raw", "-o", args.profile, "--subprocesses", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    turns[name].append(run_wrk(wrk, script, url, connections=args.connections, threads=2,
                                               duration=args.duration / args.rounds))
                    if spy is not None:
                        spy.wait(timeout=60)
            for name, url, script, _ in targets:
                one = run_wrk(wrk, script, url, connections=1, threads=1, duration=args.duration)
                results[name] = (combined(turns[name]), one)

        if args.hold:
            ngx_url = start_nginx(worker_counts[0])
            gw, gw_url, _ = start_gateway(worker_counts[0], edge=args.edge != "off")
            auth = admit(gw_url)
            print(json.dumps({"backend": f"http://127.0.0.1:{backend_port}", "gateway": gw_url, "gateway_pid": gw.pid,
                              "nginx": ngx_url, "path": PATH, **auth}), flush=True)
            def stop(*_):
                raise KeyboardInterrupt

            signal.signal(signal.SIGTERM, stop)  # clean up on kill too, and on Ctrl-C even when backgrounded
            signal.signal(signal.SIGINT, stop)
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
            return 0

        backend_url = f"http://127.0.0.1:{backend_port}{PATH}"
        warm_up("backend (direct)", backend_url, plain)
        measure_many([("backend (direct)", backend_url, plain, None)])
        for w in worker_counts:
            # nginx with w workers and the gateway with w workers (without and with its edge), all started, then
            # measured in turns; idle, a proxy costs the others nothing
            ngx_url = start_nginx(w)
            targets = [(f"nginx ×{w}", f"{ngx_url}{PATH}", plain, None)]
            gateways = []
            runs = [(edge, ROOT) for edge in edge_modes]
            if args.baseline:  # the earlier tree's gateway beside this one's (its edge from this tree's config)
                runs += [(edge, args.baseline.resolve()) for edge in edge_modes]
            for edge, tree in runs:
                label = f"gateway{'+edge' if edge else ''}{' (baseline)' if tree != ROOT else ''} ×{w}"
                gw, gw_url, db_url = start_gateway(w, edge=edge, tree=tree)
                auth = admit(gw_url)
                script = write_script(tmp / f"token-{w}-{int(edge)}-{int(tree != ROOT)}.lua",
                                      {**auth, "X-OneNet-Purpose": "benchmark"})
                targets.append((label, f"{gw_url}{PATH}", script, gw.pid))
                gateways.append((label, gw, db_url))
            for name, url, script, _ in targets:
                warm_up(name, url, script)
            measure_many(targets)
            for label, gw, db_url in gateways:
                edge_proc = edges.pop(gw.pid, None)
                if edge_proc is not None:
                    edge_proc.stop()  # graceful: its workers ship their last records to the gateway
                time.sleep(1.0)  # the last batch of the message log
                os.killpg(gw.pid, signal.SIGTERM)
                gw.wait(timeout=30)
                logged[label] = _count_log(db_url)
            nginx_proc = next(p for p in procs if p.args[0].endswith("nginx") and str(tmp / f"nginx-{w}") in p.args)
            os.killpg(nginx_proc.pid, signal.SIGTERM)
            nginx_proc.wait(timeout=10)

        print_table(results, args, worker_counts, logged, warmed)
        if args.profile:
            print_profile(Path(args.profile))
        if args.json:
            print(json.dumps({k: {"rps": v[0].rps, "p50_1c_ms": v[1].p50_ms} for k, v in results.items()},
                             ensure_ascii=False))
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if os.environ.get("ONENET_BENCH_KEEP"):
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def print_profile(path: Path, top: int = 25) -> None:
    """Self and inclusive sample counts per frame from py-spy's collapsed stacks."""
    from collections import Counter

    own, incl, total = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        total += int(n)
        own[frames[-1]] += int(n)
        for f in set(frames):
            incl[f] += int(n)
    print(f"\npy-spy: {total} samples; top frames by own time")
    for f, n in own.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print("top frames by inclusive time")
    for f, n in incl.most_common(top + 15):
        print(f"  {100 * n / total:5.1f}%  {f}")


def _count_log(db_url: str) -> int:
    import sqlite3

    with sqlite3.connect(db_url.split("///", 1)[1]) as conn:
        return conn.execute("SELECT count(*) FROM exchange_message_log").fetchone()[0]


def print_table(results: dict[str, tuple[Load, Load]], args, worker_counts: list[int], logged: dict[str, int],
                warmed: dict[str, int]) -> None:
    c = args.connections
    print(f"\nGateway vs nginx, same backend ({PATH}), {args.duration:g} s per run, wrk; "
          f"{'no access logs' if args.quiet_logs else 'access logs on (nginx: combined format to a file; gateway: INFO, JSON lines)'}"
          f"{', masked responses' if args.masked else ''}")
    print(f"{'target':<28} {'req/s @' + str(c) + 'c':>12} {'p50 @' + str(c) + 'c':>10} {'p99 @' + str(c) + 'c':>10}"
          f" {'p50 @1c':>9} {'p99 @1c':>9} {'non-2xx':>8} {'errors':>7}")
    for name, (many, one) in results.items():
        print(f"{name:<28} {many.rps:>12,.0f} {many.p50_ms:>8.2f}ms {many.p99_ms:>8.2f}ms {one.p50_ms:>7.3f}ms"
              f" {one.p99_ms:>7.3f}ms {many.non2xx + one.non2xx:>8} {many.errors + one.errors:>7}")
    direct = results["backend (direct)"]
    for w in worker_counts:
        ng = results[f"nginx ×{w}"]
        for label in (f"gateway ×{w}", f"gateway+edge ×{w}", f"gateway (baseline) ×{w}",
                      f"gateway+edge (baseline) ×{w}"):
            if label not in results:
                continue
            gw = results[label]
            ratio = gw[0].rps / ng[0].rps if ng[0].rps else 0.0
            added = gw[1].p50_ms - ng[1].p50_ms
            print(f"\n{label}: throughput / nginx ×{w} @{c}c: {ratio:.2f}  "
                  f"(goal ≥ 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
            print(f"  median latency @1c, gateway − nginx: {added:+.3f} ms  (goal ≤ 0.5 ms: "
                  f"{'met' if added <= 0.5 else 'NOT met'}); gateway − direct backend: "
                  f"{gw[1].p50_ms - direct[1].p50_ms:+.3f} ms")
            calls = gw[0].requests + gw[1].requests
            print(f"  message log rows written: {logged.get(label, 0)} (measured calls {calls}, warm-up "
                  f"{warmed.get(label, 0)}, plus the set-up's own calls)")

if __name__ == "__main__":
    raise SystemExit(main())
