"""/metrics is the scraper's (issue 23, finding 8): only the bearer token it was given (ONENET_METRICS_TOKEN)
reads it, nobody when no token is configured; and a path no route matches is counted under one route label, so
made-up paths cannot grow the label set."""
from __future__ import annotations

import re

from tests.conftest import METRICS_AUTH


def _unmatched_count(page: str, service: str) -> float:
    total = 0.0
    for line in page.splitlines():
        if line.startswith("onenet_http_requests_total{") and f'service="{service}"' in line \
                and 'route="unmatched"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_answer_the_scrapers_token_only(service_client):
    client = await service_client("svc_residents")
    for headers in ({}, {"Authorization": "Bearer not-the-metrics-token"}, {"Authorization": "Basic eDp5"},
                    {"Authorization": METRICS_AUTH["Authorization"].removeprefix("Bearer ")}):
        r = await client.get("/metrics", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "metrics.unauthenticated" and r.headers["www-authenticate"].startswith("Bearer")
        assert "onenet_http_requests_total" not in r.text
    r = await client.get("/metrics", headers=METRICS_AUTH)
    assert r.status_code == 200 and "onenet_http_requests_total" in r.text


async def test_without_a_metrics_token_nobody_reads_metrics(service_client):
    client = await service_client("svc_residents", metrics_token=None)
    for headers in ({}, METRICS_AUTH):
        r = await client.get("/metrics", headers=headers)
        assert r.status_code == 403 and r.json()["code"] == "metrics.disabled", r.text
    assert (await client.get("/healthz")).status_code == 200


async def test_unmatched_paths_share_one_route_label(service_client):
    client = await service_client("svc_residents")
    before = _unmatched_count((await client.get("/metrics", headers=METRICS_AUTH)).text, "svc_residents")
    # unknown paths, refused ahead of routing (401) or not found (404), and paths a trailing slash sets apart
    paths = ([f"/probe-{n}/x" for n in range(15)] + [f"/residents/v1/nothing-{n}" for n in range(5)]
             + ["/healthz/", "/readyz/", "/residents/v1/places/"])
    for path in paths:
        assert (await client.get(path)).status_code in (307, 401, 404)
    page = (await client.get("/metrics", headers=METRICS_AUTH)).text
    # label values end in a quote: `places/"` is the made-up path, not the real route `/residents/v1/places/{code}`
    # that other tests in this process may have hit (the registry is the process's)
    assert not re.search(r'probe-\d|nothing-\d|places/"|healthz/"|readyz/"', page), "a made-up path became a label"
    assert _unmatched_count(page, "svc_residents") == before + len(paths)
