"""Issue 30's and issue 28's counted indicators from known events: bookings (no-shows, room conflicts, room
utilisation), activities per month per community, and public notices published per kind."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.svc_metrics.conftest import C1, C2, G1, G3, T0, ev

H = timedelta(hours=1)
D = timedelta(days=1)
APRIL_1_SHANGHAI = datetime(2026, 3, 31, 17, 0, tzinfo=timezone.utc)   # 1 April 01:00 in Shanghai


def booking(bid: str, steps: list[str], *, kind: str = "activity_room", starts_at: datetime = T0 + D,
            minutes: int = 60, resource: str = "room1", grid: str = G1) -> list[dict]:
    """booking.requested at T0, then one event per step an hour apart, each naming the slot's start."""
    data = {"resource_id": resource, "kind": kind, "minutes": minutes}
    out = [ev("booking.requested", T0, bid, grid=grid, state="confirmed", starts_at=starts_at.isoformat(), **data)]
    for i, step in enumerate(steps, 1):
        out.append(ev(f"booking.{step}", T0 + i * H, bid, grid=grid, starts_at=starts_at.isoformat(), **data))
    return out


async def test_no_show_rate_over_bookings_that_reached_their_slot(post, kpi):
    events = booking("b1", ["checked_in", "completed"]) + booking("b2", ["no_show"])
    events += booking("b3", ["cancelled"]) + booking("b4", ["checked_in"]) + booking("b5", [])
    # rescheduled to a slot that starts on 1 April in Shanghai (still 31 March in UTC), then missed
    b6 = booking("b6", [])
    b6 += [ev("booking.rescheduled", T0 + H, "b6", resource_id="room1", kind="activity_room", minutes=60,
              starts_at=APRIL_1_SHANGHAI.isoformat()),
           ev("booking.no_show", T0 + 2 * H, "b6", resource_id="room1", kind="activity_room", minutes=60,
              starts_at=APRIL_1_SHANGHAI.isoformat())]
    await post(events + b6)
    k = await kpi("booking_no_show_rate")
    assert (k["numerator"], k["denominator"], k["value"]) == (1.0, 3.0, 33.33)   # b2 of b1, b2, b4
    assert k["target"] is None and k["status"] is None
    april = await kpi("booking_no_show_rate", period="2026-04")
    assert (april["numerator"], april["denominator"]) == (1.0, 1.0)


async def test_conflict_rate_of_room_booking_attempts(post, kpi):
    events = booking("b1", []) + booking("b2", []) + booking("b3", [])
    events += booking("c1", [], kind="counter")                                   # not a room
    events += [ev("booking.conflicted", T0 + H, "room1", resource_id="room1", kind="activity_room",
                  starts_at=(T0 + D).isoformat()) for _ in range(2)]
    events.append(ev("booking.conflicted", T0 + H, "canteen", resource_id="canteen", kind="canteen_seat",
                     starts_at=(T0 + D).isoformat()))
    await post(events)
    k = await kpi("booking_conflict_rate")
    assert (k["numerator"], k["denominator"], k["value"]) == (2.0, 5.0, 40.0)
    assert (k["target"]["value"], k["target"]["source"], k["status"]) == (20, "004", "missed")
    assert (k["baseline"]["value"], k["baseline"]["source"]) == (70, "004")


