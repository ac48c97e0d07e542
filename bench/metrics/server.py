"""The server under test: one uvicorn process of svc_metrics (uvloop, httptools, no access log) on a fresh SQLite
file or a PostgreSQL database of the run's own, migrated to head, its background jobs off; the tokens and the
gateway's assertion it accepts."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from bench.support import HOST, cpu_seconds, free_port
from common.clock import Clock


class Server:
    def __init__(self, workdir: Path, postgres: str | None = None):
        from common.keys import SigningKey, jwks_document

        self.dir = workdir
        self.db = workdir / "metrics.db"
        self.url = f"sqlite+aiosqlite:///{self.db}"
        # On PostgreSQL: the admin URL, and a database of the run's own (named in the directory, for --reuse).
        self.postgres: str | None = None
        kept = workdir / "postgres"
        if postgres or kept.exists():
            self.postgres = postgres or kept.read_text()
            self.url = kept.read_text() if kept.exists() else make_url(postgres).set(
                drivername="postgresql+asyncpg", database=f"onenet_bench_metrics_{os.getpid()}").render_as_string(False)
            self.pg_name = make_url(self.url).database
        key_file = workdir / "bench_key.pem"
        self.key = SigningKey.from_pem(key_file.read_bytes()) if key_file.exists() else SigningKey.generate()
        key_file.write_bytes(self.key.to_pem())
        (workdir / "jwks.json").write_text(json.dumps(jwks_document([self.key])))
        self.port = free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen | None = None
        # svc_metrics answers only calls with the gateway's assertion (ADR 0013): the benchmark signs as it would
        from common.assertion import AssertionAuth, GatewayAssertion

        self.assertion_key = os.urandom(24).hex()
        self.auth = AssertionAuth(GatewayAssertion(self.assertion_key))

    def token(self, role: str) -> dict[str, str]:
        import jwt

        # the server under test checks exp with its own Clock(), the system one: the token's claims come from the same
        now = int(Clock().timestamp())
        claims = {"iss": "onenet-gateway", "aud": "onenet", "sub": f"bench-{role}", "member": "bench", "role": role,
                  "scopes": [], "iat": now, "exp": now + 6 * 3600, "jti": uuid.uuid4().hex}
        tok = jwt.encode(claims, self.key.private_key, algorithm="RS256", headers={"kid": self.key.kid})
        return {"Authorization": f"Bearer {tok}"}

    @staticmethod
    def _pg(url: str, sql: str):
        import asyncpg

        async def run():
            conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
            try:
                return await conn.fetchval(sql)
            finally:
                await conn.close()
        with ThreadPoolExecutor(1) as pool:   # callable from inside the benchmark's own event loop too
            return pool.submit(asyncio.run, run()).result()

    def size(self) -> str:
        if self.postgres:
            return f"database {self._pg(self.url, 'SELECT pg_database_size(current_database())') / 2**20:,.0f} MiB"
        wal = self.db.with_name(self.db.name + "-wal")
        wal_mb = wal.stat().st_size / 2**20 if wal.exists() else 0.0
        return f"database {self.db.stat().st_size / 2**20:,.0f} MiB, WAL {wal_mb:,.0f} MiB"

    def start(self) -> None:
        from common.migrations import upgrade

        if self.postgres and not (self.dir / "postgres").exists():
            self._pg(self.postgres, f"CREATE DATABASE {self.pg_name}")
            (self.dir / "postgres").write_text(self.url)
        upgrade("svc_metrics", self.url)
        env = {**os.environ, "ONENET_DATABASE_URL": self.url, "ONENET_JWKS_FILE": str(self.dir / "jwks.json"),
               "ONENET_JWKS_URL": "", "ONENET_GAUGE_REFRESH_SECONDS": "0", "ONENET_WARNING_SCAN_SECONDS": "0",
               "ONENET_LOG_LEVEL": "WARNING", "ONENET_GATEWAY_ASSERTION_KEY": self.assertion_key}
        cmd = [sys.executable, "-m", "uvicorn", "svc_metrics.app:create_app", "--factory", "--host", HOST,
               "--port", str(self.port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
               "--log-level", "warning"]
        self.log = open(self.dir / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60  # a duration, not a time of day
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        raise SystemExit(f"svc_metrics did not start:\n{(self.dir / 'server.log').read_text()[-3000:]}")

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used (noise-resistant on a shared machine)."""
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def drop(self) -> None:
        if self.postgres:
            self._pg(self.postgres, f"DROP DATABASE IF EXISTS {self.pg_name}")
