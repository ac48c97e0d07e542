"""Every table of svc_matching, imported in one place so Alembic and the app see the whole schema."""
from svc_matching.base import Base, IdempotencyRecord, OutboxEvent  # noqa: F401
from svc_matching.directory.models import (  # noqa: F401
    Location, Organization, Schedule, Service, ServiceAtLocation, ServiceAttribute, ServiceCapacity, TaxonomyTerm,
)
from svc_matching.offers.models import MatchProposal, Offer  # noqa: F401
from svc_matching.people.models import Need, PersonPlace, Volunteer, VolunteerHourOffer  # noqa: F401
from svc_matching.timebank.models import Account, Entry, Posting  # noqa: F401
from svc_matching.bookings.models import (  # noqa: F401
    BookableResource, Booking, BookingBlock, BookingEntry, BookingSlot,
)
from svc_matching.activities.models import Activity, ActivitySignup  # noqa: F401
from svc_matching.survey_needs.models import SurveyDemand  # noqa: F401
