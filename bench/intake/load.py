"""bench.intake's load generator: the bare endpoint it is compared to, the submission, and a minimal HTTP/1.1
keep-alive client on uvloop (one coroutine per connection)."""
from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"
INTAKE_PATH = "/services/v1/requests"
BARE_PATH = "/intake"
SUBMISSION = {"item_code": "WG-SJ-001", "channel": "grid_patrol", "description": "巡查发现：3号楼前路灯不亮，夜间行人不便。",
              "attributes": {"event_type": "environment"}, "location": {"grid": "110105001001001"}}


def create_bare_app():
    """A FastAPI app with one JSON POST endpoint and nothing else: the reference the intake is compared to."""
    from fastapi import FastAPI

    app = FastAPI()
    counter = iter(range(1, 1 << 62))

    @app.post(BARE_PATH, status_code=201)
    async def intake(body: dict) -> dict:
        return {"id": next(counter), "state": "submitted", "received": len(body)}

    return app

@dataclass
class Result:
    name: str
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU per request of each platform process
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sample_error: str = ""
    edge_answered: int = 0  # calls the gateway's edge answered itself (its `answered` counter)
    note: str = ""

    def add(self, part: "Result") -> None:
        """Another slice of the same case (`--rounds`)."""
        self.requests += part.requests
        self.errors += part.errors
        self.seconds += part.seconds
        self.latencies += part.latencies
        for status, n in part.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        self.sample_error = self.sample_error or part.sample_error
        self.edge_answered += part.edge_answered

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(len(lat) * q))] * 1000


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        return status, b"".join(parts)
    return status, await reader.readexactly(length or 0)


async def _connection(port: int, make_request, deadline: float, expect: int, result: Result,
                      record: bool) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.perf_counter() < deadline:
            data = make_request()
            t0 = time.perf_counter()
            writer.write(data)
            status, body = await _read_response(reader)
            if not record:
                continue
            result.latencies.append(time.perf_counter() - t0)
            result.requests += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status != expect:
                result.errors += 1
                result.sample_error = result.sample_error or f"{status} {body[:300]!r}"
    finally:
        writer.close()


async def load(name: str, port: int, make_request, *, connections: int, duration: float, warmup: float,
               expect: int = 201) -> Result:
    result = Result(name)
    if warmup:
        end = time.perf_counter() + warmup
        await asyncio.gather(*(_connection(port, make_request, end, expect, result, False)
                               for _ in range(connections)))
    t0 = time.perf_counter()
    await asyncio.gather(*(_connection(port, make_request, t0 + duration, expect, result, True)
                           for _ in range(connections)))
    result.seconds = time.perf_counter() - t0
    return result


def request_maker(path: str, port: int, headers: dict[str, str], body: dict, *, idempotency: bool):
    """A function returning the bytes of the next POST (each with its own Idempotency-Key when asked)."""
    payload = json.dumps(body, ensure_ascii=False).encode()
    fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{fixed}")
    run = os.urandom(4).hex()
    seq = 0

    def make() -> bytes:
        nonlocal seq
        seq += 1
        key = f"Idempotency-Key: bench-{run}-{seq}\r\n" if idempotency else ""
        return (head + key + "\r\n").encode() + payload

    return make
