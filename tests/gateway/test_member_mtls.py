"""Optional mutual-TLS identity of members: a member with a client-certificate fingerprint on file gets tokens and
makes calls only when presenting that certificate, from the TLS connection itself (uvicorn terminating TLS) or
from a trusted front proxy's header. Certificates are real ones made with `cryptography`."""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import quote

import httpx
import pytest
from common.clock import Clock
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.identity.mtls import fingerprint_pem, normalise_fingerprint, presented_fingerprint
from tests.gateway.conftest import _seed

TRUSTED = [{"client_cert_proxy_trusted": True}]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, issuer_key, issuer_name, key, *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = Clock().now()  # TLS checks validity against real time
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer_name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
         .not_valid_after(now + timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        import ipaddress

        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("OneNet test CA", ca_key, _name("OneNet test CA"), ca_key, ca=True)
    out = SimpleNamespace(dir=d, ca=ca)

    def write(name: str, cert: x509.Certificate, key) -> None:
        (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        setattr(out, name, SimpleNamespace(cert=cert, pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
                                           sha256=cert.fingerprint(hashes.SHA256()).hex(),
                                           certfile=str(d / f"{name}.pem"), keyfile=str(d / f"{name}.key")))

    write("ca", ca, ca_key)
    for name in ("client", "other"):
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, _cert(f"dept-{name}", ca_key, ca.subject, key), key)
    key = ec.generate_private_key(ec.SECP256R1())
    write("server", _cert("127.0.0.1", ca_key, ca.subject, key, server=True), key)
    return out


def test_fingerprints_and_where_they_come_from(pki):
    fp = pki.client.sha256
    assert fingerprint_pem(pki.client.pem) == fp
    colons = ":".join(fp[i:i + 2] for i in range(0, 64, 2)).upper()
    assert normalise_fingerprint(colons) == fp and normalise_fingerprint("sha256:" + fp.upper()) == fp
    assert normalise_fingerprint("abc") is None and normalise_fingerprint(fp + "00") is None
    tls = {"extensions": {"tls": {"client_cert_chain": [pki.client.pem, pki.ca.pem]}}, "headers": []}
    assert presented_fingerprint(tls, trust_proxy=False) == fp
    hdr = {"headers": [(b"x-ssl-client-sha256", colons.encode())]}
    assert presented_fingerprint(hdr, trust_proxy=True) == fp
    assert presented_fingerprint(hdr, trust_proxy=False) is None  # an untrusted header is ignored
    escaped = {"headers": [(b"x-ssl-client-cert", quote(pki.client.pem).encode())]}
    assert presented_fingerprint(escaped, trust_proxy=True) == fp


async def _token(x, code: str, secret: str, **headers) -> httpx.Response:
    return await x.client.post("/auth/v1/token", headers=headers, data={
        "grant_type": "client_credentials", "client_id": code, "client_secret": secret})


@pytest.mark.parametrize("exchange", TRUSTED, indirect=True)
async def test_a_pinned_member_needs_its_certificate_for_tokens_and_calls(exchange, pki):
    x = exchange
    ops = x.h("ops-console", role="ops")
    r = await x.client.post("/exchange/v1/members", headers=ops, json={
        "code": "dept-weijian", "name": "区卫健委", "kind": "department", "role": "dept_staff",
        "client_cert_pem": pki.client.pem})
    assert r.status_code == 201, r.text
    assert r.json()["member"]["client_cert_sha256"] == pki.client.sha256
    secret = r.json()["client_secret"]

    r = await _token(x, "dept-weijian", secret)  # no certificate
    assert r.status_code == 401 and r.json()["code"] == "member.client_cert_required"
    assert r.headers["content-type"].startswith("application/problem+json") and "客户端证书" in r.json()["detail"]
    r = await _token(x, "dept-weijian", secret, **{"X-SSL-Client-SHA256": pki.other.sha256})
    assert r.status_code == 401 and r.json()["code"] == "member.client_cert_mismatch"
    assert "不一致" in r.json()["detail"]
    r = await _token(x, "dept-weijian", "wrong", **{"X-SSL-Client-SHA256": pki.client.sha256})
    assert r.status_code == 401 and r.json()["code"] == "invalid_client"  # the secret is still checked first
    r = await _token(x, "dept-weijian", secret, **{"X-Client-Cert-Fingerprint": pki.client.sha256})
    assert r.status_code == 200, r.text
    bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}

    # calls with that token: the gateway's own operations and forwarded ones
    cert = {"X-Client-Cert-Fingerprint": pki.client.sha256}
    for method, url, body in (("GET", "/exchange/v1/catalogue", None),
                              ("POST", "/departments/weijian/v1/queries", {"id_number": "110105194703210823"})):
        r = await x.client.request(method, url, headers=bearer, json=body)
        assert r.status_code == 401 and r.json()["code"] == "member.client_cert_required", (url, r.text)
        r = await x.client.request(method, url, headers={**bearer, "X-SSL-Client-SHA256": pki.other.sha256},
                                   json=body)
        assert r.status_code == 401 and r.json()["code"] == "member.client_cert_mismatch", url
        r = await x.client.request(method, url, headers={**bearer, **cert}, json=body)
        assert r.status_code == 200, (url, r.text)
    # in English on request
    r = await x.client.get("/exchange/v1/catalogue", headers={**bearer, "Accept-Language": "en"})
    assert r.status_code == 401 and "client certificate" in r.json()["detail"]

    # ops removes the requirement (takes effect at once), or sets another certificate
    r = await x.client.patch("/exchange/v1/members/dept-weijian", headers=ops, json={"client_cert_sha256": None})
    assert r.status_code == 200 and r.json()["client_cert_sha256"] is None
    assert (await x.client.get("/exchange/v1/catalogue", headers=bearer)).status_code == 200
    colons = ":".join(pki.other.sha256[i:i + 2] for i in range(0, 64, 2))
    r = await x.client.patch("/exchange/v1/members/dept-weijian", headers=ops, json={"client_cert_sha256": colons})
    assert r.status_code == 200 and r.json()["client_cert_sha256"] == pki.other.sha256
    assert (await x.client.get("/exchange/v1/catalogue", headers={**bearer, **cert})).status_code == 401
    # and it is stored (the other replicas re-read it from the database)
    members = (await x.client.get("/exchange/v1/members", headers=ops)).json()
    assert next(m for m in members if m["code"] == "dept-weijian")["client_cert_sha256"] == pki.other.sha256


