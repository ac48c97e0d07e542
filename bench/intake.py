"""Benchmark: request intake (POST /services/v1/requests through the gateway, with commit and outbox row)
against a bare FastAPI JSON endpoint on the same machine, in one run, on SQLite and on PostgreSQL.

    .venv/bin/python -m bench.intake [--duration 10] [--rounds 4] [--connections 16] [--backends sqlite,postgresql]

Real processes on loopback: the whole platform as `onenet up` starts it (gateway, svc_services with its SLA
scheduler and outbox relay, the other services, the department emulators) in a temporary var dir, and one more
uvicorn process serving a bare FastAPI app that parses a JSON body and answers JSON. Both are served the same
way (uvicorn, uvloop, httptools, no access log). Each submission carries its own Idempotency-Key, as a kiosk's
does. The gateway's rate limits are raised so they never refuse the burst (they still run).

The load generator is a minimal HTTP/1.1 keep-alive client on uvloop (one coroutine per connection), far
cheaper per request than httpx, so it is not what limits the bare endpoint (checked against `wrk -t2 -c16` on
the bare endpoint: wrk 4,136 req/s, this client 4,605 req/s on the same 2-CPU machine). PostgreSQL runs against a fresh database
(`onenet_bench_services`) created for the run and dropped afterwards; the server comes from --pg-url or
ONENET_TEST_POSTGRES_URL. No wall-clock assertion anywhere; this is never part of `make test`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"
BENCH_DB = "onenet_bench_services"
INTAKE_PATH = "/services/v1/requests"
BARE_PATH = "/intake"


# ---------------------------------------------------------------------------------------------- the bare endpoint
def create_bare_app():
    """A FastAPI app with one JSON POST endpoint and nothing else: the reference the intake is compared to."""
    from fastapi import FastAPI

    app = FastAPI()
    counter = iter(range(1, 1 << 62))

    @app.post(BARE_PATH, status_code=201)
    async def intake(body: dict) -> dict:
        return {"id": next(counter), "state": "submitted", "received": len(body)}

    return app


# ---------------------------------------------------------------------------------------------- load generator
@dataclass
class Result:
    name: str
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per request of each platform process
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sample_error: str = ""

    def add(self, part: "Result") -> None:
        """Another slice of the same case (`--rounds`)."""
        self.requests += part.requests
        self.errors += part.errors
        self.seconds += part.seconds
        self.latencies += part.latencies
        for status, n in part.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        self.sample_error = self.sample_error or part.sample_error

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(len(lat) * q))] * 1000


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        return status, b"".join(parts)
    return status, await reader.readexactly(length or 0)


async def _connection(port: int, make_request, deadline: float, expect: int, result: Result,
                      record: bool) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.perf_counter() < deadline:
            data = make_request()
            t0 = time.perf_counter()
            writer.write(data)
            status, body = await _read_response(reader)
            if not record:
                continue
            result.latencies.append(time.perf_counter() - t0)
            result.requests += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status != expect:
                result.errors += 1
                result.sample_error = result.sample_error or f"{status} {body[:300]!r}"
    finally:
        writer.close()


async def load(name: str, port: int, make_request, *, connections: int, duration: float, warmup: float,
               expect: int = 201) -> Result:
    result = Result(name)
    if warmup:
        end = time.perf_counter() + warmup
        await asyncio.gather(*(_connection(port, make_request, end, expect, result, False)
                               for _ in range(connections)))
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(port, make_request, t0 + duration, expect, result, True)
                           for _ in range(connections)))
    result.seconds = time.perf_counter() - t0
    return result


def request_maker(path: str, port: int, headers: dict[str, str], body: dict, *, idempotency: bool):
    """A function returning the bytes of the next POST (each with its own Idempotency-Key when asked)."""
    payload = json.dumps(body, ensure_ascii=False).encode()
    fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{fixed}")
    run = os.urandom(4).hex()
    seq = 0

    def make() -> bytes:
        nonlocal seq
        seq += 1
        key = f"Idempotency-Key: bench-{run}-{seq}\r\n" if idempotency else ""
        return (head + key + "\r\n").encode() + payload

    return make


# ---------------------------------------------------------------------------------------------- processes
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def postgres_cpu_seconds() -> float:
    """CPU time so far of every PostgreSQL server process on this machine (backends and background workers): the
    database's share of a case. A backend that exits within a turn takes its time with it (the pools keep theirs)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(proc.name))
            except OSError:
                continue
    return total


