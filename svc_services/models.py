"""Every table of svc_services, imported in one place so Alembic and the app see the whole schema."""
from svc_services.appointments.models import RequestAppointment  # noqa: F401
from svc_services.attachments.models import Attachment  # noqa: F401
from svc_services.base import Base, IdempotencyRecord, OutboxEvent  # noqa: F401
from svc_services.catalogue.models import CatalogueItem, CatalogueItemVersion  # noqa: F401
from svc_services.deliberation import models as deliberation  # noqa: F401
from svc_services.disclosure.models import Objection, PublicNotice  # noqa: F401
from svc_services.grids.models import ServiceGrid  # noqa: F401
from svc_services.materials.models import RequestMaterial  # noqa: F401
from svc_services.open311.models import RequestPublication  # noqa: F401
from svc_services.requests.models import ServiceRequest, TimelineEntry  # noqa: F401
from svc_services.requesters.models import RequesterProfile  # noqa: F401
