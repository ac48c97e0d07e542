"""Devices' alarms from svc_residents' `alarm.` feed (ADR 0022): each becomes an emergency request (channel `iot`)
through the request's own intake (`requests.intake.submit_request`, the one path every submission takes), filed as
the device (`svc_residents/device:<serial>`) on behalf of the bound person, idempotently by alarm id; the call-out
then starts from the request's `emergency.` snapshot as for any emergency (svc_services.emergency)."""