def idle_seconds() -> float:
    """Idle CPU time of the whole machine so far, all CPUs (Linux /proc/stat): whether a case had CPU to spare."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def measured_cpu() -> dict[str, float]:
    """CPU seconds so far that belong to neither the platform's processes nor the bare endpoint's."""
    own = os.times()
    return {"postgresql": postgres_cpu_seconds(), "load generator": own.user + own.system, "idle": idle_seconds()}


def helper_processes(pids: dict[str, int]) -> dict[str, int]:
    """Processes the platform's own processes started (the gateway's message-log writer): their CPU counts too."""
    found = {}
    for name, pid in pids.items():
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            label = next((a.decode().rsplit(".", 1)[-1] for a in args if a.startswith(b"gateway.")), child)
            found[f"{name}/{label}"] = int(child)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not answering after {timeout}s")


def start_bare() -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.intake:create_bare_app", "--factory", "--host", HOST,
           "--port", str(port), "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    wait_http(f"http://{HOST}:{port}/docs")
    return proc, port


def _spawn_logged(launcher, child) -> None:
    """Launcher.spawn, with the child's output (JSON access logs included) going to var/logs/<name>.log."""
    from deploy.launcher import app_target

    logs = launcher.var / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "uvicorn", app_target(child.spec), "--factory", "--host", launcher.host,
           "--port", str(child.port), "--http", child.spec.http, "--no-access-log", "--log-level", "warning",
           "--timeout-graceful-shutdown", "5"]
    with open(logs / f"{child.spec.name}.log", "ab") as out:
        child.proc = subprocess.Popen(cmd, env=child.env, start_new_session=True, stdout=out,
                                      stderr=subprocess.STDOUT)
    child.started_at = time.monotonic()


def start_platform(var: Path, *, databases: dict[str, str] | None = None, routed: str = "svc_services"):
    """The platform as the e2e harness starts it, with the gateway's rate limits raised for the burst.
    `databases`: environment variable → URL for the services that run on a database of the benchmark's own
    (default: svc_services' from ONENET_SVC_SERVICES_DATABASE_URL, as run_backend sets it); `routed`: the
    service whose routes the gateway must serve before the load starts."""
    from deploy.launcher import Child
    from deploy.services import ALL
    from tests.e2e.harness import Platform

    if databases is None:
        url = os.environ.get("ONENET_SVC_SERVICES_DATABASE_URL")
        databases = {"ONENET_SVC_SERVICES_DATABASE_URL": url} if url else {}
    p = Platform(var)   # clears ONENET_* from the environment (restored on stop)
    os.environ.update(databases)
    try:
        p.creds = p.launcher.prepare()
        for spec in ALL:
            child = Child(spec=spec, port=p.launcher.ports[spec.name])
            child.env = p.launcher.child_env(spec, p.creds)
            if spec.name == "gateway":
                child.env.update({f"ONENET_RATE_{who}_{what}": "1000000" for who in ("USER", "MEMBER")
                                  for what in ("PER_SECOND", "BURST")})
            p.children[spec.name] = child
            p.launcher.children.append(child)
            _spawn_logged(p.launcher, child)
        for spec in ALL:
            p.wait_ready(spec.name)
        p.wait_routed(routed)
    except BaseException:
        p.stop()
        raise
    finally:
        for name in databases:
            os.environ.pop(name, None)
    return p


