"""The edge's nginx configuration, made from the gateway's settings, and the edge as a process.

What it needs on the machine (Debian packages): `nginx`, `libnginx-mod-http-lua` (with `lua-resty-core`),
`lua-cjson`, and `lua-nginx-redis` for shared rate limits. `find_runtime()` says what is missing.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from common.storage.uploads import NGINX_UPLOAD_LOCATION, UPLOAD_BODY_LIMIT
from gateway.exchange.audit import BATCH, FLUSH_SECONDS
from gateway.identity.mtls import PROXY_HEADERS
from gateway.ratelimit import LUA_TAKE
from gateway.routing.streams import EVENT_STREAM_PATHS
from gateway.settings import REVOCATION_REFRESH_SECONDS, GatewaySettings

EDGE_DIR = Path(__file__).resolve().parent
SECRET_ALPHABET = re.compile(r"[A-Za-z0-9_-]{16,256}")
MODULE_DIRS = ("/usr/share/nginx/modules", "/usr/lib/nginx/modules")
LUA_SHARE = "/usr/share/lua/5.1"


@dataclass(frozen=True)
class Runtime:
    nginx: str
    modules: tuple[str, ...]  # ndk, lua
    lua_cpath: str


def find_runtime() -> Runtime | str:
    """The nginx binary and modules the edge runs on, or why it cannot run here."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return "nginx is not installed (Debian: apt-get install nginx libnginx-mod-http-lua lua-cjson)"
    modules = []
    for name in ("ndk_http_module.so", "ngx_http_lua_module.so"):
        found = [os.path.join(d, name) for d in MODULE_DIRS if os.path.exists(os.path.join(d, name))]
        if not found:
            return f"nginx's Lua module is not installed ({name}; Debian: apt-get install libnginx-mod-http-lua)"
        modules.append(found[0])
    if not os.path.exists(os.path.join(LUA_SHARE, "resty", "core.lua")):
        return "lua-resty-core is not installed (Debian: apt-get install lua-resty-core)"
    cjson = glob.glob("/usr/lib/*/lua/5.1/cjson.so") + glob.glob("/usr/local/lib/lua/5.1/cjson.so")
    if not cjson:
        return "lua-cjson is not installed (Debian: apt-get install lua-cjson)"
    return Runtime(nginx=nginx, modules=tuple(modules), lua_cpath=os.path.dirname(cjson[0]) + "/?.so")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def lua_settings(settings: GatewaySettings, *, secret: str, gateway: str) -> dict:
    """What the Lua module reads at start (no nulls: Lua's cjson makes them truthy)."""
    host, port = _host_port(gateway)
    conf: dict = {
        "secret": secret,
        "gateway": {"host": host, "port": port},
        "max_body_bytes": settings.max_body_bytes,
        "audit": {"batch": BATCH, "flush_seconds": FLUSH_SECONDS / 2, "soft_backlog": settings.audit_soft_backlog,
                  "max_backlog": settings.audit_max_backlog,
                  "admit_wait_seconds": settings.audit_admit_wait_seconds},
        "breaker": {"failures": settings.breaker_failures, "reset_seconds": settings.breaker_reset_seconds},
        # the gateway pushes every REVOCATION_REFRESH_SECONDS (2 s); five missed pushes and the edge stops deciding
        "stale_after_seconds": 5 * REVOCATION_REFRESH_SECONDS,
        # the upstreams' keys of the gateway's assertion on every call passed on (ADR 0013)
        "assertion_keys": {n: k for n, k in settings.assertion_keys().items() if k and n != "open311"},
    }
    if settings.rate_limit_enabled:
        conf["rate"] = {"member_per_second": settings.rate_member_per_second,
                        "member_burst": settings.rate_member_burst,
                        "user_per_second": settings.rate_user_per_second, "user_burst": settings.rate_user_burst,
                        "script": LUA_TAKE}
        if settings.redis_url:
            r = urlsplit(settings.redis_url)
            redis = {"host": r.hostname or "127.0.0.1", "port": r.port or 6379, "prefix": settings.redis_prefix,
                     "timeout_ms": int(settings.redis_timeout_seconds * 1000),
                     "db": int((r.path or "/0").lstrip("/") or 0)}
            if r.password:
                redis["password"] = r.password
            conf["redis"] = redis
    return conf


