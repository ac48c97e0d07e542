"""The message log written by a process of its own, beside each gateway process.

Why: hashing the chain, building the rows and the events and inserting them is Python work for every exchange.
Done on the gateway's event loop (or in a thread, which holds the same interpreter lock) it took the loop's time
from the calls: measured with bench/gateway/, switching the log off raised the gateway from about 2,800 to
5,300 calls/s. In a child process it runs on the other core; the gateway only pickles each batch (a few µs per
record) and waits, without blocking, for the child to say it committed.

Nothing about what is logged, or what a crash can lose, changes (gateway/exchange/audit.py): the records stay
in the gateway's memory until the child answers that their transaction committed. If the child dies, it is
started again at the next flush and the records are sent again, marked as a resend: a batch the child
committed before dying is recognised by its row ids and not written twice.

Frames on the child's stdin and stdout: 4-byte big-endian length, then a pickle (both ends are this code; the
pipe is private to the two processes). In: (resend, [Exchange as a plain tuple, ...]). Out: ("ok", rows written) or
("error", message).
"""
from __future__ import annotations

import asyncio
import logging
import os
import pickle
import signal
import sys

log = logging.getLogger("onenet.gateway.audit")

DATABASE_URL_ENV = "ONENET_MESSAGE_LOG_DATABASE_URL"


class LogProcessFailed(RuntimeError):
    """The writer process could not write a batch (it said why), or died before answering."""


class LogProcess:
    """The gateway's side: starts the child on first use, sends it batches, waits for its answer."""

    def __init__(self, database_url: str, *, plan_cache_mode: str = "auto") -> None:
        self.database_url = database_url
        self.plan_cache_mode = plan_cache_mode
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0  # processes started so far (a restart after a death counts; tests read it)
        self._uncertain = False  # the last batch may have been committed by a child that died first

    async def _start(self) -> asyncio.subprocess.Process:
        env = {**os.environ, DATABASE_URL_ENV: self.database_url, "ONENET_DB_PLAN_CACHE_MODE": self.plan_cache_mode}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.exchange.log_process", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env=env)
        self.started += 1
        return self.proc

    async def write(self, batch: list) -> int:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            proc = await self._start()
        # plain tuples: a NamedTuple pickles through a Python-level __getnewargs__ per record
        payload = pickle.dumps((self._uncertain, [tuple(ex) for ex in batch]), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            proc.stdin.write(len(payload).to_bytes(4, "big") + payload)
            await proc.stdin.drain()
            head = await proc.stdout.readexactly(4)
            status, value = pickle.loads(await proc.stdout.readexactly(int.from_bytes(head, "big")))
        except (OSError, asyncio.IncompleteReadError) as exc:
            self._uncertain = True
            await self._reap()
            raise LogProcessFailed(f"the message-log writer process died: {exc!r}") from exc
        except BaseException:  # cancelled mid-exchange: the pipe's framing is lost with it
            self._uncertain = True
            await self._reap()
            raise
        self._uncertain = False
        if status != "ok":
            raise LogProcessFailed(value)
        return value

    async def _reap(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def aclose(self, timeout: float = 10.0) -> None:
        """Let the child finish what it has and exit (end of its input)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), timeout)
        except (asyncio.TimeoutError, OSError):
            proc.kill()
            await proc.wait()


# ---- the child --------------------------------------------------------------------------------------------

async def _serve(database_url: str) -> None:
    from common.bulk_insert import RowsInsert
    from common.db import Database
    from gateway.base import OutboxEvent
    from gateway.exchange.audit import Exchange, write_batch
    from gateway.exchange.models import MessageLog

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    sys.stdout = sys.stderr  # only frames go to the gateway; a stray print goes to the log instead
    db = Database(database_url, plan_cache_mode=os.environ.get("ONENET_DB_PLAN_CACHE_MODE", "auto"))
    inserts = (RowsInsert(MessageLog.__table__), RowsInsert(OutboxEvent.__table__))
    try:
        while True:
            try:
                head = await reader.readexactly(4)
            except asyncio.IncompleteReadError:
                return  # the gateway closed our input (shutdown) or died: nothing more will come
            resend, rows = pickle.loads(await reader.readexactly(int.from_bytes(head, "big")))
            batch = [Exchange._make(row) for row in rows]
            try:
                reply = ("ok", await write_batch(db, MessageLog, OutboxEvent, batch, inserts=inserts,
                                                 resend=resend))
            except Exception as exc:  # noqa: BLE001 - the gateway keeps the records and retries
                log.warning("message log batch not written: %r", exc)
                reply = ("error", f"{type(exc).__name__}: {exc}"[:500])
            data = pickle.dumps(reply)
            out.write(len(data).to_bytes(4, "big") + data)
    finally:
        await db.dispose()


def main() -> None:
    from common.logging import configure_logging

    # Ctrl-C in a terminal and the launcher's SIGTERM reach the whole process group: the child must outlive
    # them so the gateway's shutdown can still flush through it. It ends when its input does (the gateway
    # closed the pipe, or died).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    configure_logging("gateway-message-log", os.environ.get("ONENET_LOG_LEVEL", "INFO"))
    asyncio.run(_serve(os.environ[DATABASE_URL_ENV]))


if __name__ == "__main__":
    main()
