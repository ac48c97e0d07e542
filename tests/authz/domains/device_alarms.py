"""Devices' alarms filed on svc_services (issue 26, ADR 0022): rules and cells, written from the policy.

The policy (ADR 0022, svc_services/alarms): a device's alarm reaches svc_services only through svc_residents'
alarm feed; svc_residents checked that the alarm came from the device's own IoT platform and where the device is
bound, and the request is filed as that device on behalf of the bound person. So only svc_residents' member (the
configured ONENET_ALARM_SOURCES) files them; every person (resident, proxy, staff of any level, ops, who file
requests at POST /services/v1/requests), department, kiosk, evaluator and provider is refused (403).
"""
from __future__ import annotations

import uuid

from tests.authz.policy import A1, Caller, Rule, allow
from tests.authz.test_matrix import Cell, World, fresh


def _source(c: Caller) -> bool:
    return c.member == "svc_residents"


RULES = {
    "alarms.file": Rule("a device's alarm is filed as an emergency request only by the devices' registry "
                        "(svc_residents' member, ONENET_ALARM_SOURCES), which checked the device's platform and "
                        "place (403 for everyone else, ops included)", allow(_source)),
}


def alarm(w: World, c: Caller) -> dict:
    return {"request_id": str(uuid.uuid4()), "device_id": "AUTHZ-BR-1", "device_kind": "bracelet",
            "event_id": w.uid("evt"), "grid": A1, "description": "authz matrix: 智能手环报警",
            "raised_at": w.gw.state.clock.now().isoformat()}


CELLS = {
    "PUT /services/v1/device_alarms/{alarm_id}": [Cell("alarms.file", fresh(
        "PUT", "/services/v1/device_alarms/{}", lambda w: w.uid("authz-alarm"), alarm))],
}

FILL = {"{alarm_id}": "no-such-alarm"}
