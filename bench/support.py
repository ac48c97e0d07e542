"""What the benchmarks share: a free loopback port, waiting for a process to answer HTTP, a process's CPU seconds,
resident memory, the machine's load average, the nearest-rank percentile, and a signed-in session whose access
token async clients share past its lifetime: every benchmark takes them from here."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Until `url` answers at all (any status), or `proc` exits, or `timeout` passes."""
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used (noise-resistant on a shared machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """A process's resident memory now (VmRSS), in KiB; 0 when /proc does not say."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, to print beside a figure measured on a shared machine ("?" where /proc
    has none: a label, never a reason to lose the run's figures)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def pct(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0 ≤ q ≤ 1) of `values`."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round((len(s) - 1) * q)))]


class SharedSession:
    """One person's signed-in session (the token endpoint's answer, refresh token included) shared by a benchmark's
    async clients for longer than an access token lives (the gateway's `session_access_ttl_seconds`, 10 minutes).
    The access token is renewed with the refresh token `margin` seconds before it expires, or at once when a call
    carrying it is refused 401. A refresh token rotates and is good once (a second use ends the whole session), so
    one client renews, under a lock, while the others wait and take the new token; nothing blocks the event loop
    (no synchronous sign-in in the middle of a race)."""

    def __init__(self, gw: str, answer: dict, *, margin: float = 60.0) -> None:
        self.gw, self.margin, self.renewals = gw, margin, 0
        self._lock = asyncio.Lock()
        self._take(answer)

    def _take(self, answer: dict) -> None:
        if not answer.get("refresh_token"):
            raise ValueError("a session without a refresh token cannot be renewed")
        self.answer = answer
        life = float(answer["expires_in"])
        self.renew_at = time.monotonic() + max(life - self.margin, life / 2)

    @property
    def token(self) -> str:
        return self.answer["access_token"]

    async def headers(self, client: httpx.AsyncClient) -> dict[str, str]:
        """The Authorization header, renewed first when the token is about to expire."""
        if time.monotonic() >= self.renew_at:
            await self.renew(client, self.token)
        return {"Authorization": f"Bearer {self.token}"}

    async def renew(self, client: httpx.AsyncClient, stale: str) -> None:
        """Renew the session unless another client renewed it since `stale` was handed out."""
        async with self._lock:
            if self.token != stale:
                return
            r = await client.post(f"{self.gw}/auth/v1/token", timeout=30, data={
                "grant_type": "refresh_token", "refresh_token": self.answer["refresh_token"]})
            if r.status_code != 200:
                raise RuntimeError(f"renewing the session failed: {r.status_code} {r.text}")
            self._take(r.json())
            self.renewals += 1
