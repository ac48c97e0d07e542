"""What a helper (代办员) acting for a person may write at all, written from ADR 0015 and the vocabulary of
common/acting.py: the service endpoints below are its acts (each then allowed or not by what the person's record
names, and by the endpoint's own rule); every other write to a service (POST, PUT, PATCH, DELETE) is no act, refused
to a helper acting for a person with 403 `proxy.not_an_act` before the endpoint's own rules, so it hides nothing
(the same answer for any object). A POST that only reads (a search) is no write. The gateway's own endpoints (a
helper's own account, sessions and records) are not acts and keep their own rules."""
from __future__ import annotations

ACTS = {
    "POST /services/v1/requests": "requests.submit",
    "POST /open311/v2/requests.{fmt}": "requests.submit",
    "POST /services/v1/requests/{request_id}/materials/{code}/upload": "requests.submit",
    "POST /services/v1/requests/{request_id}/photos": "requests.submit",
    "POST /services/v1/requests/{request_id}/transitions": "requests.rate|reopen|close|cancel (the body's action)",
    "POST /services/v1/topics": "deliberation.propose",
    "POST /services/v1/topics/{topic_id}/transitions": "deliberation.propose",
    "POST /services/v1/topics/{topic_id}/cosigns": "deliberation.cosign",
    "POST /services/v1/topics/{topic_id}/comments": "deliberation.comment",
    "POST /services/v1/topics/{topic_id}/ballots": "deliberation.vote",
    "POST /services/v1/notices/{notice_id}/objections": "notices.object",
    "POST /metrics/v1/surveys/{survey_id}/invitations/token": "surveys.respond",
    "POST /metrics/v1/surveys/{survey_id}/responses": "surveys.respond",
    "POST /matching/v1/bookings": "bookings.book",
    "POST /matching/v1/bookings/{booking_id}/transitions": "bookings.book",
    "POST /matching/v1/activities/{activity_id}/signups": "bookings.sign_up",
    "POST /matching/v1/activities/{activity_id}/signups/{signup_id}/cancel": "bookings.sign_up",
    "POST /matching/v1/timebank/redemptions": "timebank.redeem",
    "POST /residents/v1/notifications/{notification_id}/read": "notifications.inbox",
    "PUT /residents/v1/notifications/settings": "notifications.inbox",
    "PATCH /residents/v1/persons/{person_id}": "profile.contact",
    "PUT /residents/v1/persons/{person_id}/tags/{code}": "profile.tags",
    "DELETE /residents/v1/persons/{person_id}/tags/{code}": "profile.tags",
    "POST /residents/v1/persons/{person_id}/consents": "profile.consents",
}
READS = {"POST /residents/v1/persons/search"}
GATEWAY = ("/auth/", "/exchange/", "/xroad/", "/.well-known/")
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def not_an_act(endpoint: str, caller) -> bool:
    """A helper acting for a person, writing to a service where no act of a proxy record can reach."""
    method, path = endpoint.split(" ", 1)
    return (caller.role == "proxy" and caller.acting_for is not None and method in WRITES
            and not path.startswith(GATEWAY) and endpoint not in ACTS and endpoint not in READS)
