"""Structured JSON logs: one object per line, easy to ship and grep."""
from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from datetime import datetime, timezone
from typing import TextIO

import orjson

from common.context import request_id_var

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class BufferedLineHandler(logging.Handler):
    """Lines written in chunks, as nginx's `access_log … buffer= flush=` does: a service logging one access line
    per request otherwise pays a write system call for each (profiled in the gateway: the access line was a
    quarter of a forwarded call's cost). A line waits at most `flush_seconds` (a timer thread flushes quiet
    periods) or until `buffer_bytes` are held; a WARNING or worse goes out at once with everything before it,
    and logging's shutdown flushes at exit. What a crash can lose: up to `flush_seconds` of INFO lines."""

    def __init__(self, stream: TextIO, *, flush_seconds: float = 1.0, buffer_bytes: int = 32 * 1024) -> None:
        super().__init__()
        self.stream = stream
        self.flush_seconds = flush_seconds
        self.buffer_bytes = buffer_bytes
        self._lines: list[str] = []
        self._size = 0
        self._since = 0.0
        if flush_seconds > 0:
            _timed.add(self)
            _start_flusher()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging must not raise into the caller
            self.handleError(record)
            return
        self._add(line, record.levelno)

    def _add(self, line: str, levelno: int) -> None:
        with self.lock:
            if not self._lines:
                self._since = time.monotonic()
            self._lines.append(line)
            self._size += len(line) + 1
            urgent = (self.flush_seconds <= 0 or levelno >= logging.WARNING or self._size >= self.buffer_bytes
                      or time.monotonic() - self._since >= self.flush_seconds)
        if urgent:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            if not self._lines:
                return
            chunk = "\n".join(self._lines) + "\n"
            self._lines.clear()
            self._size = 0
            try:
                self.stream.write(chunk)
                self.stream.flush()
            except Exception:  # noqa: BLE001 - a closed or broken stream: the lines are lost, the caller is not
                pass

    def write_fields(self, levelno: int, logger: str, msg: str, fields: dict) -> None:
        """The line JsonFormatter would make of a record with these `extra` fields, without a LogRecord (the
        access log's hot path; `direct_handler` says when this is equivalent)."""
        if levelno < self.level:
            return
        # the host's time, as the logging module stamps its records (a log line is not business time)
        out = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
               "level": logging.getLevelName(levelno).lower(), "service": self.formatter.service,  # type: ignore[union-attr]
               "logger": logger, "msg": msg}
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        out.update(fields)
        self._add(orjson.dumps(out, default=str).decode(), levelno)

    def due(self) -> bool:
        return bool(self._lines) and time.monotonic() - self._since >= self.flush_seconds


def direct_handler(logger: logging.Logger) -> BufferedLineHandler | None:
    """The one handler a record of `logger` would reach, when writing to it straight is what logging would do:
    no handlers or filters on the way but the root's single BufferedLineHandler with a JsonFormatter. Anything
    else (pytest's caplog, a handler added by an operator) gets None: use the logging machinery."""
    root = logging.getLogger()
    if logger.handlers or logger.filters or not logger.propagate or logger.parent is not root or root.filters:
        return None
    if len(root.handlers) != 1:
        return None
    handler = root.handlers[0]
    if type(handler) is not BufferedLineHandler or handler.filters or type(handler.formatter) is not JsonFormatter:
        return None
    return handler


# One thread flushes every buffered handler of the process (an app may be configured more than once).
_timed: "weakref.WeakSet[BufferedLineHandler]" = weakref.WeakSet()
_flusher: threading.Thread | None = None
_FLUSHER_TICK = 0.25


def _start_flusher() -> None:
    global _flusher
    if _flusher is None or not _flusher.is_alive():
        _flusher = threading.Thread(target=_flush_now_and_then, name="log-flush", daemon=True)
        _flusher.start()


def _flush_due() -> None:
    for handler in list(_timed):
        if handler.due():
            handler.flush()


def _flush_now_and_then() -> None:
    from common.periodic import run_periodically_blocking  # it logs through this module

    run_periodically_blocking("log-flush", _flush_due, threading.Event(), interval=_FLUSHER_TICK, jitter=0,
                              run_first=False)


def configure_logging(service: str, level: str = "INFO", *, flush_seconds: float = 1.0) -> None:
    """JSON lines on stderr; `flush_seconds` 0 writes each line at once (BufferedLineHandler)."""
    handler = BufferedLineHandler(sys.stderr, flush_seconds=flush_seconds)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for old in root.handlers:
        old.flush()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log duplicates ours.
    logging.getLogger("uvicorn.access").disabled = True
    # one line per outgoing call is noise next to our own access log
    logging.getLogger("httpx").setLevel(logging.WARNING)
