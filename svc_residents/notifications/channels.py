"""Which outside channels carry a message to whom, in which order: the rule in one place.

A person's plan follows their accessibility needs first (a visual impairment (`voice`) or an elderly person
living alone: a voice call, then SMS), then their preferred channel (app → push then SMS; phone → voice then SMS;
anything else → SMS). Staff: push then SMS, unless their contact says otherwise. SMS and voice need a phone; a
channel that cannot reach the recipient is left out and recorded as a skip."""
from __future__ import annotations

from datetime import datetime, time, timedelta

from common.clock import SHANGHAI

CHANNELS = ("push", "sms", "voice")
PHONE_CHANNELS = ("sms", "voice")
QUIET_START, QUIET_END = time(22, 0), time(7, 0)


def person_plan(preferred: str | None, needs: list[str], tags: set[str]) -> list[str]:
    if "voice" in needs or "living_alone" in tags:
        return ["voice", "sms"]
    if preferred == "app":
        return ["push", "sms"]
    if preferred == "phone":
        return ["voice", "sms"]
    return ["sms"]


def staff_plan(preferred: str | None) -> list[str]:
    if preferred == "sms":
        return ["sms"]
    if preferred == "phone":
        return ["voice", "sms"]
    return ["push", "sms"]


def reachable(plan: list[str], has_phone: bool) -> tuple[list[str], list[str]]:
    """(channels that can reach the recipient, channels left out for want of a phone)."""
    keep = [c for c in plan if has_phone or c not in PHONE_CHANNELS]
    return keep, [c for c in plan if c not in keep]


def quiet_until(now: datetime) -> datetime | None:
    """The end of the quiet hours (22:00–07:00 Asia/Shanghai) when `now` is inside them, else None."""
    local = now.astimezone(SHANGHAI)
    if QUIET_END <= local.time() < QUIET_START:
        return None
    day = local.date() if local.time() < QUIET_END else local.date() + timedelta(days=1)
    return datetime.combine(day, QUIET_END, tzinfo=SHANGHAI).astimezone(now.tzinfo)