@pytest.mark.parametrize("exchange", TRUSTED, indirect=True)
async def test_bad_fingerprints_and_unknown_members_are_problems(exchange, pki):
    x = exchange
    ops = x.h("ops-console", role="ops")
    r = await x.client.patch("/exchange/v1/members/dept-renshe", headers=ops, json={"client_cert_sha256": "abc"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].endswith("client_cert_sha256")
    r = await x.client.patch("/exchange/v1/members/dept-renshe", headers=ops,
                             json={"client_cert_pem": "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----"})
    assert r.status_code == 422
    r = await x.client.patch("/exchange/v1/members/nobody", headers=ops, json={"client_cert_sha256": pki.client.sha256})
    assert r.status_code == 404
    r = await x.client.patch("/exchange/v1/members/dept-renshe", headers=x.h("dept-renshe"),
                             json={"client_cert_sha256": None})
    assert r.status_code == 403  # only ops


async def test_proxy_headers_are_ignored_unless_the_proxy_is_trusted(exchange, pki):
    x = exchange
    ops = x.h("ops-console", role="ops")
    r = await x.client.patch("/exchange/v1/members/dept-renshe", headers=ops, json={"client_cert_sha256": pki.client.sha256})
    assert r.status_code == 200, r.text
    h = x.h("dept-renshe", **{"X-SSL-Client-SHA256": pki.client.sha256})
    r = await x.client.post("/departments/renshe/v1/queries", json={"id_number": "110105194703210823"}, headers=h)
    assert r.status_code == 401 and r.json()["code"] == "member.client_cert_required"
    # other members are not affected
    r = await x.client.get("/exchange/v1/catalogue", headers=x.h("community-xf"))
    assert r.status_code == 200


# ---- uvicorn terminating TLS itself ------------------------------------------------------------------------

async def test_uvicorn_terminating_tls_passes_the_peer_certificate(db_url, gateway_keys_dir, sqlite_template, pki):
    from gateway.app import create_app
    from gateway.identity.mtls import TLSH11Protocol
    from gateway.identity.tokens import hash_secret
    from gateway.members.models import Member
    from gateway.settings import GatewaySettings
    from tests.gateway.conftest import START

    if not db_url.startswith("sqlite"):
        pytest.skip("the TLS handshake is what is tested here; one database is enough")
    shutil.copy(sqlite_template, db_url.split("///", 1)[1])
    settings = GatewaySettings(database_url=db_url, keys_dir=gateway_keys_dir, outbox_relay_enabled=False,
                               catalogue_from_openapi=False)
    gw = create_app(settings)
    await _seed(gw)
    async with gw.state.db.session() as s, s.begin():
        s.add(Member(code="dept-tls", name="双向 TLS 部门", kind="department", role="dept_staff", scopes=[],
                     secret_hash=hash_secret("tls-secret"), status="active", created_at=START,
                     client_cert_sha256=pki.client.sha256))
    server = uvicorn.Server(uvicorn.Config(
        gw, host="127.0.0.1", port=0, log_level="warning", lifespan="on", http=TLSH11Protocol,
        ssl_certfile=pki.server.certfile, ssl_keyfile=pki.server.keyfile, ssl_ca_certs=pki.ca.certfile,
        ssl_cert_reqs=ssl.CERT_OPTIONAL, timeout_graceful_shutdown=5))
    server.capture_signals = contextlib.nullcontext
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or serving.done():
                break
            await asyncio.sleep(0.01)
        assert server.started
        base = f"https://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        form = {"grant_type": "client_credentials", "client_id": "dept-tls", "client_secret": "tls-secret"}

        def context(name: str | None) -> ssl.SSLContext:
            ctx = ssl.create_default_context(cafile=pki.ca.certfile)
            if name:
                ctx.load_cert_chain(getattr(pki, name).certfile, getattr(pki, name).keyfile)
            return ctx

        async with httpx.AsyncClient(base_url=base, verify=context("client")) as c:
            r = await c.post("/auth/v1/token", data=form)
            assert r.status_code == 200, r.text
            token = r.json()["access_token"]
            r = await c.get("/exchange/v1/catalogue", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
        async with httpx.AsyncClient(base_url=base, verify=context("other")) as c:  # the CA's, but not its own
            r = await c.post("/auth/v1/token", data=form)
            assert r.status_code == 401 and r.json()["code"] == "member.client_cert_mismatch"
            r = await c.get("/exchange/v1/catalogue", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401 and r.json()["code"] == "member.client_cert_mismatch"
        async with httpx.AsyncClient(base_url=base, verify=context(None)) as c:  # no client certificate
            r = await c.post("/auth/v1/token", data=form)
            assert r.status_code == 401 and r.json()["code"] == "member.client_cert_required"
            # a forged proxy header changes nothing: the proxy is not trusted here
            r = await c.post("/auth/v1/token", data=form, headers={"X-SSL-Client-SHA256": pki.client.sha256})
            assert r.status_code == 401
    finally:
        server.should_exit = True
        await serving
