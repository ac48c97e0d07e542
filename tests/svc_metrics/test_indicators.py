"""Every indicator of the catalogue: known events in, the expected number out."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.svc_metrics.conftest import C1, C2, G1, G2, G3, T0, ev, request_flow

H = timedelta(hours=1)
M = timedelta(minutes=1)


async def test_catalogue_holds_every_indicator_with_sources(client, ops):
    r = await client.get("/metrics/v1/catalogue", headers=ops)
    items = {i["code"]: i for i in r.json()["items"]}
    assert len(items) == 30
    # issue 28: resident deliberation's follow-up (plan 001: ≥ 70 %) and vote turnout
    assert [(t["value"], t["source"]) for t in items["resolution_execution_rate"]["targets"]] == [(70, "001")]
    assert items["vote_turnout"]["unit"] == "%"
    sat = items["satisfaction_rate"]
    assert sat["name_zh"] == "居民满意度" and sat["baseline"] == {"value": 72, "source": "000"}
    assert [(t["value"], t["source"]) for t in sat["targets"]] == [(90, "000"), (95, "002")]
    # issue 30: plan 004's room conflicts (70 % → 20 %), plan 000's activities (≥ 4 a month); no plan sets a
    # no-show rate or a number of notices, so those two are figures without a target
    assert [(t["value"], t["source"]) for t in items["booking_conflict_rate"]["targets"]] == [(20, "004")]
    assert [(t["value"], t["source"]) for t in items["activities_per_month"]["targets"]] == [(4, "000")]
    untargeted = {"booking_no_show_rate", "notices_published"}
    for i in items.values():
        assert i["name_zh"] and i["name_en"] and i["unit"] and i["direction"] in ("higher", "lower")
        assert (i["targets"] or i["code"] in untargeted) and all(t.get("source") for t in i["targets"])


async def test_response_time_mean_median_p90(post, kpi):
    hours = [1, 2, 3, 4, 10]
    events = []
    for i, h in enumerate(hours):
        events += request_flow(f"r{i}", T0, steps={"accepted": h * H})
    await post(events)
    k = await kpi("response_time")
    assert (k["mean"], k["median"], k["p90"], k["count"]) == (4.0, 3.0, 7.6, 5)
    assert k["value"] == 4.0 and k["target"]["value"] == 12 and k["status"] == "met" and k["status_zh"] == "达标"


async def test_grid_closure_time_and_share_within_48h(post, kpi):
    events = request_flow("g1", T0, category="grid_event", channel="grid_patrol", steps={"resolved": 24 * H})
    events += request_flow("g2", T0, category="grid_event", channel="grid_patrol", steps={"resolved": 72 * H})
    events += request_flow("x", T0, category="life_service", steps={"resolved": 500 * H})  # not a grid event
    await post(events)
    k = await kpi("grid_closure_time")
    assert k["value"] == 48.0 and k["share_within_threshold"] == 50.0 and k["status"] == "met"


async def test_cross_department_time_counts_two_or_more_departments(post, kpi):
    one = request_flow("a", T0, department="minzheng", steps={"resolved": 10 * H})
    two = request_flow("b", T0, department="minzheng", steps={"resolved": 30 * H})
    two[1]["data"]["department"] = "weijian"
    await post(one + two)
    k = await kpi("cross_dept_time")
    assert k["count"] == 1 and k["value"] == 30.0 and k["status"] == "missed"


async def test_emergency_acknowledge_and_handle(post, kpi):
    events = []
    for i, (ack, start) in enumerate([(30, 120), (50, 150), (90, 400)]):
        events += request_flow(f"e{i}", T0, priority="emergency", category="emergency", channel="iot",
                               steps={"accepted": ack * timedelta(seconds=1), "started": start * timedelta(seconds=1)})
    events += request_flow("n", T0, steps={"accepted": 5 * H})   # not an emergency
    await post(events)
    ack = await kpi("emergency_ack_time")
    assert ack["count"] == 3 and ack["definition"]["stat"] == "p90"
    assert ack["p90"] == pytest.approx((50 + (90 - 50) * 0.8) / 60, abs=1e-3)
    assert ack["value"] == round(ack["p90"], 2) and ack["status"] == "missed"   # 1.37 min against 1 min
    handle = await kpi("emergency_handle_time")
    assert handle["median"] == 2.5 and handle["count"] == 3


async def test_resolution_rate_and_dispute_resolution(post, kpi):
    events = request_flow("a", T0, steps={"resolved": H}) + request_flow("b", T0)
    events += request_flow("c", T0, steps={"cancelled": H})                    # cancelled: not received
    events += request_flow("d1", T0, category="dispute", steps={"resolved": H})
    events += request_flow("d2", T0, category="dispute", steps={"resolved": H, "reopened": 2 * H})
    await post(events)
    assert (await kpi("resolution_rate"))["value"] == 50.0        # a, d1 of a, b, d1, d2
    d = await kpi("dispute_resolution")
    assert (d["value"], d["numerator"], d["denominator"]) == (50.0, 1.0, 2.0)


async def test_on_time_rate_counts_open_overdue(post, kpi):
    events = request_flow("ok", T0, due=48 * H, steps={"resolved": 10 * H})
    events += request_flow("late", T0, due=48 * H, steps={"resolved": 60 * H})
    events += request_flow("open_overdue", T0, due=48 * H)
    events += request_flow("open_not_due", T0 + timedelta(days=40), due=48 * H * 30)  # due after NOW
    await post(events)
    k = await kpi("on_time_rate")
    assert (k["numerator"], k["closed"], k["open_overdue"]) == (1.0, 2.0, 1.0)
    assert k["value"] == round(100 / 3, 2)
    # On 2 March (Shanghai) only "ok" was closed, and nothing was overdue yet.
    day = await kpi("on_time_rate", period="2026-03-02")
    assert (day["value"], day["open_overdue"]) == (100.0, 0.0)
    # On 4 March (due 09:00) "late" was closed late at 21:00 and "open_overdue" stayed open.
    day = await kpi("on_time_rate", period="2026-03-04")
    assert (day["value"], day["open_overdue"], day["closed"]) == (0.0, 1.0, 1.0)


async def test_satisfaction_rate_and_score_with_special_group_target(post, kpi):
    events = []
    for i, r in enumerate([5, 4, 3, 2, 5]):
        extra = {"groups": ["elderly"]} if i < 2 else {}
        events += request_flow(f"r{i}", T0, rating=r, steps={"resolved": H, "rated": 2 * H}, **extra)
    await post(events)
    assert (await kpi("satisfaction_rate"))["value"] == 60.0
    score = await kpi("satisfaction_score")
    assert score["value"] == 3.8 and score["target"]["value"] == 4.2 and score["status"] == "warning"
    elderly = await kpi("satisfaction_score", group="elderly")
    assert elderly["value"] == 4.5 and elderly["target"]["value"] == 4.0 and elderly["status"] == "met"


async def test_rerating_keeps_the_latest_rating(post, kpi):
    events = request_flow("r", T0, rating=2, steps={"rated": H})
    events.append(ev("request.rated", T0 + 3 * H, "r", rating=5, category="life_service", channel="app"))
    await post(events)
    assert (await kpi("satisfaction_score"))["value"] == 5.0


async def test_match_rate_time_and_accuracy(post, kpi):
    events = [ev("need.created", T0, "n1", category="elderly_care"),
              ev("need.created", T0, "n2", category="elderly_care"),
              ev("need.created", T0, "n3", category="elderly_care"),
              ev("match.proposed", T0 + H, "n1"),
              ev("offer.declined", T0 + 2 * H, "o1", need_id="n1"),
              ev("offer.accepted", T0 + 6 * H, "o2", need_id="n1"),
              ev("offer.expired", T0 + 3 * H, "o3", need_id="n2"),
              ev("offer.accepted", T0 + 2 * H, "o4", need_id="n3")]
    await post(events)
    assert (await kpi("match_rate"))["value"] == round(200 / 3, 2)
    t = await kpi("match_time")
    assert (t["mean"], t["count"]) == (4.0, 2)
    acc = await kpi("match_accuracy")
    assert (acc["numerator"], acc["denominator"], acc["value"]) == (2.0, 4.0, 50.0)


async def test_online_rate_and_errand_time(post, kpi):
    events = request_flow("a", T0, channel="app", category="government", steps={"resolved": 20 * M})
    events += request_flow("b", T0, channel="kiosk", category="certificates", steps={"resolved": 40 * M})
    events += request_flow("c", T0, channel="counter", category="social_security", steps={"closed": 90 * M})
    events += request_flow("d", T0, channel="phone", category="life_service", steps={"resolved": 600 * M})
    events += request_flow("e", T0, channel="app", category="government")          # not completed
    await post(events)
    assert (await kpi("online_rate"))["value"] == 50.0
    errand = await kpi("errand_time")
    assert (errand["value"], errand["median"], errand["count"]) == (50.0, 40.0, 3)


async def test_online_coverage_is_as_of_period_end(post, kpi):
    await post([ev("catalogue.item_created", T0, None, grid=None, code="A", online=True),
                ev("catalogue.item_created", T0, None, grid=None, code="B", online=False),
                ev("catalogue.item_created", T0, None, grid=None, code="C", online=False),
                ev("catalogue.item_versioned", T0 + timedelta(days=40), None, grid=None, code="B", online=True),
                ev("catalogue.item_withdrawn", T0 + timedelta(days=40), None, grid=None, code="C")])
    assert (await kpi("online_coverage", period="2026-03"))["value"] == round(100 / 3, 2)
    assert (await kpi("online_coverage", period="2026-04"))["value"] == 100.0
    assert (await kpi("online_coverage", period="2026-04", scope=C1))["value"] == 100.0   # platform-wide figure


async def test_departments_connected(post, kpi):
    await post([ev("member.joined", T0, f"dept{i}", grid=None, kind="department") for i in range(5)]
               + [ev("member.joined", T0, "app1", grid=None, kind="app"),
                  ev("member.revoked", T0 + timedelta(days=3), "dept0", grid=None, kind="department")])
    k = await kpi("departments_connected")
    assert k["value"] == 4.0 and k["status"] == "missed"


async def test_data_interoperability(post, kpi):
    await post([ev("exchange.item", T0, None, grid=None, item=f"i{i}", required=True, shared=i < 3)
                for i in range(5)] + [ev("exchange.item", T0, None, grid=None, item="opt", required=False, shared=True)])
    k = await kpi("data_interoperability")
    assert (k["numerator"], k["denominator"]) == (4.0, 5.0)    # an optional shared item counts above the line
    assert k["value"] == 80.0


async def test_duplicate_investment(post, kpi):
    await post([ev("resource.listed", T0, "r1", grid=G1, category="meal"),
                ev("resource.listed", T0, "r2", grid=G1, category="meal"),
                ev("resource.listed", T0, "r3", grid=G2, category="meal"),
                ev("resource.listed", T0, "r4", grid=G1, category="bath"),
                ev("resource.listed", T0, "r5", grid=G1, category="bath"),
                ev("resource.withdrawn", T0 + H, "r5", grid=G1)])
    k = await kpi("duplicate_investment")
    assert (k["numerator"], k["denominator"], k["value"]) == (2.0, 4.0, 50.0)


async def test_elderly_usage(post, kpi):
    people = [ev("person.registered", T0, f"p{i}", age_band=band) for i, band in enumerate(["70+", "80+", "60+", "30+"])]
    people.append(ev("person.registered", T0, "p9", age=66, age_band="60+"))
    usage = request_flow("r1", T0, requester_id="p0", requester_age=72)
    usage += request_flow("r2", T0 + H, requester_id="p0", requester_age=72)
    usage += request_flow("r3", T0, requester_id="p2", requester_age=61)
    await post(people + usage)
    k = await kpi("elderly_usage")
    assert (k["numerator"], k["denominator"], k["value"]) == (1.0, 3.0, round(100 / 3, 2))


async def test_volunteer_ratio_and_hours(post, kpi):
    events = [ev("person.registered", T0, f"p{i}", age_band="30+") for i in range(10)]
    events += [ev("volunteer.registered", T0, "v1", person_id="p1"), ev("volunteer.registered", T0, "v2", person_id="p2")]
    events += [ev("volunteer.hours_offered", T0, None, minutes=600), ev("volunteer.hours_offered", T0, None, minutes=400)]
    events += [ev("ledger.posted", T0 + H, "post1", grid=None, community=C1, kind="credit", unit="minute",
                  entries=[{"account_id": "issuance", "amount": -450}, {"account_id": "v1", "amount": 450}]),
               ev("ledger.posted", T0 + H, "post2", grid=None, community=C1, kind="redemption", unit="minute",
                  entries=[{"account_id": "v1", "amount": -60}, {"account_id": "shop", "amount": 60}])]
    await post(events)
    assert (await kpi("volunteer_ratio"))["value"] == 20.0
    h = await kpi("volunteer_hour_utilisation")
    assert (h["numerator"], h["denominator"], h["value"]) == (450.0, 1000.0, 45.0)


async def test_participation_rate(post, kpi):
    events = [ev("person.registered", T0, f"p{i}", age_band="40+") for i in range(4)]
    events += [ev("participation.recorded", T0 + H, None, person_id="p0", activity="议事会"),
               ev("participation.recorded", T0 + 2 * H, None, person_id="p0", activity="志愿服务"),
               ev("participation.recorded", T0 + 2 * H, None, person_id="p3", activity="议事会"),
               ev("participation.recorded", T0 + timedelta(days=40), None, person_id="p1", activity="议事会")]
    await post(events)
    k = await kpi("participation_rate")
    assert (k["numerator"], k["denominator"], k["value"]) == (2.0, 4.0, 50.0)


async def test_resolution_execution_rate_counts_in_the_period_of_the_last_deadline(post, kpi):
    due = (T0 + timedelta(days=10)).isoformat()
    events = [ev("deliberation.resolution_created", T0, "r1", resolution_id="r1", due_at=due, category="env"),
              ev("deliberation.resolution_executed", T0 + 5 * H, "r1", resolution_id="r1", on_time=True),
              ev("deliberation.resolution_created", T0, "r2", resolution_id="r2", due_at=due, category="env"),
              ev("deliberation.resolution_executed", T0 + timedelta(days=12), "r2", resolution_id="r2",
                 on_time=False),
              ev("deliberation.resolution_created", T0, "r3", resolution_id="r3", due_at=due, category="env"),
              # due in April: not in March's figure
              ev("deliberation.resolution_created", T0, "r4", resolution_id="r4",
                 due_at=(T0 + timedelta(days=40)).isoformat(), category="env")]
    await post(events)
    k = await kpi("resolution_execution_rate")
    assert (k["numerator"], k["denominator"]) == (1.0, 3.0)       # r1 on time; r2 late; r3 never executed
    assert (await kpi("resolution_execution_rate", period="2026-04"))["denominator"] == 1.0


async def test_vote_turnout_over_the_votes_closed(post, kpi):
    await post([ev("deliberation.vote_closed", T0 + H, "t1", cast=30, eligible=50),
                ev("deliberation.vote_closed", T0 + 2 * H, "t2", cast=10, eligible=50),
                ev("deliberation.topic_created", T0, "t3")])
    k = await kpi("vote_turnout")
    assert (k["numerator"], k["denominator"], k["value"]) == (40.0, 100.0, 40.0)


async def test_scope_category_and_channel_filters(post, kpi):
    events = request_flow("a", T0, grid=G1, channel="app", steps={"accepted": 2 * H})
    events += request_flow("b", T0, grid=G2, channel="phone", category="health", steps={"accepted": 4 * H})
    events += request_flow("c", T0, grid=G3, channel="app", steps={"accepted": 12 * H})
    await post(events)
    assert (await kpi("response_time"))["value"] == 6.0
    assert (await kpi("response_time", scope="110105"))["value"] == 6.0
    assert (await kpi("response_time", scope=C1))["value"] == 3.0
    assert (await kpi("response_time", scope=G2))["value"] == 4.0
    assert (await kpi("response_time", scope=C2))["value"] == 12.0
    assert (await kpi("response_time", channel="app"))["value"] == 7.0
    assert (await kpi("response_time", category="health"))["value"] == 4.0


async def test_periods_use_shanghai_days_and_trend(post, kpi):
    # 2026-03-31 17:00 UTC is 1 April 01:00 in Shanghai: it belongs to April.
    late = T0.replace(day=31, hour=17)
    events = request_flow("mar", T0, steps={"accepted": 2 * H}) + request_flow("apr", late, steps={"accepted": 4 * H})
    await post(events)
    assert (await kpi("response_time", period="2026-03"))["value"] == 2.0
    assert (await kpi("response_time", period="2026-04"))["value"] == 4.0
    assert (await kpi("response_time", period="2026-Q1"))["value"] == 2.0
    assert (await kpi("response_time", period="2026-W10"))["value"] == 2.0
    k = await kpi("response_time", period="2026-04", trend=3)
    assert [(t["period"], t["value"]) for t in k["trend"]] == [("2026-02", None), ("2026-03", 2.0), ("2026-04", 4.0)]
