"""What the benchmarks share: a free loopback port, waiting for a process to answer HTTP, a process's CPU seconds,
resident memory, the machine's load average, and the nearest-rank percentile: every benchmark takes them from here."""
from __future__ import annotations

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
