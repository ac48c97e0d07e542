"""Alarm devices (智能手环 smart bracelet, 烟感 smoke sensor, 门磁 door sensor) bound to a person or a household.

- Each device reports through one member system of the exchange (its IoT platform, `member`): only that member's
  client-credentials token may post the device's events, so a device is a member-authenticated source (as the
  kiosk is for its sign-ins) and another system cannot raise or silence its alarms.
- An alarm becomes an emergency request (channel `iot`) at the person's place: the alarm (once per device event,
  by device and event id) and an `alarm.raised` row of the alarm feed commit in one transaction (`feed`); the feed's
  relay, woken by that commit, delivers it to svc_services (`PUT /services/v1/device_alarms/{alarm_id}`), whose
  request intake files it idempotently by alarm id, as the device on behalf of the person (ADR 0022). The request
  then reaches the call-out chain through svc_services' `emergency.` feed (svc_residents/callout). svc_residents
  holds no grant on svc_services' requests and needs none; a refused or unreachable svc_services keeps the row
  pending (retried with backoff), so no alarm is lost and the device is answered at once.
- A device whose heartbeat is `heartbeat_minutes` late raises a check task for the grid's workers; a device of a
  person tagged 独居老人 (living_alone) with no activity for `inactivity_hours` raises a welfare check. The
  scanner claims rows (`FOR UPDATE SKIP LOCKED`) so several replicas raise each task once.
"""
