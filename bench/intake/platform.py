"""bench.intake's processes: the bare endpoint's uvicorn, the platform as `onenet up` starts it, the PostgreSQL
database of the run, and the CPU time each process spends."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.intake.load import HOST
from bench.support import cpu_seconds, free_port, wait_http

BENCH_DB = "onenet_bench_services"


def postgres_cpu_seconds() -> float:
    """CPU time so far of every PostgreSQL server process on this machine (backends and background workers): the
    database's share of a case. A backend that exits within a turn takes its time with it (the pools keep theirs)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().strip() == "postgres":
                    total += cpu_seconds(int(proc.name))
            except OSError:  # a backend that exited meanwhile
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
            label = next((a.decode().rsplit(".", 1)[-1] for a in args if a.startswith(b"gateway.")),
                         args[0].decode(errors="replace").removeprefix("nginx: ") or child)
            found[f"{name}/{label}"] = int(child)
    return found


def start_bare() -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.intake.load:create_bare_app", "--factory", "--host", HOST,
           "--port", str(port), "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    wait_http(f"http://{HOST}:{port}/docs", proc=proc)
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


def start_platform(var: Path, *, databases: dict[str, str] | None = None, routed: str = "svc_services",
                   edge: bool = False):
    """The platform as the e2e harness starts it, with the gateway's rate limits raised for the burst.
    `databases`: environment variable → URL for the services that run on a database of the benchmark's own
    (default: svc_services' from ONENET_SVC_SERVICES_DATABASE_URL, as run_backend sets it); `routed`: the
    service whose routes the gateway must serve before the load starts; `edge`: the gateway behind its edge, as
    `onenet up` runs it where nginx's Lua module is installed (ADR 0012; the Python gateway then listens at
    `launcher.url("gateway_app")`)."""
    import secrets

    from deploy.launcher import Child, Launcher
    from deploy.services import ALL
    from tests.e2e.harness import Platform

    if databases is None:
        url = os.environ.get("ONENET_SVC_SERVICES_DATABASE_URL")
        databases = {"ONENET_SVC_SERVICES_DATABASE_URL": url} if url else {}
    p = Platform(var)   # clears ONENET_* from the environment (restored on stop)
    if edge:  # the harness's launcher runs the gateway alone; this one puts the edge on the gateway's port
        p.launcher = Launcher(var_dir=var, base_port=p.launcher.ports["gateway"], quiet=True, edge=True)
        p.launcher.edge_secret = secrets.token_urlsafe(32)
    os.environ.update(databases)
    try:
        p.creds = p.launcher.prepare()
        for spec in ALL:
            behind_edge = spec.name == "gateway" and edge
            child = Child(spec=spec, port=p.launcher.ports["gateway_app" if behind_edge else spec.name])
            child.env = p.launcher.child_env(spec, p.creds)
            if spec.name == "gateway":
                child.env.update({f"ONENET_RATE_{who}_{what}": "1000000" for who in ("USER", "MEMBER")
                                  for what in ("PER_SECOND", "BURST")})
            p.children[spec.name] = child
            p.launcher.children.append(child)
            _spawn_logged(p.launcher, child)
            if behind_edge:  # nginx, configured from the gateway's settings (its raised rates included)
                p.children["edge"] = p.launcher.edge_child(child.env)
                p.launcher.children.append(p.children["edge"])
                p.launcher.spawn(p.children["edge"])
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
