"""Benchmark: request photos uploaded through the gateway: throughput for 1 MB photos, and memory while uploading.

    .venv/bin/python -m bench.attachments [--photos 120] [--connections 4] [--big-mb 9]

The whole platform as `onenet up` starts it (real processes on loopback, the gateway's rate limits raised, photos
in the local object store under the run's var/). staff1 reports grid events (up to 9 photos a request) and
`--connections` clients upload `--photos` JPEGs of about 1 MB each by multipart form through the gateway; each is
examined, re-encoded without EXIF and stored with its thumbnail by svc_services. Reported: photos and MB per
second. Then the same number of uploads of `--big-mb` MB photos, with the resident set size (RSS, /proc) of the
gateway and of svc_services sampled every 20 ms during both phases: the gateway streams the body (it never holds
a whole file), so its peak stays flat whatever the file size; svc_services holds one file per upload in flight
(Pillow decodes it), bounded by the photo limit (10 MiB) times the uploads in flight. No wall-clock assertion;
never part of `make test`.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import random
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.intake import SUBMISSION, start_platform

PER_REQUEST = 9


def jpeg_of(megabytes: float, seed: int = 7) -> bytes:
    """A JPEG of about `megabytes` (noise compresses little, so the size follows the pixel count)."""
    from PIL import Image

    rnd = random.Random(seed)
    side = 600
    while True:
        img = Image.frombytes("RGB", (side * 4 // 3, side), rnd.randbytes(side * 4 // 3 * side * 3))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=90)
        if out.tell() >= megabytes * 1_000_000 * 0.95:
            return out.getvalue()
        side = int(side * max(1.05, (megabytes * 1_000_000 / max(out.tell(), 1)) ** 0.5))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Peak RSS of some processes, sampled every 20 ms on a thread while `with` runs."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids, self.peak, self.start = pids, dict.fromkeys(pids, 0), {}
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_kib(pid))
            time.sleep(0.02)

    def __enter__(self) -> "RssSampler":
        self.start = {name: rss_kib(pid) for name, pid in self.pids.items()}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


async def new_requests(gw: str, staff: dict, n: int) -> list[str]:
    async with httpx.AsyncClient(timeout=60) as c:
        out = []
        for _ in range(n):
            r = await c.post(f"{gw}/services/v1/requests", headers=staff, json={**SUBMISSION, "channel": "app"})
            assert r.status_code == 201, r.text
            out.append(r.json()["id"])
        return out


async def upload(gw: str, staff: dict, requests: list[str], photo: bytes, total: int, connections: int) -> dict:
    slots = [rid for rid in requests for _ in range(PER_REQUEST)][:total]
    state = {"done": 0, "errors": {}}

    async def client() -> None:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=1)) as c:
            while slots:
                rid = slots.pop()
                r = await c.post(f"{gw}/services/v1/requests/{rid}/photos", headers=staff,
                                 files={"file": ("photo.jpg", photo, "image/jpeg")})
                if r.status_code == 201:
                    state["done"] += 1
                else:
                    code = r.json().get("code") if r.headers.get("content-type", "").endswith("json") else None
                    key = f"{r.status_code} {code}"
                    state["errors"][key] = state["errors"].get(key, 0) + 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    state["seconds"] = time.monotonic() - started
    return state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=120)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--big-mb", type=float, default=9.0)
    args = ap.parse_args()
    small, big = jpeg_of(1.0), jpeg_of(args.big_mb)
    var = Path(tempfile.mkdtemp(prefix="onenet-bench-attachments-"))
    print(f"starting the platform in {var} … (photos of {len(small) / 1e6:.2f} MB and {len(big) / 1e6:.2f} MB)",
          flush=True)
    p = start_platform(var)
    try:
        staff = p.token("staff1")
        pids = {name: p.children[name].proc.pid for name in ("gateway", "svc_services")}
        per_phase = -(-args.photos // PER_REQUEST)
        requests = asyncio.run(new_requests(p.gw, staff, 2 * per_phase + 1))
        asyncio.run(upload(p.gw, staff, requests[-1:], small, 2, 1))    # warm the paths (not counted)
        results = {}
        for label, photo, rids in (("1 MB", small, requests[:per_phase]), (f"{args.big_mb:g} MB", big,
                                                                          requests[per_phase:-1])):
            with RssSampler(pids) as rss:
                out = asyncio.run(upload(p.gw, staff, rids, photo, args.photos, args.connections))
            results[label] = (out, rss, len(photo))
    finally:
        p.stop()
    for label, (out, rss, size) in results.items():
        rate = out["done"] / out["seconds"] if out["seconds"] else 0.0
        print(f"{label} photos: {out['done']} uploaded in {out['seconds']:.1f} s with {args.connections} clients = "
              f"{rate:.1f} photos/s, {rate * size / 1e6:.1f} MB/s through the gateway; refused "
              f"{out['errors'] or 'none'}")
        print("    RSS " + "; ".join(f"{name} {rss.start[name] / 1024:.0f} MiB at the start, peak "
                                     f"{rss.peak[name] / 1024:.0f} MiB (+{(rss.peak[name] - rss.start[name]) / 1024:.0f})"
                                     for name in rss.pids))
    (s_out, s_rss, s_size), (b_out, b_rss, b_size) = results.values()
    growth = (b_rss.peak["gateway"] - s_rss.peak["gateway"]) / 1024
    print(f"gateway peak RSS with {b_size / s_size:.1f}× larger files: {growth:+.0f} MiB "
          f"({'flat: the body streams' if abs(growth) < 0.5 * args.connections * b_size / 2 ** 20 else 'GROWS with the file size'})")
    raise SystemExit(0 if s_out["done"] == b_out["done"] == args.photos else 1)


if __name__ == "__main__":
    main()
