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
"""
from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

try:
    import orjson

    def dumps(obj) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover
    def dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

HOST = "127.0.0.1"
SHANGHAI = timezone(timedelta(hours=8))
FIRST_DAY, LAST_DAY = date(2025, 11, 1), date(2026, 10, 31)
DISTRICT = "110105"
STREETS = [f"{DISTRICT}{s:03d}" for s in range(1, 5)]
COMMUNITIES = [f"{s}{c:03d}" for s in STREETS for c in range(1, 6)]
GRIDS = [f"{c}{g:03d}" for c in COMMUNITIES for g in range(1, 6)]

# (category, weight, hours allowed to resolve, departments it goes to)
CATEGORIES = [("life_service", 22, 72, ["jiedao"]), ("grid_event", 20, 48, ["chengguan"]),
              ("city_management", 12, 72, ["chengguan", "zhujian"]), ("government", 8, 72, ["zhengwu"]),
              ("social_security", 6, 120, ["renshe"]), ("certificates", 5, 72, ["gongan", "zhengwu"]),
              ("dispute", 6, 168, ["sifa"]), ("health", 6, 72, ["weijian"]), ("elderly_care", 9, 72, ["minzheng"]),
              ("environment", 4, 96, ["shengtai", "chengguan"]), ("emergency", 2, 4, ["yingji"])]
CHANNELS = {"grid_event": [("grid_patrol", 80), ("app", 20)], "emergency": [("iot", 60), ("phone", 40)],
            "*": [("app", 38), ("kiosk", 10), ("api", 5), ("phone", 22), ("counter", 15), ("wechat", 10)]}
GROUPS = [("elderly", 0.12), ("disabled", 0.03), ("living_alone", 0.04), ("dibao", 0.03), ("veteran", 0.01)]
NEED_CATEGORIES = ["elderly_care", "meal", "bath", "cleaning", "companionship", "childcare", "repair", "medical_escort"]
DEPARTMENTS = ["minzheng", "weijian", "renshe", "zhujian", "chengguan", "gongan", "sifa", "zhengwu", "yingji",
               "shengtai", "jiaotong", "jiaoyu"]

H = 3600.0


RANDOM_IDS = False   # --random-ids: UUIDv4 everywhere, the worst case for the event store's indexes


def uid(rnd: random.Random, at: datetime) -> str:
    """An id as the producers make them (`common.ids.new_id`): a UUIDv7 (RFC 9562), whose first 48 bits are
    the creation time in milliseconds, so later ids sort later, which is what the event store's indexes see."""
    if RANDOM_IDS:
        return str(uuid.UUID(int=rnd.getrandbits(128), version=4))
    ms = int(at.timestamp() * 1000) & ((1 << 48) - 1)
    rand = rnd.getrandbits(74)
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))))


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