async def test_room_utilisation_over_open_minutes_scaled_to_the_period(post, kpi):
    march_1 = datetime(2026, 2, 28, 16, 0, tzinfo=timezone.utc)        # 1 March 00:00 in Shanghai
    events = [ev("bookable_resource.listed", march_1, "room1", kind="activity_room", capacity=1, slot_minutes=60,
                 open_minutes_per_week=2100, place_minutes_per_week=2100),
              # listed on 17 March (Shanghai): 15 of March's days; its place-minutes from open minutes × capacity
              ev("bookable_resource.listed", march_1 + 16 * D, "room2", kind="meeting_room", capacity=2,
                 slot_minutes=60, open_minutes_per_week=350),
              ev("bookable_resource.listed", march_1, "canteen", kind="canteen_seat", capacity=40, slot_minutes=60,
                 open_minutes_per_week=3000, place_minutes_per_week=120000)]
    events += booking("u1", ["checked_in", "completed"], minutes=120) + booking("u2", ["checked_in"], minutes=120)
    events += booking("u3", ["checked_in", "completed"], minutes=120)
    events += booking("u4", ["checked_in"], minutes=180, kind="meeting_room", resource="room2")
    events += booking("n1", ["no_show"], minutes=600) + booking("x1", ["cancelled"], minutes=600)
    events += booking("s1", ["checked_in"], minutes=60, kind="canteen_seat", resource="canteen")
    await post(events)
    k = await kpi("room_utilisation")
    # 2100 × 31/7 + 700 × 15/7 = 9300 + 1500 open minutes; 3 × 120 + 180 used
    assert (k["numerator"], k["denominator"], k["value"]) == (540.0, 10800.0, 5.0)
    assert (k["target"]["value"], k["status"]) == (70, "missed")
    # April so far: 1 April 00:00 to now (15 April 12:00 in Shanghai), 14.5 days of both rooms
    april = await kpi("room_utilisation", period="2026-04")
    assert (april["denominator"], april["value"]) == (5800.0, 0.0)
    canteen = await kpi("room_utilisation", category="canteen_seat")
    assert canteen["numerator"] == 60.0 and canteen["denominator"] == pytest.approx(120000 * 31 / 7, abs=0.01)


def activity(aid: str, starts: datetime, *, grid: str = G1, category: str = "culture") -> dict:
    return ev("activity.published", T0 - 5 * D, aid, grid=grid, activity_id=aid, category=category,
              organiser_kind="community", starts_at=starts.isoformat(), capacity=30)


async def test_activities_per_month_per_community(post, kpi):
    events = [activity(f"a{i}", T0 + i * D) for i in range(5)]
    events.append(ev("activity.cancelled", T0, "a4", activity_id="a4", category="culture", reason="雨天"))
    events.append(activity("late", APRIL_1_SHANGHAI))                          # April in Shanghai
    events += [activity("c2a", T0 + D, grid=G3), activity("c2b", T0 + 2 * D, grid=G3, category="health")]
    events.append(ev("activity.signed_up", T0, "s1", activity_id="a0", category="culture", person_id="p1"))
    await post(events)
    k = await kpi("activities_per_month", scope=C1)
    assert (k["numerator"], k["denominator"], k["value"], k["status"]) == (4.0, 1.0, 4.0, "met")
    assert k["target"]["source"] == "000"
    assert (await kpi("activities_per_month", scope=C1, period="2026-Q1"))["value"] == 1.33
    assert (await kpi("activities_per_month", scope=C2, category="health"))["value"] == 1.0
    # a street without its communities known counts them as one; with them, the mean per community
    street = C1[:9]
    assert (await kpi("activities_per_month", scope=street))["value"] == 6.0
    await post([ev("place.created", T0 - 30 * D, c, grid=None, community=c, level="community", name=c)
                for c in (C1, C2)] + [ev("place.created", T0 - 30 * D, G1, level="grid", name="g")])
    k = await kpi("activities_per_month", scope=street)
    assert (k["numerator"], k["communities"], k["value"], k["status"]) == (6.0, 2.0, 3.0, "missed")


async def test_notices_published_per_kind(post, kpi):
    events = [ev("public_notice.published", T0 + i * H, f"n{i}", grid=None, community=C1, kind=kind)
              for i, kind in enumerate(["policy", "policy", "fund"])]
    events += [ev("public_notice.withdrawn", T0 + 5 * H, "n1", grid=None, community=C1, kind="policy"),
               ev("public_notice.objection_filed", T0 + 5 * H, "n2", grid=None, community=C1, kind="fund"),
               ev("public_notice.published", APRIL_1_SHANGHAI, "n9", grid=None, community=C1, kind="staffing"),
               ev("public_notice.published", T0, "m1", grid=None, community=C2, kind="fund")]
    await post(events)
    k = await kpi("notices_published", scope=C1)
    assert (k["value"], k["by_category"]) == (3.0, {"fund": 1.0, "policy": 2.0})   # a withdrawal stays published
    assert k["target"] is None and k["status"] is None
    assert (await kpi("notices_published", scope=C1, category="fund"))["value"] == 1.0
    assert (await kpi("notices_published"))["by_category"] == {"fund": 2.0, "policy": 2.0}
    assert (await kpi("notices_published", scope=C1, period="2026-04"))["by_category"] == {"staffing": 1.0}
