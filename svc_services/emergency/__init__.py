"""Emergency requests and svc_residents' call-out chain (issue 26).

- `feed`: every emergency request (priority `emergency`: 一键呼叫, an IoT alarm, a 120/119 report) is written to the
  `emergency.` feed (ADR 0007) at submission and at each move out of `submitted`/`escalated` (an escalation within
  them writes none), a snapshot per request versioned by the request's own version; the relay delivers it to
  svc_residents (`PUT /residents/v1/emergencies/{request_id}`), which starts the chain and stops it once the
  request has been taken up.
- `router` / `service`: svc_residents' `callout.` feed comes back here (`PUT /services/v1/emergency_log/{entry_id}`):
  each call attempt is a `call` annotation on the request's timeline, the acknowledgement an `acknowledge`
  annotation plus, while the request still waits for acceptance, its `accept` by the person who acknowledged
  (so `accepted_at`, the SLA scan's emergency response and the emergency acknowledge KPI, which counts
  `request.accepted`, all measure alarm → acknowledgement).
"""
