"""The client's address the gateway keys its per-address limits by (request.client.host: the SMS codes a source may
ask for, sign-in back-off), served as deploy/ serves it: uvicorn trusting X-Forwarded-For from loopback only
(deploy.services.FORWARDED_ALLOW_IPS, where its edge connects from), real nginx in front overwriting the header
with the address it saw, or, behind a proxy listed in `edge_trusted_proxies` (an ingress), taking the address that
proxy forwarded. A client talking to the gateway directly, or to the edge, cannot choose its address by sending
X-Forwarded-For. Clients connect from other loopback addresses (127.0.0.2, 127.0.0.3) so that they are not the
trusted loopback peer."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from deploy.services import FORWARDED_ALLOW_IPS
from gateway.settings import GatewaySettings
from tests.gateway.conftest import EdgeOrNot, START, _seed, fresh_gateway_db_and_emulators, serve_in_process

CLIENT, INGRESS = "127.0.0.2", "127.0.0.3"
SPOOF = {"X-Forwarded-For": "198.51.100.7", "X-Real-IP": "198.51.100.7"}


def test_the_edge_takes_forwarded_addresses_only_from_listed_proxies():
    from gateway.edge.config import _real_ip

    assert "set_real_ip_from" not in _real_ip(GatewaySettings())
    conf = _real_ip(GatewaySettings(edge_trusted_proxies=["10.42.0.0/16", "fd00::1"]))
    assert conf.split() == [
        "set_real_ip_from",
        "10.42.0.0/16;",
        "set_real_ip_from",
        "fd00::1/128;",
        "real_ip_header",
        "X-Forwarded-For;",
        "real_ip_recursive",
        "on;",
    ]
    with pytest.raises(ValueError):  # written into nginx's configuration: an address or network, nothing else
        GatewaySettings(edge_trusted_proxies=["10.0.0.0/8; allow all"])


@pytest.fixture
async def served(db_url, tmp_path, gateway_keys_dir, sqlite_template):
    from gateway.app import create_app
    from common.clock import FrozenClock

    front = EdgeOrNot("edge", db_url, tmp_path)  # skipped on PostgreSQL: addresses do not touch the database
    emulators = await fresh_gateway_db_and_emulators(db_url, sqlite_template, gateway_keys_dir)
    emulators.state.sms.test_reads = True
    servers = []
    try:
        emu = await serve_in_process(emulators)
        servers.append(emu)
        settings = GatewaySettings(
            database_url=db_url,
            keys_dir=gateway_keys_dir,
            outbox_relay_enabled=False,
            catalogue_from_openapi=False,
            upstream_departments=f"http://127.0.0.1:{emu[2]}",
            upstream_retries=0,
            field_keys_file=tmp_path / "f.json",
            sms_resend_seconds=0,
            sms_source_per_hour=2,
            edge_trusted_proxies=[INGRESS],
            **front.settings_extra,
        )
        gw = create_app(settings, clock=FrozenClock(START))
        await _seed(gw)
        served_gw = await serve_in_process(gw, proxy_headers=True, forwarded_allow_ips=FORWARDED_ALLOW_IPS)
        servers.insert(0, served_gw)
        edge_port = await front.front(settings, gw, served_gw[2])

        def client(port: int, source: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                timeout=10,
                transport=httpx.AsyncHTTPTransport(local_address=source),
            )

        yield gw, client, served_gw[2], edge_port
    finally:
        await front.stop()
        for server, serving, _ in servers:
            server.should_exit = True
            await serving


async def _ask(c: httpx.AsyncClient, phone: str, **headers) -> httpx.Response:
    return await c.post("/auth/v1/phone/codes", json={"phone": phone}, headers=headers)


async def _sources(gw) -> list[str]:
    from gateway.accounts.models import SmsChallenge

    async with gw.state.db.session() as s:
        return list(
            (await s.execute(select(SmsChallenge.source).order_by(SmsChallenge.created_at, SmsChallenge.id))).scalars()
        )


async def test_a_client_cannot_choose_its_address_and_an_ingress_passes_the_real_one(served):
    gw, client, gw_port, edge_port = served
    async with (
        client(gw_port, CLIENT) as direct,
        client(edge_port, CLIENT) as edge,
        client(edge_port, INGRESS) as ingress,
    ):
        # straight to the gateway (not its edge's loopback): the connection's address, the header ignored
        r = await _ask(direct, "13900000001", **SPOOF)
        assert r.status_code == 202, r.text
        assert await _sources(gw) == [CLIENT]
        # through the edge: it overwrites the header with the address it saw
        r = await _ask(edge, "13900000002", **SPOOF)
        assert r.status_code == 202, r.text
        assert await _sources(gw) == [CLIENT, CLIENT]
        # that address's limit (2 an hour) holds whatever address the client claims
        for c, spoof in ((edge, "198.51.100.8"), (direct, "198.51.100.9")):
            r = await _ask(c, "13900000003", **{"X-Forwarded-For": spoof})
            assert r.status_code == 429 and r.json()["code"] == "phone.too_many_from_source", r.text
            assert "网络地址" in r.json()["detail"]
        # behind a listed proxy (an ingress): the client it forwarded, the rightmost address not its own, even
        # when that client put an address of its choosing in front
        r = await _ask(ingress, "13900000004", **{"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
        assert r.status_code == 202, r.text
        r = await _ask(ingress, "13900000005", **{"X-Forwarded-For": f"203.0.113.10, {INGRESS}"})
        assert r.status_code == 202, r.text
        assert (await _sources(gw))[2:] == ["203.0.113.9", "203.0.113.10"]
