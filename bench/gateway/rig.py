"""The processes of one run, all on loopback in a temporary directory: the backend, nginx with a generated
config, and gateways (each on its own copy of a database migrated and seeded once, with or without its edge,
from this tree or a baseline tree), each admitted as the benchmark's member with its grant."""
from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.gateway.backend import ID_NUMBER, PATH
from bench.support import free_port, wait_http
from deploy.services import GATEWAY

ROOT = Path(__file__).resolve().parents[2]
MEMBER = "bench-consumer"
RESOURCE = "renshe.insurance"

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


class Rig:
    def __init__(self, *, quiet_logs: bool = False, masked: bool = False):
        self.quiet_logs, self.masked = quiet_logs, masked
        self.nginx = find_nginx()
        self.tmp = Path(tempfile.mkdtemp(prefix="onenet-bench-gw-"))
        self.procs: list[subprocess.Popen] = []
        self.edges: dict = {}   # gateway pid -> its EdgeProcess

    def spawn(self, cmd: list[str], env: dict[str, str] | None = None, log: str = "proc", cwd: Path = ROOT
              ) -> subprocess.Popen:
        fh = open(self.tmp / f"{log}.log", "wb")
        p = subprocess.Popen(cmd, env=env or clean_env(), stdout=fh, stderr=subprocess.STDOUT, cwd=cwd,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def start_backend(self) -> None:
        """The backend, then the gateways' database (migrated and seeded once, copied for each gateway, each its
        own chain), their signing keys and the address every upstream but the departments' points at."""
        self.backend_port = free_port()
        backend = self.spawn(uvicorn_cmd("bench.gateway.backend:backend_app", self.backend_port), log="backend")
        wait_http(f"http://127.0.0.1:{self.backend_port}/", proc=backend)
        from common.keys import load_signing_keys
        from common.migrations import upgrade

        self.template = self.tmp / "gateway-template.db"
        upgrade("gateway", f"sqlite+aiosqlite:///{self.template}")
        self.secret = secrets.token_urlsafe(24)
        asyncio.run(prepare_gateway_db(f"sqlite+aiosqlite:///{self.template}", self.secret))
        self.keys = self.tmp / "keys"
        load_signing_keys(self.keys)
        self.unreachable = f"http://127.0.0.1:{free_port()}"

    def start_nginx(self, workers: int) -> str:
        prefix = self.tmp / f"nginx-{workers}"
        prefix.mkdir()
        port = free_port()
        conf = prefix / "nginx.conf"
        # as deployed, both proxies write an access line per call (nginx's default: one write each, no
        # buffer); --quiet-logs turns both off
        access = "access_log off;" if self.quiet_logs else f"access_log {prefix}/access.log;"
        conf.write_text(NGINX_CONF.format(prefix=prefix, backend=self.backend_port, port=port, workers=workers,
                                          access_log=access))
        ngx = self.spawn([self.nginx, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"], log=f"nginx-{workers}")
        wait_http(f"http://127.0.0.1:{port}/", proc=ngx)
        return f"http://127.0.0.1:{port}"

    def stop_nginx(self, workers: int) -> None:
        nginx_proc = next(p for p in self.procs
                          if p.args[0].endswith("nginx") and str(self.tmp / f"nginx-{workers}") in p.args)
        os.killpg(nginx_proc.pid, signal.SIGTERM)
        nginx_proc.wait(timeout=10)

    def start_gateway(self, workers: int, edge: bool = False, tree: Path = ROOT
                      ) -> tuple[subprocess.Popen, str, str]:
        name = f"gateway-{workers}{'-edge' if edge else ''}{'-baseline' if tree != ROOT else ''}"
        db_file = self.tmp / f"{name}.db"
        shutil.copy(self.template, db_file)
        db_url = f"sqlite+aiosqlite:///{db_file}"
        port = free_port()
        unreachable = self.unreachable
        gw_env = dict(
            ONENET_SERVICE_NAME="gateway", ONENET_DATABASE_URL=db_url, ONENET_KEYS_DIR=str(self.keys),
            ONENET_UPSTREAM_DEPARTMENTS=f"http://127.0.0.1:{self.backend_port}",
            ONENET_UPSTREAM_SERVICES=unreachable, ONENET_UPSTREAM_RESIDENTS=unreachable,
            ONENET_UPSTREAM_MATCHING=unreachable, ONENET_UPSTREAM_METRICS=unreachable,
            ONENET_OUTBOX_RELAY_ENABLED="false", ONENET_LOG_LEVEL="WARNING" if self.quiet_logs else "INFO",
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
                                    prefix=self.tmp / f"{name}-nginx", workers=workers,
                                    access_log=None if self.quiet_logs else str(self.tmp / f"{name}-nginx" / "access.log"))
        http = GATEWAY.http if tree == ROOT else subprocess.run(
            [sys.executable, "-c", "from deploy.services import GATEWAY; print(GATEWAY.http)"], cwd=tree,
            env=clean_env(tree), capture_output=True, text=True, check=True).stdout.strip()
        gw = self.spawn(uvicorn_cmd("gateway.app:create_app", port, factory=True, workers=workers, http=http),
                        env=clean_env(tree, **gw_env), log=name, cwd=tree)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", proc=gw)
        if edge_proc is not None:
            self.procs.append(edge_proc.start(stdout=open(self.tmp / f"{name}-nginx.log", "wb")))
            edge_proc.wait_ready()
            url = f"http://127.0.0.1:{edge_port}"
            wait_http(f"{url}/healthz", proc=self.procs[-1])
            self.edges[gw.pid] = edge_proc
        return gw, url, db_url

    def stop_gateway(self, gw: subprocess.Popen) -> None:
        edge_proc = self.edges.pop(gw.pid, None)
        if edge_proc is not None:
            edge_proc.stop()  # graceful: its workers ship their last records to the gateway
        time.sleep(1.0)  # the last batch of the message log
        os.killpg(gw.pid, signal.SIGTERM)
        gw.wait(timeout=30)

    def admit(self, gw_url: str) -> dict[str, str]:
        """The member's token and its grant (partial with --masked), checked with one call that goes through."""
        tok = httpx.post(f"{gw_url}/auth/v1/token", data={"grant_type": "client_credentials",
                                                          "client_id": MEMBER, "client_secret": self.secret})
        tok.raise_for_status()
        auth = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        grant = {"resource": RESOURCE, "purpose": "压测 benchmark"}
        if self.masked:
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
        if self.masked:
            assert "id_number" not in probe.json() and probe.json()["data"]["insured"] is None, probe.text
        return auth

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if os.environ.get("ONENET_BENCH_KEEP"):
            print(f"(kept {self.tmp})")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
