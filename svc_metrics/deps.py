"""Small request-scoped helpers shared by the routers."""
from __future__ import annotations

from fastapi import Request

from common.clock import Clock
from common.db import Database


def db_of(request: Request) -> Database:
    return request.app.state.db


def clock_of(request: Request) -> Clock:
    clock = getattr(request.app.state, "clock", None)
    if clock is None:
        clock = request.app.state.clock = Clock()
    return clock