class Generator:
    """A time-ordered stream of events: each day's new entities push all their future events onto a heap keyed
    by delivery time; a day's worth is released before the next day is generated."""

    def __init__(self, n_events: int, seed: int = 1):
        self.rnd = random.Random(seed)
        self.n = n_events
        scale = n_events / 1_000_000 * 1.02   # a little over, so the stream is cut at exactly n_events
        days = (LAST_DAY - FIRST_DAY).days + 1
        self.days = days
        self.requests_per_day = 152_000 * scale / days
        self.needs_per_day = 27_000 * scale / days
        self.people = max(200, int(60_000 * scale))
        self.heap: list = []
        self.seq = 0
        self.persons: list[tuple[str, str, int]] = []   # (person_id, grid, age)
        self.volunteers: list[str] = []
        self.resources: list[tuple[str, str]] = []

    # -------------------------------------------------------------------------------------- plumbing
    def push(self, type_: str, at: datetime, subject: str | None, grid: str | None, data: dict, *,
             source: str, community: str | None = None) -> None:
        self.seq += 1
        deliver = at
        if self.rnd.random() < 0.02:   # late delivery: a relay that was down for a while
            deliver = at + timedelta(seconds=self.rnd.uniform(60, 86_400))
        env = {"event_id": uid(self.rnd, at), "type": type_, "occurred_at": at.isoformat(), "source": source,
               "community": community or (grid[:12] if grid else None), "grid": grid, "subject": subject,
               "data": data}
        heapq.heappush(self.heap, (deliver, self.seq, env))

    def when(self, day: date) -> datetime:
        """A moment on `day`, mostly in office hours (Shanghai)."""
        r = self.rnd
        hour = r.choices(range(24), weights=[1, 1, 1, 1, 1, 2, 4, 8, 14, 16, 15, 12, 9, 12, 15, 15, 13, 10, 7, 5,
                                             4, 3, 2, 1])[0]
        return datetime(day.year, day.month, day.day, hour, r.randrange(60), r.randrange(60),
                        tzinfo=SHANGHAI).astimezone(timezone.utc)

    def pick_groups(self) -> list[str]:
        return [g for g, p in GROUPS if self.rnd.random() < p]

    # -------------------------------------------------------------------------------------- producers
    def setup(self) -> None:
        """Before the first day: members, the service catalogue, data items, residents, volunteers, resources."""
        r, t0 = self.rnd, datetime(2025, 10, 31, 2, tzinfo=timezone.utc)
        for i, d in enumerate(DEPARTMENTS):
            self.push("member.joined", t0 + timedelta(minutes=i), d, None, {"kind": "department", "code": d},
                      source="gateway")
        for i in range(4):
            self.push("member.joined", t0, f"app-{i}", None, {"kind": "app"}, source="gateway")
        for i in range(320):
            cat = r.choice(CATEGORIES)[0]
            channels = r.sample(["app", "kiosk", "api", "counter", "phone"], r.randint(1, 4))
            self.push("catalogue.item_created", t0 + timedelta(seconds=i), f"item-{i:04d}", None,
                      {"code": f"item-{i:04d}", "version": 1, "category": cat, "tier": "district",
                       "department": r.choice(DEPARTMENTS), "channels": channels, "emergency": cat == "emergency",
                       "online": any(c in ("app", "kiosk", "api") for c in channels)}, source="svc_services")
        for i in range(240):
            owner = r.choice(DEPARTMENTS)
            sharing = r.choice(["unconditional", "conditional", "conditional", "not_shared"])
            self.push("exchange.item", t0 + timedelta(seconds=i), f"{owner}.item{i}", None,
                      {"item": f"{owner}.item{i}", "required": sharing != "not_shared",
                       "shared": sharing != "not_shared" and r.random() < 0.5, "owner": owner,
                       "sharing_class": sharing}, source="gateway")
        for i in range(self.people):
            grid = r.choice(GRIDS)
            age = min(100, max(0, int(r.gauss(44, 21))))
            registered = t0 - timedelta(days=r.randint(1, 3000)) + timedelta(seconds=i)
            pid = uid(r, registered)
            self.persons.append((pid, grid, age))
            band = f"{min(age // 10 * 10, 90)}+"
            self.push("person.registered", registered,
                      pid, grid, {"age_band": band, "age": age, "gender": r.choice("FM"),
                                  "household_id": uid(r, registered), "verified": r.random() < 0.8},
                      source="svc_residents")
            if r.random() < 0.1:
                vid = uid(r, t0 + timedelta(seconds=i))
                self.volunteers.append(vid)
                self.push("volunteer.registered", t0 + timedelta(seconds=i), vid, grid,
                          {"person_id": pid, "skills": r.sample(NEED_CATEGORIES, 2), "max_load": 3},
                          source="svc_matching")
        for i in range(max(20, int(2_400 * self.n / 1_000_000))):
            rid = uid(r, t0 + timedelta(seconds=i))
            grid = r.choice(GRIDS)
            cat = r.choice(NEED_CATEGORIES)
            self.resources.append((rid, grid))
            self.push("resource.listed", t0 + timedelta(seconds=i), rid, grid,
                      {"category": cat, "owner": r.choice(DEPARTMENTS), "kind": "facility"}, source="svc_matching")

    def request(self, day: date) -> None:
        r = self.rnd
        cat, _, hours, depts = r.choices(CATEGORIES, weights=[c[1] for c in CATEGORIES])[0]
        chans = CHANNELS.get(cat, CHANNELS["*"])
        channel = r.choices([c for c, _ in chans], weights=[w for _, w in chans])[0]
        priority = "emergency" if cat == "emergency" else r.choices(["normal", "urgent"], weights=[9, 1])[0]
        person, grid, age = r.choice(self.persons)
        groups = self.pick_groups()
        if age >= 65 and "elderly" not in groups:
            groups.append("elderly")
        t = self.when(day)
        rid = uid(r, t)
        due = t + timedelta(hours=hours)
        resp_due = t + (timedelta(seconds=60) if priority == "emergency" else timedelta(hours=12))
        department = depts[0]
        departments = sorted(set(depts[:2] if r.random() < 0.35 else depts[:1]))
        state = {"submitted_at": t}
        version = [0]

        def data(action: str, to_state: str, at: datetime, **extra) -> dict:
            version[0] += 1
            d = {"request_id": rid, "action": action, "to_state": to_state, "version": version[0],
                 "channel": channel, "online": channel in ("app", "kiosk", "api"), "item_code": f"item-{r.randrange(320):04d}",
                 "category": cat, "department": department, "departments": departments, "priority": priority,
                 "proxy": r.random() < 0.05, "assignee_kind": "department", "overdue": at > due,
                 "submitted_at": iso(t), "first_response_at": iso(state.get("first")),
                 "resolved_at": iso(state.get("resolved")), "response_due_at": iso(resp_due),
                 "resolution_due_at": iso(due), "occurred_at": iso(at)}
            if action == "submit":
                d.update(groups=groups, requester_id=person, requester_age=age)
            d.update(extra)
            return d

        def emit(type_: str, at: datetime, action: str, to_state: str, **extra) -> None:
            self.push(type_, at, rid, grid, data(action, to_state, at, **extra), source="svc_services")

        emit("request.submitted", t, "submit", "submitted")
        fate = r.random()
        if fate < 0.03:
            emit("request.cancelled", t + timedelta(hours=r.uniform(0.2, 20)), "cancel", "cancelled")
            return
        if fate < 0.05:
            emit("request.rejected", t + timedelta(hours=r.uniform(0.5, 24)), "reject", "rejected")
            return
        scale = 1 / 60 if priority == "emergency" else 1.0
        first = t + timedelta(seconds=r.expovariate(1 / (5 * H * scale)) + 20)
        state["first"] = first
        emit("request.accepted" if r.random() < 0.6 else "request.dispatched", first, "accept", "accepted")
        if fate > 0.93:   # still open: overdue when its due time passes
            emit("request.overdue", due + timedelta(minutes=5), "overdue", "accepted", breaches=["resolution"])
            return
        started = first + timedelta(seconds=r.expovariate(1 / (6 * H * scale)) + 30)
        if r.random() < 0.5 or priority == "emergency":
            emit("request.started", started, "start", "in_progress")
        resolved = started + timedelta(seconds=r.expovariate(1 / (hours * 0.45 * H)) + 600)
        if resolved > due:
            emit("request.overdue", due + timedelta(minutes=5), "overdue", "in_progress", breaches=["resolution"])
        state["resolved"] = resolved
        emit("request.resolved", resolved, "resolve", "resolved")
        end = resolved
        if r.random() < 0.04:   # the resident disagrees: reopened, resolved again
            reopened = resolved + timedelta(hours=r.uniform(2, 48))
            emit("request.reopened", reopened, "reopen", "accepted")
            end = reopened + timedelta(hours=r.uniform(4, 72))
            state["resolved"] = end
            emit("request.resolved", end, "resolve", "resolved")
        if r.random() < 0.62:
            rating = r.choices([5, 4, 3, 2, 1], weights=[46, 30, 12, 7, 5])[0]
            emit("request.rated", end + timedelta(hours=r.uniform(0.5, 72)), "rate", "resolved", rating=rating)
        if r.random() < 0.85:
            emit("request.closed", end + timedelta(hours=r.uniform(24, 96)), "close", "closed")

    def need(self, day: date) -> None:
        r = self.rnd
        person, grid, age = r.choice(self.persons)
        t = self.when(day)
        nid, cat = uid(r, t), r.choice(NEED_CATEGORIES)
        base = {"category": cat, "priority": r.choice(["normal", "normal", "high"]), "person_id": person,
                "requester_age": age, "groups": self.pick_groups()}
        self.push("need.created", t, nid, grid, {**base, "priority_score": r.randint(1, 100)}, source="svc_matching")
        at = t + timedelta(minutes=r.uniform(5, 120))
        self.push("match.proposed", at, nid, grid, {"need_id": nid, "proposal_id": uid(r, at), "mode": "batch",
                                                     "category": cat}, source="svc_matching")
        for attempt in range(3):
            at += timedelta(hours=r.expovariate(1 / 3.0))
            outcome = r.choices(["offer.accepted", "offer.declined", "offer.expired"], weights=[72, 20, 8])[0]
            oid = uid(r, at)
            offer = {"need_id": nid, "provider_kind": "volunteer", "category": cat,
                     "provider_id": r.choice(self.volunteers) if self.volunteers else uid(r, at)}
            self.push(outcome, at, oid, grid, offer, source="svc_matching")
            if outcome == "offer.accepted":
                if r.random() < 0.85:
                    done = at + timedelta(hours=r.uniform(2, 72))
                    self.push("offer.completed", done, oid, grid, offer, source="svc_matching")
                    if offer["provider_id"] and r.random() < 0.7:
                        minutes = r.choice([30, 60, 90, 120])
                        posted = done + timedelta(minutes=5)
                        self.push("ledger.posted", posted, uid(r, posted), grid,
                                  {"kind": "credit", "unit": "minute", "reference": oid,
                                   "entries": [{"account_id": "issuance", "amount": -minutes},
                                               {"account_id": offer["provider_id"], "amount": minutes}]},
                                  source="svc_matching")
                return

    def community_life(self, day: date) -> None:
        r, scale = self.rnd, self.n / 1_000_000 * 1.02
        for _ in range(self._count(36 * scale)):   # volunteers offer hours
            _pid, grid, _ = r.choice(self.persons)
            at = self.when(day)
            self.push("volunteer.hours_offered", at, uid(r, at), grid,
                      {"minutes": r.choice([60, 120, 180, 240]), "volunteer_id": r.choice(self.volunteers or ["v"])},
                      source="svc_matching")
        for _ in range(self._count(70 * scale)):   # residents take part in community affairs
            pid, grid, _ = r.choice(self.persons)
            at = self.when(day)
            self.push("participation.recorded", at, uid(r, at), grid,
                      {"person_id": pid, "activity": r.choice(["议事会", "志愿服务", "文体活动", "听证会"])},
                      source="svc_matching")
        for _ in range(self._count(30 * scale)):   # calls across the exchange, counted per log batch as sent
            calls, refused = r.randint(1, 20), r.random() < 0.05
            self.push("exchange.calls", self.when(day), f"{r.choice(DEPARTMENTS)}.item{r.randrange(240)}", None,
                      {"member": r.choice(DEPARTMENTS), "resource": f"item{r.randrange(240)}",
                       "status": 429 if refused else 200, "outcome": "refused" if refused else "ok",
                       "refused": refused, "count": calls, "statuses": {"429" if refused else "200": calls}},
                      source="gateway")
        if self.resources and r.random() < 0.03:
            rid, grid = r.choice(self.resources)
            self.push("resource.withdrawn", self.when(day), rid, grid, {}, source="svc_matching")
        if r.random() < 0.05:
            i = r.randrange(320)
            self.push("catalogue.item_versioned", self.when(day), f"item-{i:04d}", None,
                      {"code": f"item-{i:04d}", "version": 2, "online": True, "channels": ["app", "counter"]},
                      source="svc_services")
        for _ in range(self._count(12 * scale)):
            pid, grid, age = r.choice(self.persons)
            at = self.when(day)
            self.push("person.registered", at, uid(r, at), grid,
                      {"age_band": f"{min(age // 10 * 10, 90)}+", "age": age}, source="svc_residents")

    def _count(self, mean: float) -> int:
        whole = int(mean)
        return whole + (1 if self.rnd.random() < mean - whole else 0)

    def __iter__(self):
        self.setup()
        emitted = 0
        for i in range(self.days):
            day = FIRST_DAY + timedelta(days=i)
            weekday = day.isoweekday() <= 5
            factor = 1.15 if weekday else 0.62
            for _ in range(self._count(self.requests_per_day * factor)):
                self.request(day)
            for _ in range(self._count(self.needs_per_day * factor)):
                self.need(day)
            self.community_life(day)
            horizon = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI) + timedelta(days=1)
            while self.heap and self.heap[0][0] < horizon:
                yield heapq.heappop(self.heap)[2]
                emitted += 1
                if emitted >= self.n:
                    return
        while self.heap and emitted < self.n:
            yield heapq.heappop(self.heap)[2]
            emitted += 1


