"""Optional mutual-TLS identity of members (成员单位双向 TLS 身份).

A member may have the SHA-256 fingerprint of its client certificate on file (`members.client_cert_sha256`, set by
ops). Such a member's token requests and every call made with its tokens must then present that certificate;
one missing or different is a 401 problem. Members without a fingerprint are not affected (secret + token only).

Where the presented certificate comes from, in this order:
1. the TLS connection itself, when the gateway's own server terminates TLS and reports the peer certificate in
   the ASGI TLS extension (`scope["extensions"]["tls"]["client_cert_chain"]`, PEM, leaf first). Uvicorn does
   not fill that extension itself; run it with one of the protocol classes below, which add it from the
   connection's SSL object: `uvicorn gateway.app:create_app --factory --ssl-keyfile … --ssl-certfile … --ssl-ca-certs ca.pem
   --ssl-cert-reqs 1 --http gateway.identity.mtls:TLSHttpToolsProtocol` (or `:TLSH11Protocol`). A certificate
   that does not chain to `--ssl-ca-certs` never gets that far: the handshake fails.
2. a front proxy that terminated TLS (nginx, an ingress controller), but only when the settings say the proxy is
   trusted (`ONENET_CLIENT_CERT_PROXY_TRUSTED=true`; otherwise any client could simply send the header): the
   fingerprint in `X-Client-Cert-Fingerprint` or `X-SSL-Client-SHA256` (hex, colons and a `sha256:` prefix
   allowed), or the URL-encoded PEM in `X-SSL-Client-Cert` / `X-Client-Cert` (nginx `$ssl_client_escaped_cert`).
   The proxy must overwrite these headers on every request. The gateway never forwards them upstream.

The fingerprints on file are kept in memory (`CertificatePins`), changed at once on this replica when ops sets
one and re-read with the revocation list every couple of seconds, so other replicas follow.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import ssl
from typing import Any, Iterable
from urllib.parse import unquote

from common.errors import Problem

FINGERPRINT_HEADERS = ("x-client-cert-fingerprint", "x-ssl-client-sha256")
PEM_HEADERS = ("x-ssl-client-cert", "x-client-cert")
PROXY_HEADERS = FINGERPRINT_HEADERS + PEM_HEADERS
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def normalise_fingerprint(value: str | None) -> str | None:
    """`AB:CD:…`, `sha256:abcd…`, `abcd…` → 64 lower-case hex digits; None when it is not a SHA-256 fingerprint."""
    if not value:
        return None
    v = value.strip().lower()
    for prefix in ("sha256:", "sha256=", "sha-256:"):
        if v.startswith(prefix):
            v = v[len(prefix):]
    v = v.replace(":", "").replace(" ", "")
    return v if _HEX64.match(v) else None


def fingerprint_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def fingerprint_pem(pem: str | bytes) -> str | None:
    """The SHA-256 fingerprint of the first certificate in a PEM text; None when there is none."""
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    start = text.find("-----BEGIN CERTIFICATE-----")
    end = text.find("-----END CERTIFICATE-----", start)
    if start < 0 or end < 0:
        return None
    try:
        return fingerprint_der(ssl.PEM_cert_to_DER_cert(text[start:end + len("-----END CERTIFICATE-----")] + "\n"))
    except ValueError:
        return None


def _header(scope: dict, names: Iterable[str]) -> str | None:
    wanted = {n.encode() for n in names}
    for k, v in scope.get("headers") or ():
        if k.lower() in wanted and v.strip():
            return v.decode("latin-1")
    return None


def presented_fingerprint(scope: dict, *, trust_proxy: bool) -> str | None:
    """The fingerprint of the client certificate this request presents, or None."""
    tls = (scope.get("extensions") or {}).get("tls")
    if isinstance(tls, dict):
        chain = tls.get("client_cert_chain") or ()
        if chain:
            fp = fingerprint_pem(chain[0])
            if fp:
                return fp
    if not trust_proxy:
        return None
    fp = _header(scope, FINGERPRINT_HEADERS)
    if fp is not None:
        return normalise_fingerprint(fp)
    pem = _header(scope, PEM_HEADERS)
    if pem is not None:
        return fingerprint_pem(unquote(pem).replace("\t", "\n"))
    return None


class CertificatePins:
    """member code → the client-certificate fingerprint on file (only members that have one)."""

    def __init__(self, *, trust_proxy: bool = False) -> None:
        self.trust_proxy = trust_proxy
        self.pins: dict[str, str] = {}
        self.generation = 0

    def load(self, rows: Iterable[tuple[str, str | None]]) -> None:
        self.pins = {code: fp for code, fp in rows if fp}

    def set(self, member: str, fingerprint: str | None) -> None:
        if fingerprint:
            self.pins[member] = fingerprint
        else:
            self.pins.pop(member, None)
        self.generation += 1

    def check(self, member: str, scope: dict, *, token_request: bool = False) -> None:
        """Raises a 401 problem when `member` has a fingerprint on file and the request does not present it."""
        want = self.pins.get(member)
        if want is None:
            return
        self.require(want, scope, token_request=token_request)

    def require(self, want: str, scope: dict, *, token_request: bool = False) -> None:
        got = presented_fingerprint(scope, trust_proxy=self.trust_proxy)
        extra: dict[str, Any] = {"error": "invalid_client"} if token_request else {}
        if got is None:
            raise Problem(401, "member.client_cert_required",
                          ("该成员单位须出示登记的客户端证书（双向 TLS）", "This member must present its registered "
                           "client certificate (mutual TLS)"), extra=extra)
        if not hmac.compare_digest(got, want):
            raise Problem(401, "member.client_cert_mismatch",
                          ("客户端证书与该成员单位登记的证书不一致", "The client certificate does not match the one "
                           "registered for this member"), extra=extra)


# ---- uvicorn: put the peer certificate into the ASGI TLS extension ------------------------------------------

def _tls_extension(transport) -> dict | None:
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    # the ASGI TLS extension's keys; only the client certificate is used here
    return {"server_cert": None, "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None, "client_cert_error": None, "tls_version": None, "cipher_suite": None}


def _with_tls(protocol_cls):
    class WithTLS(protocol_cls):  # type: ignore[misc, valid-type]
        """Per connection: wraps the app so each request's scope carries the peer certificate."""

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            ext = _tls_extension(transport)
            if ext is None:
                return
            inner = self.app

            async def app(scope, receive, send):
                if scope.get("type") in ("http", "websocket"):
                    scope.setdefault("extensions", {})["tls"] = ext
                await inner(scope, receive, send)

            self.app = app

    WithTLS.__name__ = WithTLS.__qualname__ = f"TLS{protocol_cls.__name__}"
    return WithTLS


def _protocols():
    from uvicorn.protocols.http.h11_impl import H11Protocol

    out = {"TLSH11Protocol": _with_tls(H11Protocol)}
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools not installed
        out["TLSHttpToolsProtocol"] = out["TLSH11Protocol"]
    else:
        out["TLSHttpToolsProtocol"] = _with_tls(HttpToolsProtocol)
    return out


def __getattr__(name: str):
    # built on first use, so importing this module does not import uvicorn's protocol stack
    if name in ("TLSH11Protocol", "TLSHttpToolsProtocol"):
        globals().update(_protocols())
        return globals()[name]
    raise AttributeError(name)
