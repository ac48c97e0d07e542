"""Load from wrk (Debian package; C, not the bottleneck): the Lua script that posts the benchmarked call and
prints wrk's summary as one JSON line, a run parsed into a `Load`, several turns combined into one, and the
turns themselves (the targets alternating, so the machine's drift weighs on each alike)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.gateway.backend import ID_NUMBER


def find_wrk() -> str:
    p = shutil.which("wrk")
    if not p:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    return p


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  io.write(string.format("BENCH {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p90_us\\":%d,"
    .. "\\"p99_us\\":%d,\\"non2xx\\":%d,\\"errors\\":%d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


@dataclass
class Load:
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non2xx: int
    errors: int


def run_wrk(wrk: str, script: Path, url: str, *, connections: int, threads: int, duration: float) -> Load:
    out = subprocess.run([wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s", "-s", str(script),
                          "--timeout", "5s", url], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^BENCH (.*)$", out, re.M)
    if not m:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    d = json.loads(m.group(1))
    return Load(requests=d["requests"], rps=d["requests"] / (d["duration_us"] / 1e6), p50_ms=d["p50_us"] / 1000,
                p90_ms=d["p90_us"] / 1000, p99_ms=d["p99_us"] / 1000, non2xx=d["non2xx"], errors=d["errors"])


def combined(turns: list[Load]) -> Load:
    """Several turns at one target as one measurement: requests summed, throughput over the summed time,
    latency percentiles the median turn's (wrk reports no histogram to merge)."""
    mid = sorted(turns, key=lambda t: t.p50_ms)[len(turns) // 2]
    seconds = sum(t.requests / t.rps for t in turns if t.rps)
    requests = sum(t.requests for t in turns)
    return Load(requests=requests, rps=requests / seconds if seconds else 0.0, p50_ms=mid.p50_ms,
                p90_ms=mid.p90_ms, p99_ms=max(t.p99_ms for t in turns), non2xx=sum(t.non2xx for t in turns),
                errors=sum(t.errors for t in turns))


def write_script(path: Path, headers: dict[str, str]) -> Path:
    body = json.dumps({"id_number": ID_NUMBER})
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    path.write_text(WRK_SCRIPT.format(body=body, headers=lines))
    return path



class Turns:
    """Measurements of several targets in one run: throughput at `connections` in alternating turns, then the
    median latency at one connection; `profile` records the first gateway turn with py-spy."""

    def __init__(self, wrk: str, *, connections: int, rounds: int, duration: float, profile: str | None = None):
        self.wrk, self.connections, self.rounds, self.duration = wrk, connections, rounds, duration
        self.profile, self.profiled = profile, False
        self.warmed: dict[str, int] = {}
        self.results: dict[str, tuple[Load, Load]] = {}

    def warm_up(self, name: str, url: str, script: Path) -> None:
        self.warmed[name] = run_wrk(self.wrk, script, url, connections=self.connections, threads=2,
                                    duration=2).requests

    def measure_many(self, targets: list[tuple[str, str, Path, int | None]]) -> None:
        """Throughput at `--connections`: the targets take turns, `--rounds` times (the order rotating), each
        turn a `--rounds`th of `--duration`, so a machine that speeds up or slows down during the run weighs
        on every target alike; then the median latency at one connection, one run each."""
        turns: dict[str, list[Load]] = {name: [] for name, *_ in targets}
        for r in range(self.rounds):
            for name, url, script, pid in targets[r % len(targets):] + targets[:r % len(targets)]:
                spy = None
                if self.profile and pid is not None and not self.profiled:
                    self.profiled = True
                    spy = subprocess.Popen(
                        [shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"), "record",
                         "-p", str(pid), "-d", str(max(1, round(self.duration / self.rounds))), "-r", "200",
                         "--format", "raw", "-o", self.profile, "--subprocesses", "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                turns[name].append(run_wrk(self.wrk, script, url, connections=self.connections, threads=2,
                                           duration=self.duration / self.rounds))
                if spy is not None:
                    spy.wait(timeout=60)
        for name, url, script, _ in targets:
            one = run_wrk(self.wrk, script, url, connections=1, threads=1, duration=self.duration)
            self.results[name] = (combined(turns[name]), one)
