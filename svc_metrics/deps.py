"""Small request-scoped helpers shared by the routers."""
from __future__ import annotations

from fastapi import Request

from common.db import Database


def db_of(request: Request) -> Database:
    return request.app.state.db
