"""Per-request context carried across awaits, so outgoing calls and log lines know who and what they serve."""
from __future__ import annotations

from contextvars import ContextVar

# Set by the observability middleware for every inbound request.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# The W3C traceparent of the current span (already re-parented for this hop).
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)
# The caller's raw bearer token, forwarded on inter-service calls made on the caller's behalf.
bearer_token_var: ContextVar[str | None] = ContextVar("bearer_token", default=None)
# Who is calling, "member/user" form, for log lines (filled in by the auth dependency).
caller_var: ContextVar[str | None] = ContextVar("caller", default=None)
