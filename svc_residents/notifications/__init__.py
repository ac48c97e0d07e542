"""The notification engine: svc_residents is the one service that sends to people (it holds the phones).

Delivery API (in-process, for svc_residents' own packages: the call-out chain, devices, broadcasts)::

    from svc_residents.notifications.service import notify
    result = await notify(session, recipient="person:<id>" | "user:<username>", template="request.dispatched",
                          variables={"number": ..., "assignee": ...}, event_key="<event id or your own key>",
                          now=clock.now(), urgency="normal" | "urgent" | "emergency" | "safety",
                          subject=None, channels=None, parallel=False, community=None, grid=None)
    result.notification  # the stored message (the recipient's inbox entry), result.created, result.deliveries

    from svc_residents.notifications.service import Message, notify_many
    stored = await notify_many(session, [Message(recipient, template, variables, event_key, ...), ...], now=now,
                               unknown="raise" | "skip")   # one Stored(id, created, skipped) or None a message

- `notify()` is `notify_many()` with one message; a batch (a broadcast's chunk, an event's audience) takes a few
  queries whatever its size, and the same per-recipient rule (`service.decide`).

- Runs in the caller's transaction (no commit): the message, its deliveries and skips commit with the caller's
  change or not at all; once committed, the recipient's live streams wake (stream.py).
- Idempotent by (event_key, recipient): a second call stores and sends nothing and answers the first message
  with `created=False` (safe on two replicas at once: INSERT … ON CONFLICT DO NOTHING).
- `template`: a key of templates.TEMPLATES; `variables` must be exactly the template's placeholders, else a 422
  Problem naming `variables.<name>` (nothing written). The recipient's language (settings, `en` on request) picks
  the words. Unknown recipient (no such person, merged away): 422 `recipient`.
- Channels: the inbox always; outside channels by channels.py's plan (accessibility needs, preferred channel;
  SMS and voice only with a phone, else a recorded skip) unless `channels=` names them; `parallel=True` sends
  on all of them at once (the emergency call-out: voice + SMS + push), otherwise each is a fallback for the one
  before. Sent later by the scheduler (dispatch.py: claimed rows, retries with backoff, every attempt stored).
- `urgency` "emergency" / "safety": no quiet hours (22:00–07:00 Asia/Shanghai), no opt-out, no daily cap. Others
  wait for 07:00, are skipped for a category the recipient opted out of (`notification.skipped = "opted_out"`),
  and beyond DAILY_CAP outside-channel messages in 24 h (`"cap"`); the inbox entry stays in every case.
- Staff and grid workers are gateway accounts (`user:<username>`): the gateway keeps no phone for them, so
  svc_residents keeps their contact details in `staff_contacts` (edited by community staff); grid workers of a
  grid are `places.models.GridWorker`. Without a contact a user gets the inbox and push only.

Other services' events arrive through the outbox feed `notice.` (ADR 0007, docs/adr/0017): svc_services writes a
`notice.request.<event>` row beside each request event, svc_matching `notice.booking.<event>` and
`notice.signup.<event>` rows (confirmed, approved, promoted, reminders: svc_matching/bookings/notices.py), svc_metrics
`notice.survey.<event>` rows (invitations and the reminder, a batch of `person_ids`, no token:
svc_metrics/surveys/notices.py) and `notice.warning.opened` (svc_metrics/alerts/notices.py), svc_matching
`notice.offer.made` / `notice.offer.expiring` (svc_matching/offers/notices.py), delivered to `PUT /residents/v1/notices/{event_id}`, where rules.py says who is told
what.
"""
