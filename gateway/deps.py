"""What the gateway's endpoints take besides `common.deps` (`gate: Gate`, `edge: Edge` …): the objects the app
factory (gateway/app.py) keeps in the app's state, by their names there. Background jobs read `app.state`."""
from __future__ import annotations

from typing import Annotated

from common.deps import state
from common.idempotency import idempotent_post
from common.observability import Telemetry
from gateway.base import IdempotencyRecord
from gateway.edge.link import EdgeLink
from gateway.exchange.audit import AuditWriter
from gateway.exchange.policy import ExchangePolicy
from gateway.identity.mtls import CertificatePins
from gateway.identity.tokens import TokenIssuer
from gateway.routing.forwarder import Forwarder
from gateway.routing.gate import ExchangeGate
from gateway.routing.openapi import AggregatedOpenAPI

Gate = Annotated[ExchangeGate, state("exchange_gate")]  # the one decision core of every forwarded call
Forwarding = Annotated[Forwarder, state("forwarder")]
Policy = Annotated[ExchangePolicy, state("exchange_policy")]
Audit = Annotated[AuditWriter, state("audit")]  # the message log's writer
Edge = Annotated[EdgeLink | None, state("edge")]  # None without an edge in front
EdgeTelemetry = Annotated[Telemetry, state("edge_telemetry")]  # the calls the edge answered, in /metrics
CertPins = Annotated[CertificatePins, state("cert_pins")]
RevokedMembers = Annotated[set[str], state("revoked_members")]
Issuer = Annotated[TokenIssuer, state("token_issuer")]
OpenAPIDocs = Annotated[AggregatedOpenAPI, state("openapi_aggregate")]
Idempotent = idempotent_post(IdempotencyRecord)  # an Idempotency-Key kept in the gateway's table
