"""Pooled HTTP/1.1 keep-alive connections to one upstream, responses parsed by httptools (uvicorn's parser).

The gateway forwards every exchange call, so its upstream client is on the hot path of each one. Measured in one
run on the gateway benchmark's backend (uvicorn + uvloop in front, 16 connections, wrk): a bare ASGI forwarder
did 2,200–3,300 req/s over an aiohttp session and 7,900–8,000 req/s over these connections. Forwarding needs
one request at a time per connection, Content-Length, chunked or close-delimited response bodies, keep-alive,
a deadline per call and nothing else: no redirects, cookies, decompression or proxies, all of which the gateway
must not do anyway (bytes pass through as the upstream sent them).

A connection idle for longer than `idle_timeout` is closed instead of reused: kept below the services' own
keep-alive timeout (uvicorn's default is 5 s), so the gateway does not pick a connection the upstream is closing.
At most `max_connections` requests are in flight to one upstream (a burst queues here instead of opening
hundreds of connections to the service). A request is never retried here; the forwarder retries idempotent
calls only.
"""
from __future__ import annotations

import asyncio
import ssl as ssl_module
import time
from urllib.parse import urlsplit

import httptools


class UpstreamClosed(ConnectionError):
    """The upstream closed the connection (or sent bytes that are not HTTP) before a complete response."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `request` is in flight while `waiter` is set."""

    def __init__(self, pool: "ConnectionPool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.head_request = False
        self.headers_done = False
        self.idle_since = 0.0
        self.open = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # nothing asked: an upstream talking out of turn cannot be trusted further
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamClosed(f"invalid HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.headers_done and self._until_close():
                self._finish()  # a body delimited by the end of the connection (no length, not chunked)
            else:
                self._fail(UpstreamClosed("the upstream closed the connection"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.status = 0
        self.headers = []
        self.body = []
        self.headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status >= 200:
            self.headers_done = True
            if self.head_request:  # the answer to HEAD has no body, whatever its Content-Length says
                self._finish()
                self.close()  # the parser would wait for that body: this connection is not reused

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200:  # 1xx informational: the final answer follows on the same connection
            return
        if self.waiter is None or self.waiter.done():
            return
        keep = self.parser.should_keep_alive()
        self._finish()
        if keep and self.open:
            self.pool._release(self)
        else:
            self.close()

    # the pool's side
    def _until_close(self) -> bool:
        return not any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self.headers)

    def _finish(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.status, self.headers, b"".join(self.body)))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to one `http://` or `https://` origin (a path in the URL prefixes every target)."""

    def __init__(self, base_url: str, *, max_connections: int = 200, max_idle: int = 64, idle_timeout: float = 3.0,
                 connect_timeout: float = 2.0, ssl_context: ssl_module.SSLContext | None = None) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl = (ssl_context or ssl_module.create_default_context()) if url.scheme == "https" else None
        self.prefix = url.path.rstrip("/").encode("ascii")
        default_port = self.port == (443 if url.scheme == "https" else 80)
        self.host_header = (url.netloc.rsplit("@", 1)[-1] if not default_port else self.host).encode("idna")
        # at most this many requests in flight to the upstream; more wait their turn (inside their deadline)
        self._slots = asyncio.Semaphore(max_connections)
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []  # last released first: the warmest connection is reused
        self.opened = 0  # connections opened over the pool's life (tests and diagnostics)
        self._closed = False

    async def request(self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                      timeout: float) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send one request and wait for its whole response: (status, raw headers, body).

        `target` is the percent-encoded path and query. Raises TimeoutError when connecting or the answer takes
        longer than allowed, OSError when the upstream cannot be reached, UpstreamClosed when it hangs up first.
        """
        loop = asyncio.get_running_loop()
        if self._slots.locked():  # all taken: wait, within the call's deadline
            started = loop.time()
            await asyncio.wait_for(self._slots.acquire(), timeout)
            timeout -= loop.time() - started
        else:
            await self._slots.acquire()
        try:
            return await self._request(loop, method, target, headers, body, timeout)
        finally:
            self._slots.release()

    async def _request(self, loop: asyncio.AbstractEventLoop, method: str, target: bytes,
                       headers: list[tuple[bytes, bytes]], body: bytes,
                       timeout: float) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        conn = self._take()
        if conn is None:
            conn = await self._connect(loop)
        out = [method.encode("ascii"), b" ", self.prefix, target, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n"]
        for name, value in headers:
            out += [name, b": ", value, b"\r\n"]
        if body or method in ("POST", "PUT", "PATCH"):
            out.append(b"content-length: %d\r\n" % len(body))
        out.append(b"\r\n")
        if body:
            out.append(body)
        waiter = loop.create_future()
        conn.on_message_begin()  # nothing of the previous answer may stand for this one
        conn.waiter = waiter
        conn.head_request = method == "HEAD"
        conn.transport.write(b"".join(out))  # type: ignore[union-attr]
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        except BaseException:
            conn.waiter = None
            conn.close()  # a late answer must not be read as the next request's
            raise
        finally:
            timer.cancel()

    def _take(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.open and now - conn.idle_since < self.idle_timeout and not conn.transport.is_closing():
                return conn
            conn.close()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        if self._closed:
            raise UpstreamClosed("the pool is closed")
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: _Connection(self), self.host, self.port, ssl=self.ssl,
                                   server_hostname=self.host if self.ssl else None),
            self.connect_timeout)
        self.opened += 1
        return conn

    def _release(self, conn: _Connection) -> None:
        if self._closed or len(self._idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