TIME_ENVIRONMENT = ("TZ", "LD_PRELOAD", "FAKETIME", "FAKETIME_NO_CACHE", "FAKETIME_DONT_RESET", "DONT_FAKE_MONOTONIC")


def _real_ip(settings: GatewaySettings) -> str:
    """The client's address ($remote_addr, what the edge hands on in X-Forwarded-For and the gateway keys its
    per-address limits by): the connection's, or behind the trusted proxies the address they forwarded."""
    if not settings.edge_trusted_proxies:
        return "    # no proxy in front: the connection's address is the client's (ONENET_EDGE_TRUSTED_PROXIES)"
    trusted = "".join(f"    set_real_ip_from {net};\n" for net in settings.edge_trusted_proxies)
    return f"{trusted}    real_ip_header X-Forwarded-For;\n    real_ip_recursive on;"


def render(settings: GatewaySettings, runtime: Runtime, *, listen: str, control_port: int, gateway: str,
           secret: str, prefix: Path, access_log: str | None = None, workers: int = 1) -> str:
    """nginx.conf for an edge listening on `listen` (host:port) in front of the gateway at `gateway`."""
    if not SECRET_ALPHABET.fullmatch(secret):  # it is written into the configuration as it is
        raise ValueError("the edge's secret (ONENET_EDGE_SECRET) must be 16 or more of A–Z a–z 0–9 _ -")
    upstreams = {n: u for n, u in settings.upstreams().items() if n != "open311"}
    attempts = 1 + max(0, settings.upstream_retries)
    timeout = settings.upstream_timeout_seconds
    gw_host, gw_port = _host_port(gateway)
    blocks = []
    for name, url in upstreams.items():
        host, port = _host_port(url)
        # the same server once per attempt: nginx retries a failed idempotent call on the "next" one
        servers = "\n".join(f"        server {host}:{port} max_fails=0;" for _ in range(attempts))
        blocks.append(f"""    upstream onenet_up_{name} {{
{servers}
        keepalive 64;
        keepalive_timeout 3s;
    }}""")
    clear_in = "\n".join(f'            proxy_set_header {h} "";' for h in
                         ("Tracestate", "Proxy-Authorization", "TE", "Trailer", "Upgrade", *PROXY_HEADERS))
    stream_read = settings.stream_read_timeout_seconds

    def location(match: str, name: str) -> str:
        host, port = _host_port(upstreams[name])
        return f"""        location {match} {{
            access_by_lua_block {{ require("onenet_edge").access("{name}") }}
            proxy_pass http://onenet_up_{name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {host}:{port};
            proxy_set_header X-Request-Id $edge_request_id;
            proxy_set_header Traceparent $edge_traceparent;
            proxy_set_header X-OneNet-Client $edge_member;
            proxy_set_header X-OneNet-User $edge_user;
            proxy_set_header X-OneNet-Service $edge_service;
            proxy_set_header X-OneNet-Resource $edge_resource;
            proxy_set_header X-OneNet-Assertion $edge_assertion;
            proxy_set_header X-Forwarded-For $remote_addr;
{clear_in}
            proxy_hide_header X-Request-Id;
            proxy_hide_header Traceparent;
            proxy_hide_header X-OneNet-Service;
            proxy_connect_timeout {_ms(min(2.0, timeout))};
            proxy_send_timeout {_ms(timeout)};
            proxy_read_timeout {_ms(timeout)};
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries {attempts};
            proxy_next_upstream_timeout {_ms(timeout)};
            error_page 502 504 = @edge_upstream_error;
            # the call's ids on the answer (set by the access phase; empty, so not sent, on a call passed on)
            add_header X-Request-Id $edge_request_id always;
            add_header Traceparent $edge_traceparent always;
            add_header X-OneNet-Service $edge_service always;
            body_filter_by_lua_block {{ require("onenet_edge").body_filter() }}
            log_by_lua_block {{ require("onenet_edge").log() }}
        }}"""

    locations = [location(f"/{name}/", name) for name in upstreams]
    def gateway_location(read: float) -> str:
        return f"""            proxy_pass http://onenet_gateway;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout {_ms(read)};
            error_page 502 504 = @gateway_unavailable;"""

    to_gateway = gateway_location(max(60.0, 2 * timeout))
    stream_locations = "\n".join(f"""        location = {path} {{
{gateway_location(stream_read + 15.0)}
            proxy_buffering off;
        }}""" for path in EVENT_STREAM_PATHS)
    log_line = ("access_log off;" if not access_log else
                f"access_log {access_log} onenet_edge buffer=64k flush=1s if=$edge_member;")
    conf_json = json.dumps(lua_settings(settings, secret=secret, gateway=gateway), ensure_ascii=False)
    level = 2
    while f"]{'=' * level}]" in conf_json:  # a Lua long bracket the text cannot close
        level += 1
    loads = "\n".join(f"load_module {m};" for m in runtime.modules)
    # nginx clears its workers' environment: keep what sets their clock (the time zone, and libfaketime's settings
    # when a shifted-date run moves every process's clock), so the edge stamps its assertions on the same time
    kept = "\n".join(f"env {name};" for name in TIME_ENVIRONMENT if name in os.environ)
    return f"""# generated by gateway/edge/config.py: do not edit
{loads}
{kept}
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}

http {{
    lua_package_path "{EDGE_DIR}/?.lua;{LUA_SHARE}/?.lua;{LUA_SHARE}/?/init.lua;;";
    lua_package_cpath "{runtime.lua_cpath};;";
    lua_shared_dict onenet_edge 32m;
    lua_shared_dict onenet_buckets 16m;
    init_by_lua_block {{ require("onenet_edge").configure([{'=' * level}[{conf_json}]{'=' * level}]) }}
    init_worker_by_lua_block {{ require("onenet_edge").start_worker() }}
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server_tokens off;
    # nginx's own redirects (`/matching` → `/matching/` for a `location /matching/`) carry a relative Location:
    # an absolute one is built from the caller's Host header (issue 23, finding 11)
    absolute_redirect off;
{_real_ip(settings)}
    keepalive_requests 100000;
    log_format onenet_edge escape=json '{{"time":"$time_iso8601","service":"gateway-edge","level":"INFO",'
        '"logger":"onenet.access","request_id":"$edge_request_id","traceparent":"$edge_traceparent",'
        '"method":"$request_method","path":"$uri","status":$status,"latency_s":$request_time,'
        '"caller":"$edge_member","upstream_status":"$upstream_status"}}';
    {log_line}
    # bodies stay in memory (hashed for the message log); larger ones go to the gateway, which answers 413
    client_max_body_size {2 * settings.max_body_bytes};
    client_body_buffer_size {settings.max_body_bytes};

    upstream onenet_gateway {{
        server {gw_host}:{gw_port} max_fails=0;
        keepalive 32;
        keepalive_timeout 3s;
    }}
{chr(10).join(blocks)}

    server {{
        listen {listen} reuseport;
        set $edge_request_id "";
        set $edge_traceparent "";
        set $edge_member "";
        set $edge_user "";
        set $edge_resource "";
        set $edge_owner "";
        set $edge_service "";
        set $edge_request_hash "";
        set $edge_assertion "";

        error_page 413 = @too_large;
        location @too_large {{
            content_by_lua_block {{ require("onenet_edge").too_large() }}
        }}
        location / {{
{to_gateway}
        }}
        location @gateway {{
{to_gateway}
        }}
        # event streams (gateway/routing/streams.py) to the gateway, unbuffered: a held answer must end when its
        # caller is revoked, which only the gateway sees while the upstream is quiet (ADR 0012); the gateway's
        # own read of the upstream ends first (its stream read timeout), so this one waits longer
{stream_locations}
        # file uploads (common.storage.uploads): to the gateway as they arrive, neither buffered nor held in memory
        # here; the gateway streams them on and answers past their limit (413 problem; twice it, nginx's own)
        # (a regex location: ahead of the services' prefix locations)
        location ~ {NGINX_UPLOAD_LOCATION} {{
            client_max_body_size {2 * UPLOAD_BODY_LIMIT};
            proxy_request_buffering off;
{to_gateway}
            error_page 413 = @too_large;
        }}
        # the gateway's own /metrics: `location /metrics/` (svc_metrics' prefix) would redirect it there
        location = /metrics {{
{to_gateway}
        }}
{chr(10).join(locations)}
        location = /_edge/decide {{
            internal;
            proxy_pass http://onenet_gateway/exchange/internal/edge/decide;
            proxy_http_version 1.1;
            proxy_pass_request_headers off;
            proxy_set_header Connection "";
            proxy_set_header Content-Type application/json;
            proxy_set_header X-OneNet-Edge-Secret "{secret}";
        }}
        location @gateway_unavailable {{
            content_by_lua_block {{ require("onenet_edge").gateway_unavailable() }}
        }}
        location @edge_upstream_error {{
            content_by_lua_block {{ require("onenet_edge").upstream_error() }}
            add_header X-Request-Id $edge_request_id always;
            add_header Traceparent $edge_traceparent always;
            add_header X-OneNet-Service $edge_service always;
            log_by_lua_block {{ require("onenet_edge").log() }}
        }}
    }}

    server {{
        listen 127.0.0.1:{control_port};
        client_max_body_size 16m;
        client_body_buffer_size 16m;
        access_log off;
        location = /_edge/state {{
            content_by_lua_block {{ require("onenet_edge").control() }}
        }}
        location / {{ return 404; }}
    }}
}}
"""


