"""The signed media_url's lifetime is a setting (`media_url_ttl_seconds`, 900 s by default): a URL minted under a
shorter one is good until its expiry by the injected clock and refused after; a lifetime out of range is refused
at start-up."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from common.crypto import FieldProtection, generate_key
from svc_services.attachments.signed import MEDIA_URL_TTL_SECONDS, valid
from svc_services.open311.router import Media
from svc_services.settings import ServicesSettings

PROTECTION = FieldProtection.from_env_spec(f"k1:{generate_key()}", "k1", generate_key())
NOW = datetime(2028, 2, 29, 23, 56, 30, tzinfo=UTC)


def minted(settings: ServicesSettings, now: datetime) -> tuple[int, str]:
    q = parse_qs(urlsplit(Media(settings, PROTECTION, now).url("att1")).query)
    return int(q["expires"][0]), q["signature"][0]


def test_the_lifetime_is_the_setting():
    assert ServicesSettings().media_url_ttl_seconds == MEDIA_URL_TTL_SECONDS == 900
    short = ServicesSettings(media_url_ttl_seconds=120, gateway_url="https://onenet.example.gov.cn")
    expires, sig = minted(short, NOW)
    assert 120 <= expires - NOW.timestamp() < 120 + 40           # rounded up to a third of the lifetime
    assert valid(PROTECTION, "att1", expires, sig, NOW + timedelta(seconds=119))
    assert not valid(PROTECTION, "att1", expires, sig, NOW + timedelta(seconds=161))
    default_expires, _ = minted(ServicesSettings(gateway_url="https://onenet.example.gov.cn"), NOW)
    assert 900 <= default_expires - NOW.timestamp() < 900 + 300


@pytest.mark.parametrize("ttl", [0, 59, 7 * 86400 + 1])
def test_a_lifetime_out_of_range_is_refused(ttl):
    with pytest.raises(ValidationError, match="media_url_ttl_seconds"):
        ServicesSettings(media_url_ttl_seconds=ttl)