# ---------------------------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


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

        now = int(time.time())
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
        deadline = time.time() + 60
        while time.time() < deadline:
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
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

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


# ---------------------------------------------------------------------------------------------- phases
def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round((len(s) - 1) * q)))]


async def ingest(server: Server, bodies: list[bytes], n_events: int, connections: int) -> float:
    headers = {**server.token("system"), "Content-Type": "application/json"}
    queue = list(reversed(bodies))
    accepted = 0
    latencies: list[float] = []

    per_batch = n_events / max(1, len(bodies))
    step = 100_000   # a progress line per this many events: where the rate falls as the database grows
    mark = {"sent": 0, "t": 0.0, "cpu": 0.0, "next": step}

    def progress() -> None:
        now, cpu = time.perf_counter(), server.cpu_seconds()
        done = mark["sent"] * per_batch
        print(f"  {done:>9,.0f} events: {step / (now - mark['t']):6,.0f} events/s in the last {step:,}, "
              f"{step / max(cpu - mark['cpu'], 1e-9):6,.0f} per server CPU-s; {server.size()}", flush=True)
        mark.update(t=now, cpu=cpu, next=mark["next"] + step)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            r = await client.post("/metrics/v1/events", content=body, headers=headers)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise SystemExit(f"batch refused: {r.status_code} {r.text[:500]}")
            accepted += r.json()["accepted"]
            mark["sent"] += 1
            if mark["sent"] * per_batch >= mark["next"]:
                progress()

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=server.base, timeout=None, limits=limits, auth=server.auth) as client:
        t0, cpu0 = time.perf_counter(), server.cpu_seconds()
        mark.update(t=t0, cpu=cpu0)
        await asyncio.gather(*(worker(client) for _ in range(connections)))
        seconds, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
    rate = n_events / seconds
    print(f"ingest: {n_events:,} events in {len(bodies):,} batches, {seconds:.1f} s -> {rate:,.0f} events/s "
          f"(accepted {accepted:,}); batch latency p50 {pct(latencies, .5) * 1000:.0f} ms, "
          f"p95 {pct(latencies, .95) * 1000:.0f} ms; server CPU {cpu:.1f} s = {n_events / cpu:,.0f} events per "
          f"server CPU-second; load average {os.getloadavg()[0]:.1f}", flush=True)
    return rate


