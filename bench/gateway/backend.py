"""The backend both proxies forward to: a plain ASGI app under uvicorn answering the benchmarked call with the
department emulator's answer shape (fixed bytes, so the backend costs the same for both proxies)."""
from __future__ import annotations

import json

PATH = "/departments/renshe/v1/queries"
ID_NUMBER = "110105194703210823"

BACKEND_BODY = json.dumps({"department": "renshe", "department_name": "人社局", "id_number": ID_NUMBER,
                           "data": {"insured": True, "pension": True}}, ensure_ascii=False,
                          separators=(",", ":")).encode()
BACKEND_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BACKEND_BODY)).encode())]


async def backend_app(scope, receive, send):  # a plain ASGI app: the cheapest Python backend there is
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": BACKEND_HEADERS})
    await send({"type": "http.response.body", "body": BACKEND_BODY})
