"""Guards: every catalogue indicator has a known-events test, and the KPI table (all indicators in a few
grouped queries) gives exactly what each indicator gives on its own, for every scope level and filter."""
from __future__ import annotations

import re
from pathlib import Path

from svc_metrics.kpis.service import catalogue_file
from tests.svc_metrics.conftest import C1, G2
from tests.svc_metrics.test_api import mixed_events


def test_every_indicator_has_a_known_events_test():
    text = "".join(p.read_text(encoding="utf-8") for p in Path(__file__).parent.glob("test_indicators*.py"))
    checked = set(re.findall(r'kpi\("([a-z0-9_]+)"', text))
    codes = {i["code"] for i in catalogue_file()}
    assert codes - checked == set(), "indicators without a test that feeds known events and checks the number"


async def test_table_equals_single_indicators_for_every_scope_and_filter(client, ops, post):
    await post(mixed_events(5))
    for params in ({"scope": "all"}, {"scope": "110105"}, {"scope": "110105001"}, {"scope": C1}, {"scope": G2},
                   {"scope": "all", "category": "dispute"}, {"scope": C1, "channel": "app"},
                   {"scope": "all", "group": "*"}, {"scope": "all", "period": "2026-03-05"},
                   {"scope": "all", "period": "2026-W11"}):
        params = {"period": "2026-Q1", **params}
        table = (await client.get("/metrics/v1/kpis", params=params, headers=ops)).json()["items"]
        assert len(table) == len(catalogue_file())
        for item in table:
            single = (await client.get(f"/metrics/v1/kpis/{item['code']}", params={**params, "trend": 1},
                                       headers=ops)).json()
            for k in ("value", "numerator", "denominator", "count", "status", "target"):
                assert single.get(k) == item.get(k), (params, item["code"], k)


async def test_scope_is_a_prefix_of_the_place_code(client, ops, post):
    from datetime import timedelta

    from tests.svc_metrics.conftest import T0, request_flow

    # 110105001001 (a community) and 110105001010 share the prefix 11010500100 but not the community.
    other = "110105001010"
    await post(request_flow("in", T0, grid=C1 + "003", steps={"accepted": timedelta(hours=2)})
               + request_flow("out", T0, grid=other + "001", steps={"accepted": timedelta(hours=8)}))
    k = (await client.get("/metrics/v1/kpis/response_time", params={"scope": C1, "period": "2026-03"},
                          headers=ops)).json()
    assert (k["count"], k["value"]) == (1, 2.0)
    k = (await client.get("/metrics/v1/kpis/response_time", params={"scope": "110105001", "period": "2026-03"},
                          headers=ops)).json()
    assert (k["count"], k["value"]) == (2, 5.0)
