"""Proxy identity: CSR, TLS contexts that verify the peer, SNI parsing, and picking up
a rotated trust anchor without a new certificate. Handshakes run over memory BIOs."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from cryptography import x509

from shoal.control.ca import cert_pem, new_anchor, new_issuer, sign_leaf
from shoal.proxy.identity import Identity, contexts, make_csr, peer_identity
from shoal.proxy.tls import client_hello_sni

A = "web.shop.serviceaccount.identity.shoal.local"
B = "cart.shop.serviceaccount.identity.shoal.local"
DAY = 86400.0


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, name: str) -> str:
    """Run a TLS handshake in memory; the server's view of the client identity."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=name)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for obj in (c, s):
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        try:
            c.do_handshake()
            s.do_handshake()
            c.write(b"x")
            s_in.write(c_out.read())
            s.read(1)
            return peer_identity(s.getpeercert())
        except ssl.SSLWantReadError:
            continue
    raise AssertionError("handshake did not finish")


class Issuer:
    def __init__(self, index: int) -> None:
        self.anchor, self.anchor_key = new_anchor(365 * DAY, index)
        self.issuer, self.issuer_key = new_issuer(self.anchor, self.anchor_key, 30 * DAY)

    def certify(self, name: str, anchors: list[str]):  # type: ignore[no-untyped-def]
        key, csr_pem = make_csr(name)
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        assert csr.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [name]
        leaf = sign_leaf(csr, name, self.issuer, self.issuer_key, DAY)
        return key, {"certificate": cert_pem(leaf), "chain": [cert_pem(self.issuer)],
                     "trust_anchors": anchors, "expiry": 0}

    def tls_contexts(self, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        """A proxy's (server, client) contexts for ``name``, trusting this anchor only."""
        anchors = [cert_pem(self.anchor)]
        key, cert = self.certify(name, anchors)
        return contexts(key, cert["certificate"], cert["chain"], anchors)


def test_mutual_tls_checks_both_identities():
    ca = Issuer(1)
    _, a_client = ca.tls_contexts(A)
    b_server, _ = ca.tls_contexts(B)
    assert handshake(a_client, b_server, B) == A
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(a_client, b_server, "someone.else.serviceaccount.identity.shoal.local")
    _, s_client = Issuer(9).tls_contexts(A)
    with pytest.raises(ssl.SSLError):
        handshake(s_client, b_server, B)


def test_client_hello_sni_is_read_from_real_hello():
    ctx = ssl.create_default_context()
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=B)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = out.read()
    assert client_hello_sni(hello) == B
    assert client_hello_sni(hello[:10]) is False
    assert client_hello_sni(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00") is None


class FakeClient:
    def __init__(self, anchors: list[str]) -> None:
        self.anchors = anchors

    async def request(self, method: str, path: str, *a, **kw):  # type: ignore[no-untyped-def]
        assert (method, path) == ("GET", "/api/v1/identity/trust-anchors")
        return {"trust_anchors": self.anchors}


def test_rotated_anchor_is_trusted_without_a_new_certificate():
    old, new = Issuer(1), Issuer(2)
    both = [cert_pem(old.anchor), cert_pem(new.anchor)]
    ka, a = old.certify(A, [cert_pem(old.anchor)])
    kb, b = new.certify(B, both)  # B was certified after the rotation
    _, b_client = contexts(kb, b["certificate"], b["chain"], both)
    ident = Identity(A, FakeClient(both), "token")  # type: ignore[arg-type]

    async def certify_with(answer, key):  # type: ignore[no-untyped-def]
        import shoal.proxy.identity as mod

        real = mod.make_csr
        mod.make_csr = lambda name: (key, "csr")
        ident.client = FakeAnswer(answer)  # type: ignore[assignment]
        try:
            await ident.certify()
        finally:
            mod.make_csr = real
        ident.client = FakeClient(both)  # type: ignore[assignment]

    asyncio.run(certify_with({**a, "renew_after": 1.0}, ka))
    with pytest.raises(ssl.SSLError):
        handshake(b_client, ident.current.server, A)  # A does not trust B's new anchor yet
    assert asyncio.run(ident.refresh_anchors()) is True
    assert handshake(b_client, ident.current.server, A) == B
    assert asyncio.run(ident.refresh_anchors()) is False  # unchanged: nothing rebuilt


class FakeAnswer:
    def __init__(self, answer: dict) -> None:
        self.answer = answer

    async def request(self, *a, **kw):  # type: ignore[no-untyped-def]
        return self.answer
