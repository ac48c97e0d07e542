"""Benchmark: files uploaded through the gateway: throughput for 1 MB photos, and memory while uploading.

    .venv/bin/python -m bench.attachments [--files 60] [--connections 4] [--big-mb 9]

The whole platform as `onenet up` starts it (real processes on loopback, the gateway's rate limits raised, files
in the local object store under the run's var/). staff1 reports grid events (up to 9 photos a request) and
`--connections` clients upload `--files` JPEGs of about 1 MB each by multipart form through the gateway; each is
examined, re-encoded without EXIF and stored with its thumbnail by svc_services. Reported: photos and MB per
second (a 503 with Retry-After, the examiners at capacity with nothing stored, is tried again after it, as a
client would, and counted). Then the same number of `--big-mb` MB photos, and of 1 MB and `--big-mb` MB PDFs as material files
(scanned for scripts, encrypted in 64 KiB segments, stored), with the resident set size (RSS, /proc) of the
gateway and of svc_services sampled every 20 ms during each phase. Neither holds a whole file: the gateway
streams the body; svc_services reads the multipart part from its spool (on disk past 1 MiB) in 64 KiB pieces
into the store, so its peak stays flat whatever the PDF's size. A photo must be decoded to be re-encoded: that
costs its pixels (at most 2 decoded at a time, each bounded by the pixel limit), not its file size. No
wall-clock assertion; never part of `make test`.
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
from bench.support import rss_kib

PER_REQUEST = 9
BENCH_ITEM = {"code": "BENCH-CL-001", "name": "材料上传压测事项", "category": "life_service", "tier": "featured",
              "department": "community", "response_hours": 12, "resolution_hours": 72, "working_hours": False,
              "materials": [{"code": f"scan{i}", "name": f"证明材料{i}", "source": "upload"}
                            for i in range(1, PER_REQUEST + 1)]}


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


def pdf_of(megabytes: float) -> bytes:
    """A PDF of about `megabytes`: one page and a stream of hex text (nothing active, nothing to inflate)."""
    body = random.Random(11).randbytes(int(megabytes * 1_000_000) // 2).hex().encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
            f"<< /Length {len(body)} /Filter /ASCIIHexDecode >>\nstream\n".encode() + body + b"\nendstream"]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for i, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


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


async def new_requests(gw: str, staff: dict, n: int, item: str | None = None) -> list[str]:
    submission = {**SUBMISSION, "channel": "app"}
    if item is not None:
        submission = {"item_code": item, "channel": "app", "description": "压测：上传证明材料",
                      "location": SUBMISSION["location"]}
    async with httpx.AsyncClient(timeout=60) as c:
        out = []
        for _ in range(n):
            r = await c.post(f"{gw}/services/v1/requests", headers=staff, json=submission)
            assert r.status_code == 201, r.text
            out.append(r.json()["id"])
        return out


async def add_item(gw: str, ops: dict) -> str:
    async with httpx.AsyncClient(timeout=60) as c:
        r = await c.post(f"{gw}/services/v1/catalogue/items", headers=ops, json=BENCH_ITEM)
        assert r.status_code in (201, 409), r.text
    return BENCH_ITEM["code"]


async def upload(gw: str, staff: dict, requests: list[str], data: bytes, total: int, connections: int, *,
                 material: bool = False) -> dict:
    if material:    # one file per material: scan1 … scan9 of each request
        slots = [f"{rid}/materials/scan{i}/upload" for rid in requests for i in range(1, PER_REQUEST + 1)][:total]
        name, ctype = "scan.pdf", "application/pdf"
    else:
        slots = [f"{rid}/photos" for rid in requests for _ in range(PER_REQUEST)][:total]
        name, ctype = "photo.jpg", "image/jpeg"
    state = {"done": 0, "errors": {}, "retried": 0}

    async def client() -> None:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=1)) as c:
            while slots:
                path = slots.pop()
                for _ in range(5):  # a 503 with Retry-After (examiners busy: nothing stored) is tried again
                    r = await c.post(f"{gw}/services/v1/requests/{path}", headers=staff,
                                     files={"file": (name, data, ctype)})
                    if r.status_code != 503 or "retry-after" not in r.headers:
                        break
                    state["retried"] += 1
                    await asyncio.sleep(float(r.headers["retry-after"]))
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
    ap.add_argument("--files", type=int, default=60, help="uploads per phase")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--big-mb", type=float, default=9.0)
    args = ap.parse_args()
    big = f"{args.big_mb:g} MB"
    files = {"1 MB photo": jpeg_of(1.0), f"{big} photo": jpeg_of(args.big_mb), "1 MB PDF": pdf_of(1.0),
             f"{big} PDF": pdf_of(args.big_mb)}
    var = Path(tempfile.mkdtemp(prefix="onenet-bench-attachments-"))
    print(f"starting the platform in {var} … ({', '.join(f'{k}: {len(v) / 1e6:.2f} MB' for k, v in files.items())})",
          flush=True)
    p = start_platform(var)
    try:
        staff = p.token("staff1")
        item = asyncio.run(add_item(p.gw, p.token("ops1")))
        pids = {name: p.children[name].proc.pid for name in ("gateway", "svc_services")}
        per_phase = -(-args.files // PER_REQUEST)
        warm = asyncio.run(new_requests(p.gw, staff, 1)), asyncio.run(new_requests(p.gw, staff, 1, item))
        asyncio.run(upload(p.gw, staff, warm[0], files["1 MB photo"], 2, 1))    # warm the paths (not counted)
        asyncio.run(upload(p.gw, staff, warm[1], files["1 MB PDF"], 2, 1, material=True))
        results = {}
        for label, data in files.items():
            material = label.endswith("PDF")
            rids = asyncio.run(new_requests(p.gw, staff, per_phase, item if material else None))
            with RssSampler(pids) as rss:
                out = asyncio.run(upload(p.gw, staff, rids, data, args.files, args.connections, material=material))
            results[label] = (out, rss, len(data))
    finally:
        p.stop()
    for label, (out, rss, size) in results.items():
        rate = out["done"] / out["seconds"] if out["seconds"] else 0.0
        print(f"{label}s: {out['done']} uploaded in {out['seconds']:.1f} s with {args.connections} clients = "
              f"{rate:.1f} files/s, {rate * size / 1e6:.1f} MB/s through the gateway; tried again after a 503 "
              f"{out['retried']}; refused {out['errors'] or 'none'}")
        print("    RSS " + "; ".join(f"{name} {rss.start[name] / 1024:.0f} MiB at the start, peak "
                                     f"{rss.peak[name] / 1024:.0f} MiB (+{(rss.peak[name] - rss.start[name]) / 1024:.0f})"
                                     for name in rss.pids))
    for kind in ("photo", "PDF"):
        (_, small_rss, small_size), (_, big_rss, big_size) = results[f"1 MB {kind}"], results[f"{big} {kind}"]
        growth = {name: (big_rss.peak[name] - small_rss.peak[name]) / 1024 for name in pids}
        print(f"{kind}s {big_size / small_size:.1f}× larger: peak RSS " + ", ".join(
            f"{name} {g:+.0f} MiB" for name, g in growth.items())
            + f" (a whole file per upload in flight would be +{args.connections * (big_size - small_size) / 2**20:.0f})")
    raise SystemExit(0 if all(out["done"] == args.files for out, _, _ in results.values()) else 1)


if __name__ == "__main__":
    main()
