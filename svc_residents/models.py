"""Every table of svc_residents, imported in one place so Alembic and the app see the whole schema."""
from svc_residents.base import Base, IdempotencyRecord, OutboxEvent  # noqa: F401
from svc_residents.places.models import GridWorker, Place  # noqa: F401
from svc_residents.households.models import Household  # noqa: F401
from svc_residents.persons.models import Consent, Person, PersonChange, PersonTag  # noqa: F401
from svc_residents.audit.models import AccessAudit  # noqa: F401
from svc_residents.verification.models import Verification  # noqa: F401
from svc_residents.registrations.models import PersonRegistration  # noqa: F401
from svc_residents.identity.models import AccountBinding  # noqa: F401
from svc_residents.callout.models import Callout, CalloutAttempt, DutyShift  # noqa: F401
from svc_residents.notifications.models import (Attempt, Delivery, Notification, RecipientSettings,  # noqa: F401
                                                StaffContact)
from svc_residents.devices.models import AlarmDevice, DeviceAlarm, DeviceCheck  # noqa: F401
from svc_residents.broadcasts.models import Broadcast  # noqa: F401
