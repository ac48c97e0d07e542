"""JSON log lines and their buffered writing (common/logging.py)."""
from __future__ import annotations

import io
import json
import logging
import time
from datetime import datetime, timezone

from common.context import request_id_var
from common.logging import BufferedLineHandler, JsonFormatter, direct_handler


def _logger(handler: logging.Handler, name: str) -> logging.Logger:
    handler.setFormatter(JsonFormatter("svc-test"))
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


def test_info_lines_wait_for_a_warning_which_takes_them_out_in_order():
    """Buffered: nothing is written for INFO lines until a WARNING comes; then all go out, in order, as JSON."""
    out = io.StringIO()
    log = _logger(BufferedLineHandler(out, flush_seconds=60), "t.order")
    token = request_id_var.set("rid-1")
    try:
        log.info("first", extra={"path": "/a", "at": datetime(2026, 11, 29, tzinfo=timezone.utc), "obj": object()})
        log.info("second")
        assert out.getvalue() == ""
        log.warning("third")
    finally:
        request_id_var.reset(token)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["msg"] for x in lines] == ["first", "second", "third"]
    assert lines[0]["service"] == "svc-test" and lines[0]["request_id"] == "rid-1" and lines[0]["path"] == "/a"
    assert lines[0]["at"].startswith("2026-11-29T00:00:00") and lines[0]["obj"].startswith("<object")
    assert lines[2]["level"] == "warning"


def test_a_full_buffer_and_a_zero_interval_write_at_once():
    """`buffer_bytes` reached → written; `flush_seconds` 0 → every line written as it comes."""
    out = io.StringIO()
    log = _logger(BufferedLineHandler(out, flush_seconds=60, buffer_bytes=300), "t.full")
    log.info("x" * 100)
    assert out.getvalue() == ""  # about 200 bytes held
    log.info("y" * 100)
    assert [json.loads(x)["msg"][0] for x in out.getvalue().splitlines()] == ["x", "y"]
    now = io.StringIO()
    log = _logger(BufferedLineHandler(now, flush_seconds=0), "t.now")
    log.info("one")
    assert json.loads(now.getvalue())["msg"] == "one"


def test_a_quiet_period_is_flushed_by_the_timer():
    """A lone INFO line goes out within about `flush_seconds`, with no later line to push it."""
    out = io.StringIO()
    log = _logger(BufferedLineHandler(out, flush_seconds=0.3), "t.timer")
    log.info("alone")
    assert out.getvalue() == ""
    deadline = time.monotonic() + 5
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(out.getvalue())["msg"] == "alone"


def test_an_access_line_written_directly_is_the_line_logging_would_write():
    """`direct_handler` + `write_fields` (the access log's hot path) give the formatter's line; with another
    handler listening (here pytest-like: a second one on the root) there is no direct path."""
    out = io.StringIO()
    handler = BufferedLineHandler(out, flush_seconds=0)
    handler.setFormatter(JsonFormatter("svc-test"))
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        log = logging.getLogger("t.direct.access")
        log.setLevel(logging.INFO)
        assert direct_handler(log) is handler
        fields = {"method": "POST", "path": "/departments/x", "status": 200, "latency_ms": 1.25, "caller": None}
        token = request_id_var.set("rid-9")
        try:
            handler.write_fields(logging.INFO, log.name, "request", fields)
            log.info("request", extra=fields)
        finally:
            request_id_var.reset(token)
        direct, via_logging = (json.loads(x) for x in out.getvalue().splitlines())
        assert direct.pop("ts")[:16] == via_logging.pop("ts")[:16]
        assert direct == via_logging
        root.handlers.append(logging.NullHandler())
        assert direct_handler(log) is None
    finally:
        root.handlers[:] = saved
