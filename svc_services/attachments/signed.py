"""Signed, expiring URLs for request photos in Open311's public documents (`media_url`, issue 27).

Open311 reads are public, so a photo is named there only where the public may see it (`open311.service.
photo_public`: a public matter whose text staff published), and the URL is minted here, by the service that owns
the photo: `/open311/v2/media/{id}.jpg?expires=…&signature=…`, an HMAC (the service's keyed digest,
`common.crypto.BlindIndex`, under its own domain) over the attachment id and the expiry, good for the setting
`media_url_ttl_seconds` (900 s by default) from the injected clock. Serving it checks the signature, the expiry, and the rule again
(a withdrawn publication stops every URL already handed out); anything else answers as an unknown photo.
"""
from __future__ import annotations

import hmac
from datetime import datetime

from common.crypto import FieldProtection
from svc_services.settings import ServicesSettings

MEDIA_URL_TTL_SECONDS = ServicesSettings.model_fields["media_url_ttl_seconds"].default
MEDIA_PATH = "/open311/v2/media/{}.jpg"
_DOMAIN = "open311.media_url"


def signature(protection: FieldProtection, attachment_id: str, expires: int) -> str:
    return protection.blind_index.digest(f"{attachment_id}:{expires}", domain=_DOMAIN).lower()


def expiry(now: datetime, ttl: int = MEDIA_URL_TTL_SECONDS) -> int:
    """Rounded up to the next whole `ttl / 3` so that reads within that window mint the same URL (caches)."""
    step = max(ttl // 3, 1)
    at = int(now.timestamp()) + ttl
    return at + (-at % step)


def signed_url(base: str, protection: FieldProtection, attachment_id: str, now: datetime,
               ttl: int = MEDIA_URL_TTL_SECONDS) -> str:
    expires = expiry(now, ttl)
    return (f"{base.rstrip('/')}{MEDIA_PATH.format(attachment_id)}?expires={expires}"
            f"&signature={signature(protection, attachment_id, expires)}")


def valid(protection: FieldProtection, attachment_id: str, expires: int, given: str, now: datetime) -> bool:
    """The signature is the service's for this photo and expiry (compared in constant time), and not expired."""
    good = hmac.compare_digest(signature(protection, attachment_id, expires), given.lower())
    return good and now.timestamp() < expires
