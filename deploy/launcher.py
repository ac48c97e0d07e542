"""`onenet up`: the whole platform on one machine, each service its own uvicorn process on 127.0.0.1.

The gateway's edge (nginx with its Lua module, ADR 0012) takes the gateway's port in front of it when the
packages are installed (`ONENET_EDGE`: auto, the default; on: required; off: never); the Python gateway then
listens on the port after the emulators', and the edge's control listener on the next.

First run: keys and service credentials are generated into var/, every database is migrated, the demo district
is seeded. Then the children start; one that dies is restarted with backoff; Ctrl-C or SIGTERM stops all.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.periodic import DONE, Next, run_periodically_blocking
from deploy.feeds import feeds_of
from deploy.services import ALL, FORWARDED_ALLOW_IPS, GATEWAY, SERVICES, ServiceSpec

EDGE = ServiceSpec("edge", GATEWAY.port, "", has_database=False)
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0


@dataclass
class Child:
    spec: ServiceSpec
    port: int
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    backoff: float = 1.0
    restart_at: float | None = None
    restarts: int = 0
    env: dict[str, str] = field(default_factory=dict)
    cmd: list[str] | None = None  # not a uvicorn app (the edge)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def generated_secret(path: Path) -> str:
    """A secret kept in one file (mode 0600): read when it exists, else made once."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def app_target(spec: ServiceSpec) -> str:
    if spec.name == "departments":
        return "gateway.departments.app:create_app"
    return f"{spec.name}.app:create_app"


