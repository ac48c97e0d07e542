"""Every table of gateway, imported in one place so Alembic and the app see the whole schema."""
from gateway.base import Base, IdempotencyRecord, OutboxEvent  # noqa: F401
from gateway.members.models import Member, User  # noqa: F401
from gateway.exchange.models import Grant, MessageLog, Resource  # noqa: F401,E402
from gateway.identity.models import LoginCount  # noqa: F401,E402
from gateway.accounts.models import AccountAudit, AuthSession, RecoveryCode, RefreshToken, TotpFactor  # noqa: F401,E402