CATALOGUE_CODES = ["response_time", "resolution_rate", "on_time_rate", "satisfaction_rate", "satisfaction_score",
                   "match_rate", "grid_closure_time", "emergency_ack_time", "online_rate", "errand_time",
                   "participation_rate", "elderly_usage", "duplicate_investment", "volunteer_ratio"]


def query_mix(n: int, seed: int = 5) -> list[tuple[str, dict[str, str]]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = rnd.choice(["district", "street", "community", "grid", "all"])
        scope = {"district": DISTRICT, "street": rnd.choice(STREETS), "community": rnd.choice(COMMUNITIES),
                 "grid": rnd.choice(GRIDS), "all": "all"}[kind]
        pk = rnd.choice(["day", "week", "month", "month", "quarter"])
        d = FIRST_DAY + timedelta(days=rnd.randrange((LAST_DAY - FIRST_DAY).days + 1))
        period = {"day": d.isoformat(), "week": f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}",
                  "month": f"{d.year}-{d.month:02d}", "quarter": f"{d.year}-Q{(d.month - 1) // 3 + 1}"}[pk]
        params = {"scope": scope, "period": period}
        f = rnd.random()
        if f < 0.2:
            params["category"] = rnd.choice(CATEGORIES)[0]
        elif f < 0.27:
            params["channel"] = rnd.choice(["app", "phone", "counter"])
        elif f < 0.32:
            params["group"] = rnd.choice(["elderly", "*"])
        if i % 2 == 0:
            out.append(("/metrics/v1/kpis", params))
        else:
            out.append((f"/metrics/v1/kpis/{rnd.choice(CATALOGUE_CODES)}", {**params, "trend": "1"}))
    return out


