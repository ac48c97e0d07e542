"""Benchmark: a device's alarm → the call-out's first call attempt, with the platform as real processes, idle and
under the intake benchmark's load at the same time (issue 26: ≤ 1 s at p99).

    .venv/bin/python -m bench.alarms [--alarms 100] [--interval 0.2] [--intake-connections 8] [--base-port 9200]

`onenet up --base-port N --var-dir <temp>` starts the whole platform (gateway, the four services, the department
emulators; SQLite; the gateway's rate limits raised so the load is never refused). ops registers an IoT platform
as an exchange member (its client secret shown once), which signs in with client_credentials; grid1 registers a
smart bracelet bound to 王秀英 (P3, 幸福一网格). The platform then posts `--alarms` alarms through the gateway, one
every `--interval` seconds, each a new device event: svc_residents writes the alarm and its `alarm.` feed row,
svc_services' intake files the emergency request, its `emergency.` feed starts the call-out in svc_residents,
whose first step calls grid1 (voice + SMS + push).

Per alarm, read afterwards from svc_residents' database (one clock: the service's):
- alarm → first call attempt: `device_alarms.created_at` → `callout_attempts.made_at` (step 0), what issue 26 asks;
- the device's POST → first call attempt: the bench's own send time → `made_at` (the gateway hop included);
- the two hops: alarm → the request filed in svc_services (`service_requests.created_at`, the alarm feed and the
  intake) and filed → first call attempt (the intake's commit, the emergency feed, the call-out);
- first call → handed to an emulated platform (voice, SMS or push; skipped channels not counted): `made_at` → the
  first such attempt's `at`, for information (the notification engine's dispatcher, ADR 0017, scans every
  `notify_scan_seconds`).
p50 / p95 / p99 / max, idle and then with bench.intake's load (its connections, submissions and client, imported
from it) running in a process of its own. No wall-clock assertion anywhere; this is never part of `make test`.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx

from bench.support import loadavg
from common.clock import Clock
from deploy.demo import person_id

CLOCK = Clock()

GRID = "110105001001001"  # 幸福一网格, grid1's
PERSON = person_id("P3")


def _ts(text: str) -> float:
    at = datetime.fromisoformat(text)
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()


class Platform:
    def __init__(self, base_port: int, var: Path) -> None:
        self.gw = f"http://127.0.0.1:{base_port}"
        self.var = var
        self.base_port = base_port
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ONENET_")}
        env.update({f"ONENET_RATE_{who}_{what}": "1000000" for who in ("USER", "MEMBER")
                    for what in ("PER_SECOND", "BURST")})
        self.var.mkdir(parents=True, exist_ok=True)
        log = open(self.var / "up.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "deploy.cli", "up", "--base-port", str(self.base_port),
                                      "--var-dir", str(self.var)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        from tests.signin import SignIns

        self.sign_ins = SignIns(self.gw)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"onenet up ended ({self.proc.returncode}); see {self.var / 'up.log'}")
            try:
                grid1 = self.token("grid1")
                ok = all(httpx.get(f"{self.gw}{path}", headers=grid1, timeout=5).status_code == 200 for path in (
                    f"/residents/v1/devices?grid_code={GRID}", "/services/v1/catalogue/items?limit=1"))
                if ok:
                    return
            except (httpx.HTTPError, KeyError, ValueError, AssertionError):  # not up yet (503 from the gateway)
                pass
            time.sleep(1.0)
        raise RuntimeError(f"the platform did not answer within {timeout} s; see {self.var / 'up.log'}")

    def token(self, username: str) -> dict[str, str]:
        return self.sign_ins.headers(username)

    def sql(self, query: str, *args, service: str = "svc_residents") -> list[tuple]:
        with sqlite3.connect(f"file:{self.var / (service + '.db')}?mode=ro", uri=True, timeout=30) as conn:
            return conn.execute(query, args).fetchall()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def device(p: Platform) -> tuple[str, dict[str, str]]:
    """A bracelet bound to 王秀英, and its IoT platform's headers (a member of its own, client_credentials)."""
    code = f"iot-bench-{uuid.uuid4().hex[:6]}"
    r = httpx.post(f"{p.gw}/exchange/v1/members", headers=p.token("ops1"), timeout=30,
                   json={"code": code, "name": "物联感知平台（压测）", "kind": "app"})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{p.gw}/auth/v1/token", timeout=30, data={"grant_type": "client_credentials", "client_id": code,
                                                              "client_secret": r.json()["client_secret"]})
    assert r.status_code == 200, r.text
    hub = {"Authorization": f"Bearer {r.json()['access_token']}"}
    serial = f"BENCH-BR-{uuid.uuid4().hex[:8]}"
    r = httpx.post(f"{p.gw}/residents/v1/devices", headers=p.token("grid1"), timeout=30,
                   json={"id": serial, "kind": "bracelet", "member": code, "person_id": PERSON})
    assert r.status_code == 201, r.text
    return serial, hub


