"""The gateway's edge: nginx with a Lua module answering plain exchange calls, the Python gateway deciding.

nginx (Debian's package with its Lua module) listens where the gateway does and forwards each plain exchange
call itself, having asked the Python gateway once per token and resource what to do (`router.py`), and ships
each call's message-log record to it in batches; every other request (the gateway's own API, refused or masked
calls, X-Road, Open311) is proxied to the Python gateway unchanged. Why and what it keeps: docs/adr/0012.
"""