async def queries(server: Server, n: int) -> dict[str, tuple[float, float]]:
    headers = server.token("ops")
    mix = query_mix(n)
    lat: dict[str, list[float]] = {"table": [], "single": []}
    async with httpx.AsyncClient(base_url=server.base, timeout=None, auth=server.auth) as client:
        for path, params in mix[:10]:   # warm-up (connections, caches)
            await client.get(path, params=params, headers=headers)
        for path, params in mix:
            t0 = time.perf_counter()
            r = await client.get(path, params=params, headers=headers)
            dt = time.perf_counter() - t0
            if r.status_code != 200:
                raise SystemExit(f"query failed: {path} {params} {r.status_code} {r.text[:300]}")
            lat["table" if path.endswith("/kpis") else "single"].append(dt)
    out = {}
    for k, v in [("KPI table (23 indicators)", lat["table"]), ("single indicator", lat["single"]),
                 ("all queries", lat["table"] + lat["single"])]:
        out[k] = (pct(v, .5) * 1000, pct(v, .95) * 1000)
        print(f"query {k:<26} n={len(v):>4}  p50 {out[k][0]:6.1f} ms  p95 {out[k][1]:6.1f} ms  "
              f"max {max(v) * 1000:6.1f} ms", flush=True)
    return out


async def rebuild_check(server: Server) -> bool:
    headers = server.token("ops")
    probes = [{"scope": "all", "period": "2026-Q1"}, {"scope": DISTRICT, "period": "2026-03"},
              {"scope": STREETS[1], "period": "2026-W10"}, {"scope": COMMUNITIES[7], "period": "2026-Q3"},
              {"scope": GRIDS[42], "period": "2026-06"}, {"scope": "all", "period": "2026-05-12"},
              {"scope": "all", "period": "2026-Q2", "category": "grid_event"},
              {"scope": DISTRICT, "period": "2026-Q2", "group": "elderly"}]
    async with httpx.AsyncClient(base_url=server.base, timeout=None, auth=server.auth) as client:
        async def tables():
            return [(await client.get("/metrics/v1/kpis", params=p, headers=headers)).json()["items"] for p in probes]
        before = await tables()
        t0 = time.perf_counter()
        r = await client.post("/metrics/v1/rebuild", headers=headers)
        took = time.perf_counter() - t0
        after = await tables()
    same = before == after
    diffs = [(p, b["code"], b["value"], a["value"]) for p, tb, ta in zip(probes, before, after)
             for b, a in zip(tb, ta) if b != a]
    print(f"rebuild: {r.json()} in {took:.1f} s; incremental rollup vs rebuild on {len(probes)} KPI tables: "
          f"{'OK' if same else 'MISMATCH'}", flush=True)
    for d in diffs[:10]:
        print("  differs:", d)
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    global RANDOM_IDS
    RANDOM_IDS = args.random_ids
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


if __name__ == "__main__":
    main()
