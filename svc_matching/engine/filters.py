"""The hard filters: which providers may serve a need at all (`check`), and why not."""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


from common.geo import distance_m
from svc_matching.engine.model import Need, Provider, Slot, Weights

FILTERS = ("category", "capacity", "eligibility_age", "eligibility_tags", "schedule", "distance")
FILTER_TEXT = {
    "category": ("服务类别或技能不符", "Category / skill does not match"),
    "capacity": ("剩余服务能力不足", "No remaining capacity"),
    "eligibility_age": ("年龄不符合服务对象条件", "Age outside the eligible range"),
    "eligibility_tags": ("不属于该服务的服务对象群体", "Not in an eligible group"),
    "schedule": ("服务时间与需求时段不重叠", "Schedule does not overlap the time window"),
    "distance": ("超出服务范围或15分钟生活圈", "Outside the service area / 15-minute circle"),
}


haversine_m = distance_m  # the platform's one great-circle distance (common.geo)


def schedule_overlaps(schedule: tuple[Slot, ...], start: datetime | None, end: datetime | None,
                      tz: str = "Asia/Shanghai") -> bool:
    """True when some weekly slot intersects [start, end) in local time (no schedule or no window: True)."""
    if not schedule or start is None or end is None:
        return True
    zone = ZoneInfo(tz)
    s, e = start.astimezone(zone), end.astimezone(zone)
    day = datetime(s.year, s.month, s.day, tzinfo=zone)
    last = datetime(e.year, e.month, e.day, tzinfo=zone)
    steps = 0
    while day <= last and steps < 9:
        for slot in schedule:
            if slot.weekday != day.weekday():
                continue
            a = day + timedelta(minutes=slot.start_min)
            b = day + timedelta(minutes=slot.end_min)
            if a < e and s < b:
                return True
        day = (day + timedelta(days=1)).replace(tzinfo=zone)
        steps += 1
    return False


def distance_ok(need: Need, p: Provider, w: Weights) -> tuple[bool, float]:
    d = haversine_m(need.lat, need.lon, p.lat, p.lon)
    if p.area_codes and need.place_code and any(need.place_code.startswith(c) for c in p.area_codes):
        return True, d
    radius = p.radius_m if p.radius_m is not None else w.walk_circle_m
    return d <= radius, d


def check(need: Need, p: Provider, w: Weights) -> tuple[str | None, float]:
    """(first failing filter or None, distance in metres)."""
    if need.category not in p.categories:
        return "category", math.nan
    if p.remaining <= 0:
        return "capacity", math.nan
    if p.min_age is not None or p.max_age is not None:
        if need.age is None or (p.min_age is not None and need.age < p.min_age) or \
                (p.max_age is not None and need.age > p.max_age):
            return "eligibility_age", math.nan
    if p.eligibility and not (p.eligibility & need.tags):
        return "eligibility_tags", math.nan
    if not schedule_overlaps(p.schedule, need.window_start, need.window_end, w.timezone):
        return "schedule", math.nan
    ok, d = distance_ok(need, p, w)
    return (None if ok else "distance"), d
