"""Alarm devices (智能手环 smart bracelet, 烟感 smoke sensor, 门磁 door sensor) bound to a person or a household.

- Each device reports through one member system of the exchange (its IoT platform, `member`): only that member's
  client-credentials token may post the device's events, so a device is a member-authenticated source (as the
  kiosk is for its sign-ins) and another system cannot raise or silence its alarms.
- An alarm becomes an emergency request (channel `iot`) at the person's place in svc_services, submitted with
  svc_residents' own token and an Idempotency-Key per device event (a device that retries files it once); the
  emergency then reaches the call-out chain through svc_services' `emergency.` feed (svc_residents/callout).
  Through the gateway that submission is svc_residents' member calling as itself, which the exchange admits only
  under a live grant on `services.requests` (gateway/exchange/policy.py); without one the device is answered 502
  `device.alarm_refused` (upstream 403) and retries, nothing is written. (Open: a demo grant, or an alarm feed.)
- A device whose heartbeat is `heartbeat_minutes` late raises a check task for the grid's workers; a device of a
  person tagged 独居老人 (living_alone) with no activity for `inactivity_hours` raises a welfare check. The
  scanner claims rows (`FOR UPDATE SKIP LOCKED`) so several replicas raise each task once.
"""
