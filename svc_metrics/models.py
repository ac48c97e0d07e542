"""Every table of svc_metrics, imported in one place so Alembic and the app see the whole schema."""
from svc_metrics.base import Base, IdempotencyRecord, OutboxEvent  # noqa: F401
from svc_metrics.events.models import StoredEvent  # noqa: F401
from svc_metrics.kpis.models import KpiDefinition, Observation, Rollup, TargetOverride  # noqa: F401
from svc_metrics.alerts.models import RectificationCase, Warning_  # noqa: F401
from svc_metrics.surveys.models import Invitation, Survey, SurveyResponse, SurveyTally, SurveyToken  # noqa: F401