def intake_load(gw: str, headers: dict[str, str], connections: int, seconds: float, out) -> None:
    """bench.intake's load (the grid worker's patrol submissions through the gateway, a key each), in a process of
    its own for `seconds`; puts (submissions, rate) on `out`."""
    from bench.intake import INTAKE_PATH, SUBMISSION, Result, _connection, request_maker

    port = int(gw.rsplit(":", 1)[1])
    make = request_maker(INTAKE_PATH, port, headers, SUBMISSION, idempotency=True)
    result = Result("intake")

    async def go() -> None:
        t0 = time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            await asyncio.gather(*(_connection(port, make, time.perf_counter() + 1.0, 201, result, True)
                                   for _ in range(connections)))
        result.seconds = time.perf_counter() - t0
    asyncio.run(go())
    out.put((result.requests, result.requests / result.seconds if result.seconds else 0.0))


def alarms(p: Platform, serial: str, hub: dict[str, str], n: int, interval: float) -> dict[str, list[float]]:
    sent: dict[str, float] = {}
    with httpx.Client(timeout=30) as c:
        for i in range(n):
            t = CLOCK.now().timestamp()  # the services' own clock: made_at is compared with it
            r = c.post(f"{p.gw}/residents/v1/devices/{serial}/events", headers=hub,
                       json={"event_id": f"bench-{uuid.uuid4().hex[:12]}-{i}", "type": "alarm"})
            assert r.status_code == 200, r.text
            sent[r.json()["alarm_id"]] = t
            time.sleep(interval)
    found: dict[str, tuple] = {}
    deadline = time.monotonic() + 120
    marks = ",".join("?" * len(sent))
    while time.monotonic() < deadline and len(found) < len(sent):
        for row in p.sql(f"SELECT a.id, a.created_at, c.made_at, c.id, a.request_id FROM device_alarms a "
                         f"JOIN callout_attempts c "
                         f"ON c.request_id = a.request_id AND c.step = 0 WHERE a.id IN ({marks})", *sent):
            found[row[0]] = row
        time.sleep(0.5)
    time.sleep(3)  # the dispatcher's hand-over to the platforms comes up to a scan later
    handed = dict(p.sql("SELECT substr(n.event_key, 9), min(t.at) FROM notifications n JOIN notification_attempts t "
                        "ON t.notification_id = n.id WHERE t.outcome != 'skipped' AND n.event_key LIKE 'callout:%' "
                        "GROUP BY n.event_key"))
    filed = dict(p.sql("SELECT id, created_at FROM service_requests WHERE channel = 'iot'", service="svc_services"))
    out: dict[str, list[float]] = {"alarm → first call attempt": [], "device POST → first call attempt": [],
                                   "  alarm → request filed in svc_services": [],
                                   "  request filed → first call attempt": [],
                                   "first call → handed to a platform": [], "missing": []}
    for alarm_id in sent:
        if alarm_id not in found:
            out["missing"].append(1.0)
            continue
        _, created, made, attempt, request_id = found[alarm_id]
        out["alarm → first call attempt"].append(_ts(made) - _ts(created))
        if request_id in filed:  # the two hops: svc_residents' alarm feed into the intake, the emergency feed back
            out["  alarm → request filed in svc_services"].append(_ts(filed[request_id]) - _ts(created))
            out["  request filed → first call attempt"].append(_ts(made) - _ts(filed[request_id]))
        out["device POST → first call attempt"].append(_ts(made) - sent[alarm_id])
        if attempt in handed:
            out["first call → handed to a platform"].append(_ts(handed[attempt]) - _ts(made))
    return out


def report(title: str, figures: dict[str, list[float]]) -> None:
    print(f"{title} [load average {loadavg()}]", flush=True)
    for name, values in figures.items():
        if name == "missing":
            if values:
                print(f"  {len(values)} alarms without a first call attempt within 120 s")
            continue
        if not values:
            print(f"  {name}: none seen")
            continue
        v = sorted(values)
        pick = lambda q: v[min(len(v) - 1, int(q * len(v)))]  # noqa: E731
        print(f"  {name} over {len(v)}: p50 {pick(0.5) * 1000:.0f} ms, p95 {pick(0.95) * 1000:.0f} ms, "
              f"p99 {pick(0.99) * 1000:.0f} ms, max {v[-1] * 1000:.0f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alarms", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between two alarms")
    ap.add_argument("--intake-connections", type=int, default=8, help="0: idle only")
    ap.add_argument("--base-port", type=int, default=9200)
    ap.add_argument("--var-dir", default=None, help="default: a fresh temporary directory")
    args = ap.parse_args()
    var = Path(args.var_dir) if args.var_dir else Path(tempfile.mkdtemp(prefix="onenet-bench-alarms-"))
    p = Platform(args.base_port, var)
    print(f"starting the platform (onenet up --base-port {args.base_port} --var-dir {var}) …", flush=True)
    try:
        p.start()
        serial, hub = device(p)
        report(f"idle: {args.alarms} alarms, one every {args.interval} s", alarms(p, serial, hub, args.alarms,
                                                                               args.interval))
        if args.intake_connections:
            seconds = args.alarms * args.interval + 8
            results = multiprocessing.Queue()
            loader = multiprocessing.Process(target=intake_load, args=(
                p.gw, p.token("grid1"), args.intake_connections, seconds, results))
            loader.start()
            time.sleep(2)
            figures = alarms(p, serial, hub, args.alarms, args.interval)
            loader.join()
            submitted, rate = results.get(timeout=30) if not results.empty() else (0, 0.0)
            report(f"under bench.intake's load ({args.intake_connections} connections, {submitted:,} submissions, "
                   f"{rate:,.0f} req/s): {args.alarms} alarms", figures)
    finally:
        p.stop()


if __name__ == "__main__":
    main()
