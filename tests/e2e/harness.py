"""Real platform processes for fault tests: the launcher's set-up, but the test decides who dies and when."""
from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import time
from pathlib import Path

import httpx

from deploy.launcher import Child, Launcher
from deploy.services import ALL
from tests.signin import SignIns


def free_base_port() -> int:
    """Eight consecutive free loopback ports (gateway or its edge, four services, emulators, then the gateway
    behind its edge and the edge's control listener), below the kernel's ephemeral
    range: a port picked there can be taken as the local port of some outgoing connection (a service's pool, a
    database client, the other test worker's platform) in the seconds before the service binds it (seen: a
    platform start failing with "address already in use"). Each xdist worker draws from its own band."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    band = int(worker[2:]) % 8 if worker[2:].isdigit() else 0
    low = 20_000 + band * 1_500  # 20000–32000: under Linux's default ephemeral range (32768–60999)
    draw = random.Random()
    for _ in range(200):
        base = draw.randrange(low, low + 1_500 - 8)
        free = True
        for port in range(base, base + 8):
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise RuntimeError("no free port range")


class Platform:
    def __init__(self, var: Path) -> None:
        clean_env = {k: v for k, v in os.environ.items() if k.startswith("ONENET_")}
        for key in clean_env:  # the platform under test uses its own SQLite files, not the test settings
            os.environ.pop(key)
        self._restore = clean_env
        # the test starts, kills and restarts the gateway's process itself: without the edge in front of it
        self.launcher = Launcher(var_dir=var, base_port=free_base_port(), quiet=True, edge=False)
        self.children: dict[str, Child] = {}
        self.creds: dict[str, str] = {}
        self.sign_ins = SignIns(self.gw)

    @property
    def gw(self) -> str:
        return self.launcher.url("gateway")

    def start(self) -> "Platform":
        self.creds = self.launcher.prepare()
        for spec in ALL:
            child = Child(spec=spec, port=self.launcher.ports[spec.name])
            child.env = self.launcher.child_env(spec, self.creds)
            if spec.name == "gateway":  # the traffic here is one user's burst, not what rate limits are for
                child.env["ONENET_RATE_USER_PER_SECOND"] = "10000"
                child.env["ONENET_RATE_USER_BURST"] = "10000"
            self.children[spec.name] = child
            self.launcher.children.append(child)
            self.launcher.spawn(child)
        for spec in ALL:
            self.wait_ready(spec.name)
        return self

    def wait_ready(self, name: str, timeout: float = 150.0) -> None:
        path = "/healthz" if name == "departments" else "/readyz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.launcher.url(name) + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{name} not ready after {timeout}s")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.children[name].proc
        assert proc is not None
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def restart(self, name: str) -> None:
        self.launcher.spawn(self.children[name])
        self.wait_ready(name)
        self.wait_routed(name)

    def wait_routed(self, name: str, timeout: float = 60.0) -> None:
        """Ready is not yet reachable: the gateway's circuit breaker stays open until its next trial call."""
        spec = self.children[name].spec
        if spec.name == "gateway":
            return
        headers = self.token("ops1")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.gw}/{spec.prefix}/healthz", headers=headers, timeout=5)
                if r.status_code not in (502, 503, 504):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"gateway still cannot reach {name} after {timeout}s")

    def stop(self) -> None:
        self.launcher.stop()
        os.environ.update(self._restore)

    def token(self, username: str) -> dict[str, str]:
        return self.sign_ins.headers(username)

    def sql(self, service: str, query: str, *args) -> list[tuple]:
        path = self.launcher.var / f"{service}.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            return conn.execute(query, args).fetchall()