class EdgeProcess:
    """nginx running the edge: config written under `prefix` (readable by this user only: it holds the secret),
    started in the foreground, stopped gracefully (QUIT: workers finish their calls and ship their records)."""

    def __init__(self, settings: GatewaySettings, *, listen: str, control_port: int, gateway: str, secret: str,
                 prefix: Path, access_log: str | None = None, workers: int = 1, runtime: Runtime | None = None):
        found = runtime or find_runtime()
        if isinstance(found, str):
            raise RuntimeError(found)
        self.runtime = found
        self.prefix = Path(prefix)
        self.listen = listen
        self.control_url = f"http://127.0.0.1:{control_port}/_edge/state"
        self.config = render(settings, found, listen=listen, control_port=control_port, gateway=gateway,
                             secret=secret, prefix=self.prefix, access_log=access_log, workers=workers)
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> Path:
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.config)
        return conf

    def command(self) -> list[str]:
        return [self.runtime.nginx, "-c", str(self.prefix / "nginx.conf"), "-p", str(self.prefix),
                "-e", str(self.prefix / "error.log"), "-g", "daemon off;"]

    def start(self, *, stdout=None) -> subprocess.Popen:
        self.write_config()
        self.proc = subprocess.Popen(self.command(), stdout=stdout,
                                     stderr=subprocess.STDOUT if stdout else None, start_new_session=True)
        return self.proc

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the edge (nginx) exited: {self.error_log()[-2000:]}")
            try:
                httpx.get(self.control_url, timeout=1.0)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the edge (nginx) did not start in time")

    def error_log(self) -> str:
        try:
            return (self.prefix / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
