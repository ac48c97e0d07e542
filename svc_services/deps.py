"""Small request-scoped helpers shared by the routers."""
from __future__ import annotations

from fastapi import Request

from common.clock import Clock


def get_clock(request: Request) -> Clock:
    """The app's clock (tests swap `app.state.clock` for a FrozenClock)."""
    return request.app.state.clock
