"""The gateway's upstream connections (`gateway.routing.connections.ConnectionPool`) against small raw HTTP
servers written here: how response bodies are delimited, when a connection is reused or closed, informational
and bodiless answers, timeouts and upstreams that misbehave, and the request exactly as the upstream reads it."""
from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.routing.connections import ConnectionPool, UpstreamClosed

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
HANG = object()  # the server reads the request and never answers
CLOSE = object()  # the server hangs up without answering


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length) if length else b""


class RawServer:
    """Answers each request with `answer(request)`: bytes (a tuple (bytes, "close") hangs up after writing them),
    HANG or CLOSE. Records every request (head, body), the connections and the ones the client closed."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.client_closed = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> "RawServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for w in self.writers:
            w.close()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 5)
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        self.tasks.append(asyncio.current_task())
        try:
            while (req := await _read_request(reader)) is not None:
                self.requests.append(req)
                out = self.answer(req)
                if out is CLOSE:
                    return
                if out is HANG:
                    await reader.read()  # until the client gives up and closes
                    self.client_closed.set()
                    return
                data, close = (out[0], True) if isinstance(out, tuple) else (out, False)
                for piece in data if isinstance(data, list) else [data]:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)  # separate reads on the client's side
                if close:
                    return
            self.client_closed.set()
        finally:
            writer.close()


def _fixed(*answers):
    """The n-th request gets answers[n] (the last one repeats)."""
    count = [0]

    def answer(req):
        i = count[0] = count[0] + 1
        return answers[min(i, len(answers)) - 1]

    return answer


async def _get(pool: ConnectionPool, target: bytes = b"/t", method: str = "GET", timeout: float = 2.0):
    return await pool.request(method, target, [], b"", timeout)


async def test_content_length_body_and_keep_alive_reuse():
    """A Content-Length body is read whole and the connection is reused for the next request."""
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: yes\r\n\r\nhello"
    async with RawServer(_fixed(resp)) as srv:
        pool = ConnectionPool(srv.url)
        status, headers, body = await _get(pool)
        assert (status, body) == (200, b"hello") and (b"X-Up", b"yes") in headers
        assert (await _get(pool))[2] == b"hello"
        assert pool.opened == 1 and srv.connections == 1 and len(srv.requests) == 2
        await pool.aclose()


async def test_chunked_body_is_reassembled_and_the_connection_reused():
    """A chunked body arriving in pieces is joined, and the connection stays usable."""
    chunked = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", b"6\r\n world\r\n0\r\n\r\n"]
    async with RawServer(_fixed(chunked, OK)) as srv:
        pool = ConnectionPool(srv.url)
        assert await _get(pool) == (200, [(b"Transfer-Encoding", b"chunked")], b"hello world")
        assert (await _get(pool))[2] == b"ok"
        assert pool.opened == 1
        await pool.aclose()


async def test_body_delimited_by_connection_close():
    """No length and not chunked: the body runs to the end of the connection, which is then not reused."""
    async with RawServer(_fixed((b"HTTP/1.1 200 OK\r\n\r\nuntil the very end", "close"), OK)) as srv:
        pool = ConnectionPool(srv.url)
        assert await _get(pool) == (200, [], b"until the very end")
        assert (await _get(pool))[2] == b"ok"
        assert pool.opened == 2 and srv.connections == 2
        await pool.aclose()


async def test_connection_close_in_the_response_is_not_reused():
    """An answer with `Connection: close` closes the connection: the next request opens another."""
    resp = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    async with RawServer(_fixed((resp, "close"), OK)) as srv:
        pool = ConnectionPool(srv.url)
        assert (await _get(pool))[::2] == (200, b"ok")
        assert (await _get(pool))[::2] == (200, b"ok")
        assert pool.opened == 2 and srv.connections == 2
        await pool.aclose()


async def test_an_idle_connection_older_than_idle_timeout_is_not_reused():
    """A connection idle for longer than `idle_timeout` is closed instead of reused."""
    async with RawServer(_fixed(OK)) as srv:
        pool = ConnectionPool(srv.url, idle_timeout=0.05)
        await _get(pool)
        await _get(pool)  # at once: reused
        assert pool.opened == 1
        await asyncio.sleep(0.15)
        await _get(pool)
        assert pool.opened == 2 and srv.connections == 2
        await asyncio.wait_for(srv.client_closed.wait(), 2)  # the stale one was closed by the pool
        await pool.aclose()


async def test_100_continue_before_the_answer_is_skipped():
    """An informational 100 Continue before the 200 is not taken for the answer."""
    async with RawServer(_fixed([b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"],
                                OK)) as srv:
        pool = ConnectionPool(srv.url)
        assert await pool.request("POST", b"/t", [], b"{}", 2.0) == (200, [(b"Content-Length", b"4")], b"real")
        assert (await _get(pool))[2] == b"ok"
        assert pool.opened == 1
        await pool.aclose()


async def test_head_answer_has_no_body_whatever_its_content_length():
    """HEAD returns at headers (Content-Length names a body that never comes) and the connection is dropped."""
    async with RawServer(_fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", OK)) as srv:
        pool = ConnectionPool(srv.url)
        status, headers, body = await _get(pool, method="HEAD", timeout=1.0)
        assert (status, body) == (200, b"") and (b"Content-Length", b"1234") in headers
        assert srv.requests[0][0].startswith(b"HEAD /t HTTP/1.1\r\n")
        assert (await _get(pool))[2] == b"ok"
        assert pool.opened == 2
        await pool.aclose()


async def test_204_without_a_body():
    """204 No Content without any length header completes at once and keeps the connection."""
    async with RawServer(_fixed(b"HTTP/1.1 204 No Content\r\nX-Done: 1\r\n\r\n", OK)) as srv:
        pool = ConnectionPool(srv.url)
        assert await pool.request("DELETE", b"/t", [], b"", 1.0) == (204, [(b"X-Done", b"1")], b"")
        assert (await _get(pool))[2] == b"ok"
        assert pool.opened == 1
        await pool.aclose()


async def test_a_reused_connection_closed_before_answering_after_a_204_fails():
    """After a bodiless 204 the connection is reused; an upstream hanging up on the next request is UpstreamClosed."""
    async with RawServer(_fixed(b"HTTP/1.1 204 No Content\r\n\r\n", CLOSE)) as srv:
        pool = ConnectionPool(srv.url)
        assert (await pool.request("DELETE", b"/t", [], b"", 1.0))[0] == 204
        with pytest.raises(UpstreamClosed):
            await pool.request("POST", b"/orders", [], b'{"n":1}', 1.0)  # never reached the upstream's app
        await pool.aclose()


async def test_timeout_closes_the_connection_and_the_next_request_opens_another():
    """No answer within the timeout: TimeoutError, the connection is closed, the next request uses a new one."""
    async with RawServer(_fixed(HANG, OK)) as srv:
        pool = ConnectionPool(srv.url)
        with pytest.raises(TimeoutError):
            await _get(pool, timeout=0.2)
        await asyncio.wait_for(srv.client_closed.wait(), 2)  # the pool hung up: a late answer is never read
        assert (await _get(pool))[2] == b"ok"
        assert pool.opened == 2 and srv.connections == 2
        await pool.aclose()


async def test_refused_port_is_oserror():
    """Nothing listening: the OSError of the refused connection (not UpstreamClosed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = ConnectionPool(f"http://127.0.0.1:{port}")
    with pytest.raises(OSError) as err:
        await _get(pool)
    assert not isinstance(err.value, UpstreamClosed)
    assert pool.opened == 0


async def test_upstream_closing_before_answering_is_upstream_closed():
    """The upstream hangs up after reading the request: UpstreamClosed."""
    async with RawServer(_fixed(CLOSE)) as srv:
        pool = ConnectionPool(srv.url)
        with pytest.raises(UpstreamClosed):
            await _get(pool)
        assert len(srv.requests) == 1


async def test_a_body_cut_short_is_upstream_closed():
    """The connection ends before the Content-Length body is complete: UpstreamClosed, not a short body."""
    async with RawServer(_fixed((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "close"))) as srv:
        pool = ConnectionPool(srv.url)
        with pytest.raises(UpstreamClosed):
            await _get(pool)


async def test_garbage_instead_of_http_is_upstream_closed():
    """Bytes that are not an HTTP response: UpstreamClosed, and the connection is not kept."""
    async with RawServer(_fixed(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", OK)) as srv:
        pool = ConnectionPool(srv.url)
        with pytest.raises(UpstreamClosed, match="invalid HTTP"):
            await _get(pool)
        assert (await _get(pool))[2] == b"ok"
        assert pool.opened == 2
        await pool.aclose()


async def test_base_url_path_prefixes_the_target_and_host_names_the_port():
    """`http://host:port/prefix` sends `/prefix/target` with `host: host:port`."""
    async with RawServer(_fixed(OK)) as srv:
        pool = ConnectionPool(srv.url + "/prefix/")
        await _get(pool, b"/target?q=1")
        head = srv.requests[0][0].decode()
        assert head.startswith("GET /prefix/target?q=1 HTTP/1.1\r\n")
        assert f"\r\nhost: 127.0.0.1:{srv.port}\r\n" in head
        await pool.aclose()


async def test_request_line_headers_and_body_as_the_upstream_reads_them():
    """Method, target, the caller's headers in order, Content-Length for bodies (and for an empty POST), the body."""
    async with RawServer(_fixed(OK)) as srv:
        pool = ConnectionPool(srv.url)
        body = '{"名字":"张三"}'.encode()
        await pool.request("POST", b"/a/b?x=1", [(b"x-one", b"1"), (b"content-type", b"application/json")], body, 2.0)
        await pool.request("POST", b"/empty", [], b"", 2.0)
        await pool.request("GET", b"/g", [(b"accept", b"*/*")], b"", 2.0)
        (h1, b1), (h2, b2), (h3, b3) = srv.requests
        assert h1 == (b"POST /a/b?x=1 HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nx-one: 1\r\ncontent-type: application/json\r\n"
                      b"content-length: %d\r\n\r\n" % (srv.port, len(body)))
        assert b1 == body
        assert h2.endswith(b"\r\ncontent-length: 0\r\n\r\n") and b2 == b""
        assert h3 == b"GET /g HTTP/1.1\r\nhost: 127.0.0.1:%d\r\naccept: */*\r\n\r\n" % srv.port and b3 == b""
        assert pool.opened == 1
        await pool.aclose()


async def test_requests_beyond_max_connections_wait_their_turn_within_their_deadline():
    """With every connection busy a request waits for one (no new connection beyond the cap); one whose
    deadline passes while waiting is a TimeoutError."""
    release = asyncio.Event()
    connections = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while await _read_request(reader) is not None:
            await release.wait()
            writer.write(OK)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    pool = ConnectionPool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", max_connections=2)
    try:
        first = [asyncio.create_task(_get(pool, timeout=5)) for _ in range(2)]
        await asyncio.sleep(0.2)
        with pytest.raises(TimeoutError):
            await _get(pool, timeout=0.2)  # no connection free within its deadline
        third = asyncio.create_task(_get(pool, timeout=5))
        await asyncio.sleep(0.2)
        assert len(connections) == 2 and not third.done()
        release.set()
        assert [r[2] for r in await asyncio.gather(*first, third)] == [b"ok"] * 3
        assert pool.opened == 2 and len(connections) == 2
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