class Launcher:
    def __init__(self, *, host: str = "127.0.0.1", var_dir: str | Path = "var", seed: bool = True,
                 base_port: int | None = None, quiet: bool = False, edge: bool | None = None) -> None:
        """`edge`: put the edge in front of the gateway (True: required; None: as `ONENET_EDGE` says)."""
        self.host = host
        self.var = Path(var_dir).resolve()
        self.seed = seed
        self.quiet = quiet
        offset = 0 if base_port is None else base_port - GATEWAY.port
        self.ports = {s.name: s.port + offset for s in ALL}
        self.children: list[Child] = []
        self.stopping = False
        self.edge = self._edge_wanted(edge)
        if self.edge is not None:
            last = max(self.ports.values())
            self.ports["gateway_app"] = last + 1  # the Python gateway, behind its edge
            self.ports["edge_control"] = last + 2

    def _edge_wanted(self, edge: bool | None):
        from gateway.edge.config import find_runtime

        mode = {True: "on", False: "off"}.get(edge) or os.environ.get("ONENET_EDGE", "auto").strip().lower()
        if mode in ("off", "false", "0", "no"):
            return None
        runtime = find_runtime()
        if isinstance(runtime, str):
            if mode in ("on", "true", "1", "yes"):
                raise SystemExit(f"ONENET_EDGE=on, but the edge cannot run here: {runtime}")
            self.say(f"网关边缘节点未启用 the gateway's edge is off: {runtime}")
            return None
        return runtime

    # ---- set-up -------------------------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.ports[name]}"

    def database_url(self, name: str) -> str:
        return os.environ.get(f"ONENET_{name.upper()}_DATABASE_URL") or f"sqlite+aiosqlite:///{self.var}/{name}.db"

    def credentials(self) -> dict[str, str]:
        """Client secrets of the internal service members: from `ONENET_<SERVICE>_CLIENT_SECRET` when the
        deployment provides them (compose, Kubernetes Secrets), else generated once into var/keys."""
        return self._per_service_secrets("CLIENT_SECRET", "service_credentials.json", 24)

    def assertion_keys(self) -> dict[str, str]:
        """Each service's key of the gateway's assertions (docs/adr/0013), one per process the gateway forwards
        to: from `ONENET_<SERVICE>_GATEWAY_ASSERTION_KEY` when the deployment provides them, else generated once
        into var/keys (mode 0600)."""
        return self._per_service_secrets("GATEWAY_ASSERTION_KEY", "gateway_assertion_keys.json", 32)

    def _per_service_secrets(self, env_suffix: str, filename: str, nbytes: int) -> dict[str, str]:
        """One secret per process but the gateway: all from `ONENET_<SERVICE>_<env_suffix>`, or generated once
        into var/keys/<filename> (mode 0600) and read back from there."""
        names = [s.name for s in ALL if s.name != "gateway"]
        from_env = {n: os.environ.get(f"ONENET_{n.upper()}_{env_suffix}") for n in names}
        if all(from_env.values()):
            return {n: v for n, v in from_env.items() if v}
        path = self.var / "keys" / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            return json.loads(path.read_text())
        made = {n: secrets.token_urlsafe(nbytes) for n in names}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(made, fh)
        return made

    def metrics_token(self) -> str:
        """The bearer token every process's /metrics answers to (the Prometheus scraper's): `ONENET_METRICS_TOKEN`
        when the deployment provides it, else generated once into var/keys/metrics_token."""
        return os.environ.get("ONENET_METRICS_TOKEN") or generated_secret(self.var / "keys" / "metrics_token")

    def prepare(self) -> dict[str, str]:
        from common.keys import load_signing_keys
        from common.migrations import upgrade

        self.var.mkdir(parents=True, exist_ok=True)
        load_signing_keys(self.var / "keys" / "jwt")
        from common.crypto import FieldProtection

        FieldProtection.from_file(self.var / "keys" / "fields.json", create=True)  # svc_residents' field keys
        creds = self.credentials()
        self.scrape_token = self.metrics_token()
        self.keys = self.assertion_keys()
        for spec in ALL:
            if spec.has_database:
                upgrade(spec.name, self.database_url(spec.name))
        self.say("数据库迁移完成 migrations at head")
        from deploy.seed import ensure_platform, seed_all

        ensure_platform(self, creds)
        marker = self.var / ".seeded"
        if self.seed and not marker.exists():
            seed_all(self)
            marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
            self.say("已生成演示数据 demo district seeded")
        return creds

    def child_env(self, spec: ServiceSpec, creds: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "ONENET_SERVICE_NAME": spec.name,
            "ONENET_JWKS_URL": f"{self.url('gateway')}/.well-known/jwks.json",
            "ONENET_TOKEN_URL": f"{self.url('gateway')}/auth/v1/token",
            "ONENET_GATEWAY_URL": self.url("gateway"),
            "ONENET_EVENTS_URL": f"{self.url('svc_metrics')}/metrics/v1/events",
            "ONENET_FIELD_KEYS_FILE": str(self.var / "keys" / "fields.json"),
            "ONENET_VAR_DIR": str(self.var),
            "ONENET_METRICS_TOKEN": self.scrape_token,
            "PYTHONUNBUFFERED": "1",
        })
        # a local run: the SMS emulator's test-only read of the last code sent (the README tour reads it)
        env.setdefault("ONENET_SMS_TEST_READS", "true")
        if spec.has_database:
            env["ONENET_DATABASE_URL"] = self.database_url(spec.name)
        # the gateway's assertions (ADR 0013): each service checks them with its own key; its outbox relays sign
        # their deliveries with the key of the service they deliver to (svc_metrics, or a feed's subscriber)
        env["ONENET_EVENTS_ASSERTION_KEY"] = self.keys["svc_metrics"]
        if feeds := feeds_of(spec.name):
            env["ONENET_OUTBOX_SUBSCRIBERS"] = json.dumps({f.prefix: self.url(f.subscriber) + f.path for f in feeds})
            env["ONENET_OUTBOX_SUBSCRIBER_KEYS"] = json.dumps({f.prefix: self.keys[f.subscriber] for f in feeds})
        if spec.name == "svc_residents":  # notifications go straight to the outbound platforms (docs/adr/0017)
            env["ONENET_NOTIFY_PLATFORMS_URL"] = self.url("departments")
            env["ONENET_NOTIFY_PLATFORMS_KEY"] = self.keys["departments"]
        if spec.name != "gateway":
            env["ONENET_CLIENT_ID"] = spec.name
            env["ONENET_CLIENT_SECRET"] = creds[spec.name]
            env["ONENET_GATEWAY_ASSERTION_KEY"] = self.keys[spec.name]
        else:
            env["ONENET_KEYS_DIR"] = str(self.var / "keys" / "jwt")
            env.pop("ONENET_GATEWAY_ASSERTION_KEY", None)  # every upstream has a key of its own
            for s in (*SERVICES, *(x for x in ALL if x.name == "departments")):
                env[f"ONENET_UPSTREAM_{s.prefix.upper()}"] = self.url(s.name)
                env[f"ONENET_ASSERTION_KEY_{s.prefix.upper()}"] = self.keys[s.name]
            if self.edge is not None:
                env["ONENET_EDGE_SECRET"] = self.edge_secret
                env["ONENET_EDGE_CONTROL_URL"] = f"http://127.0.0.1:{self.ports['edge_control']}/_edge/state"
        return env

    def edge_child(self, gateway_env: dict[str, str]) -> Child:
        """nginx in front of the gateway, configured from the gateway's own settings."""
        from gateway.edge.config import EdgeProcess
        from gateway.settings import GatewaySettings

        fields = GatewaySettings.model_fields
        settings = GatewaySettings(**{k[len("ONENET_"):].lower(): v for k, v in gateway_env.items()
                                      if k.startswith("ONENET_") and k[len("ONENET_"):].lower() in fields})
        edge = EdgeProcess(settings, listen=f"{self.host}:{self.ports['gateway']}",
                           control_port=self.ports["edge_control"], gateway=self.url("gateway_app"),
                           secret=self.edge_secret, prefix=self.var / "edge", runtime=self.edge,
                           access_log=str(self.var / "edge" / "access.log"))
        edge.write_config()
        # the launcher's own environment (not an empty one): what sets a process's clock (TZ, libfaketime in the
        # shifted-date runs) must reach nginx as it reaches every other child
        return Child(spec=EDGE, port=self.ports["gateway"], cmd=edge.command(), env=dict(os.environ))

    # ---- processes ----------------------------------------------------------------------------------------
    def spawn(self, child: Child) -> None:
        cmd = child.cmd or [
            sys.executable, "-m", "uvicorn", app_target(child.spec), "--factory", "--host", self.host,
            "--port", str(child.port), "--http", child.spec.http, "--no-access-log", "--log-level", "warning",
            "--timeout-graceful-shutdown", "5",
            "--proxy-headers", "--forwarded-allow-ips", FORWARDED_ALLOW_IPS]
        child.proc = subprocess.Popen(cmd, env=child.env, start_new_session=True)
        child.started_at = time.monotonic()
        run_dir = self.var / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / f"{child.spec.name}.pid").write_text(str(child.proc.pid))
        child.restart_at = None

    def check_ports(self) -> bool:
        taken = [(name, port) for name, port in self.ports.items() if not port_free(self.host, port)]
        for name, port in taken:
            print(f"端口 {self.host}:{port} 已被占用，无法启动 {name}。请停止占用该端口的程序后重试。"
                  f" Port {port} (needed by {name}) is already in use.", file=sys.stderr, flush=True)
        return not taken

    def wait_ready(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        pending = {c.spec.name for c in self.children}
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                # the edge is ready when the gateway answers through it; the gateway itself is behind it
                url = self.url({"edge": "gateway", "gateway": "gateway_app"}.get(name, name) if self.edge
                               else name)
                try:
                    r = httpx.get(f"{url}/readyz" if name != "departments" else f"{url}/healthz", timeout=1.0)
                    if r.status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            self.supervise()
            time.sleep(0.2)
        return not pending

    def supervise(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is not None and proc.poll() is not None and child.restart_at is None and not self.stopping:
                if now - child.started_at > STABLE_AFTER:
                    child.backoff = 1.0
                child.restart_at = now + child.backoff
                self.say(f"{child.spec.name} 已退出（代码 {proc.returncode}），{child.backoff:.0f} 秒后重启 "
                         f"exited with {proc.returncode}; restarting in {child.backoff:.0f}s")
                child.backoff = min(MAX_BACKOFF, child.backoff * 2)
            if child.restart_at is not None and now >= child.restart_at and not self.stopping:
                child.restarts += 1
                self.spawn(child)

    def _supervise_until_stopped(self) -> Next | None:
        if self.stopping:
            return DONE
        self.supervise()
        return None

    def stop(self, *_args) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.say("正在停止所有服务 stopping …")
        for child in self.children:  # the edge first, gracefully: it hands its last log records to the gateway
            if child.spec is EDGE and child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGQUIT)
                try:
                    child.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    child.proc.kill()
        for child in self.children:
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()

    def banner(self) -> None:
        from deploy.seed import DEMO_PASSWORD, DEMO_USERS

        gw = self.url("gateway")
        token = ("$ONENET_METRICS_TOKEN" if os.environ.get("ONENET_METRICS_TOKEN")
                 else f"$(cat {self.var / 'keys' / 'metrics_token'})")
        lines = [
            "",
            "OneNet 社区一网通办平台已启动 The platform is up",
            f"  网关 Gateway          {gw}",
            f"  接口文档 API docs      {gw}/docs",
            *(f"  {s.name:<20} {self.url(s.name)}" for s in SERVICES),
            f"  部门模拟 departments   {self.url('departments')}",
            "",
            f"演示账号 Demo users (密码 password: {DEMO_PASSWORD})",
            *(f"  {u['username']:<14} {u['role']:<16} {u['display_name']}" for u in DEMO_USERS),
            "",
            f"  curl -s -X POST {gw}/auth/v1/token -d grant_type=password -d username=staff1 -d password={DEMO_PASSWORD}",
            "  ops1 另需动态验证码 also needs its TOTP code: -d otp=$(.venv/bin/onenet totp ops1)",
            f"  curl -s {gw}/metrics -H \"Authorization: Bearer {token}\"   # Prometheus, with the metrics token",
            "按 Ctrl-C 停止 Press Ctrl-C to stop.",
        ]
        self.say("\n".join(lines))

    def start(self) -> bool:
        if not self.check_ports():
            return False
        creds = self.prepare()
        self.edge_secret = secrets.token_urlsafe(32)
        for spec in ALL:
            behind_edge = spec is GATEWAY and self.edge is not None
            child = Child(spec=spec, port=self.ports["gateway_app" if behind_edge else spec.name])
            child.env = self.child_env(spec, creds)
            self.children.append(child)
            self.spawn(child)
            if behind_edge:
                edge = self.edge_child(child.env)
                self.children.append(edge)
                self.spawn(edge)
            if spec is GATEWAY:
                time.sleep(0.3)  # the others fetch the gateway's JWKS; give it a head start
        ready = self.wait_ready()
        if not ready:
            self.say("部分服务未能在 60 秒内就绪，请查看上方日志 some services are not ready; see the log above")
        return True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if not self.start():
            return 1
        self.banner()
        try:
            # `stop` (the signal handler) sets `stopping` and the loop ends at its next tick (an Event set from a
            # signal handler could deadlock)
            run_periodically_blocking("launcher/supervise", self._supervise_until_stopped, threading.Event(),
                                      interval=0.5, jitter=0)
        finally:
            self.stop()
        return 0