async def _pg(admin_url: str, sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_database_url(admin_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(drivername="postgresql+asyncpg", database=BENCH_DB).render_as_string(
        hide_password=False)


# ---------------------------------------------------------------------------------------------- one backend
SUBMISSION = {"item_code": "WG-SJ-001", "channel": "grid_patrol", "description": "巡查发现：3号楼前路灯不亮，夜间行人不便。",
              "attributes": {"event_type": "environment"}, "location": {"grid": "110105001001001"}}


def run_backend(backend: str, args) -> tuple[Result, Result]:
    var = Path(tempfile.mkdtemp(prefix=f"onenet-bench-intake-{backend}-"))
    if backend == "postgresql":
        asyncio.run(_pg(args.pg_url, f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)'))
        asyncio.run(_pg(args.pg_url, f'CREATE DATABASE "{BENCH_DB}"'))
        os.environ["ONENET_SVC_SERVICES_DATABASE_URL"] = pg_database_url(args.pg_url)
    print(f"[{backend}] starting the platform in {var} …", flush=True)
    bare_proc, bare_port = start_bare()
    p = None
    try:
        p = start_platform(var)
        token = p.token("grid1")
        gw_port = int(p.gw.rsplit(":", 1)[1])
        # one submission by hand, to fail early and clearly
        r = httpx.post(p.gw + INTAKE_PATH, json=SUBMISSION, headers=token, timeout=30)
        if r.status_code != 201:
            raise RuntimeError(f"intake answered {r.status_code}: {r.text[:500]}")
        intake = request_maker(INTAKE_PATH, gw_port, token, SUBMISSION, idempotency=not args.no_idempotency_key)
        bare = request_maker(BARE_PATH, bare_port, {}, SUBMISSION, idempotency=not args.no_idempotency_key)

        pids = {name: c.proc.pid for name, c in p.children.items() if c.proc is not None}
        pids.update(helper_processes(pids))

        async def measure() -> tuple[Result, Result]:
            # The two cases take turns in `rounds` slices each, so a change in this shared machine's speed during
            # the run weighs on both alike instead of on whichever ran at that moment
            b, i = Result("bare FastAPI"), Result(f"intake {backend}")
            for port, make in ((bare_port, bare), (gw_port, intake)):
                await load("warm-up", port, make, connections=args.connections, duration=0, warmup=args.warmup)
            cpu = dict.fromkeys(pids, 0.0)
            bare_cpu: dict[str, float] = {"bare endpoint": 0.0}
            for _ in range(args.rounds):
                before, before_bare = measured_cpu(), cpu_seconds(bare_proc.pid)
                b.add(await load(b.name, bare_port, bare, connections=args.connections,
                                 duration=args.duration / args.rounds, warmup=0))
                bare_cpu["bare endpoint"] += cpu_seconds(bare_proc.pid) - before_bare
                for name, seconds in measured_cpu().items():
                    bare_cpu[name] = bare_cpu.get(name, 0.0) + seconds - before[name]
                before = {name: cpu_seconds(pid) for name, pid in pids.items()} | measured_cpu()
                i.add(await load(i.name, gw_port, intake, connections=args.connections,
                                 duration=args.duration / args.rounds, warmup=0))
                for name, seconds in ({name: cpu_seconds(pid) for name, pid in pids.items()}
                                      | measured_cpu()).items():
                    cpu[name] = cpu.get(name, 0.0) + seconds - before[name]
            b.cpu_ms = {name: seconds * 1000 / max(1, b.requests) for name, seconds in bare_cpu.items()}
            i.cpu_ms = {name: seconds * 1000 / max(1, i.requests) for name, seconds in cpu.items()}
            return b, i

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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds measured per case")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=4, help="turns each case takes, duration/rounds seconds each")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-url", default=os.environ.get("ONENET_TEST_POSTGRES_URL",
                                                       "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--no-idempotency-key", action="store_true", help="submit without Idempotency-Key")
    ap.add_argument("--keep-var", action="store_true", help="keep the temporary var dirs (logs, SQLite files)")
    args = ap.parse_args()
    rows = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        bare, intake = run_backend(backend, args)
        rows.append((backend, bare, intake))
    print()
    print(f"intake at {args.connections} connections, {args.duration:.0f} s per case in {args.rounds} turns"
          f" ({os.cpu_count()} CPUs, load generator in-process)")
    print(f"{'case':<22}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'errors':>8}{'ratio':>8}")
    failed = False
    for backend, bare, intake in rows:
        for res in (bare, intake):
            ratio = "" if res is bare else f"{intake.rps / bare.rps:.3f}"
            print(f"{res.name:<22}{res.rps:9.0f}{res.pct(0.5):9.1f}{res.pct(0.95):9.1f}{res.errors:8d}{ratio:>8}")
            if res.errors:
                failed = True
                print(f"    statuses {res.statuses}; first error: {res.sample_error}")
            if res.cpu_ms:
                # idle is the machine's CPU left unused per request: near 0, the case was bound by the CPU
                print("    CPU ms per request: " + ", ".join(f"{n} {v:.2f}" for n, v in sorted(
                    res.cpu_ms.items(), key=lambda kv: (kv[0] == "idle", -kv[1])) if v >= 0.01))
    print("goal: intake ≥ 0.15 × the bare endpoint's throughput")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
