"""Who may tap: the tap listener's rule, the control plane's own certificate (issued,
renewed, re-anchored after a rotation) and its reserved identity."""

from __future__ import annotations

import doctest
import importlib
import ssl

import pytest
from cryptography import x509

from shoal.control.config import CONTROL_PLANE_IDENTITY, ControlConfig
from shoal.control.errors import Forbidden, InvalidRequest
from shoal.control.identity import Identity
from shoal.control.plane_identity import PlaneIdentity
from shoal.control.registry import DeploymentSpec
from shoal.proxy.config import TAP_CLIENT_ID, ProxyConfig
from shoal.proxy.identity import peer_identity


@pytest.mark.parametrize("name", ["shoal.proxy.taplistener", "shoal.control.tap_api",
                                  "shoal.proxy.admin"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_proxies_expect_the_identity_the_control_plane_has():
    assert TAP_CLIENT_ID == CONTROL_PLANE_IDENTITY
    assert ProxyConfig.parse({}).tap_client_id == CONTROL_PLANE_IDENTITY
    other = "tap.shoal-viz.serviceaccount.identity.shoal.local"
    assert ProxyConfig.parse({"tap_client_id": other}).tap_client_id == other


def test_no_pod_can_get_the_control_plane_identity(tmp_path):
    ids = Identity(ControlConfig(home=tmp_path))
    with pytest.raises(Forbidden, match="control plane"):
        ids.issue_token("shoal", "shoal-control", "x-1")
    with pytest.raises(InvalidRequest, match="reserved for the control plane"):
        DeploymentSpec(namespace="shoal", name="x", command=("app",), port=80,
                       service_account="shoal-control")
    ids.issue_token("shoal", "default", "x-1")  # the namespace itself is fine


def san(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName)


class Clock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_the_control_plane_certificate_is_issued_at_start_and_renewed(tmp_path):
    clock = Clock()
    ids = Identity(ControlConfig(home=tmp_path))
    own = PlaneIdentity(ids, clock=clock)
    first = own.certificate
    assert first is not None and san(first) == [CONTROL_PLANE_IDENTITY]
    first.verify_directly_issued_by(ids.authority.issuer)
    ctx = own.client_context()
    assert ctx is own.client_context()  # cached while nothing changes
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    lifetime = first.not_valid_after_utc.timestamp() - first.not_valid_before_utc.timestamp()
    clock.now = first.not_valid_before_utc.timestamp() + 0.71 * lifetime
    renewed = own.client_context()
    assert renewed is not ctx and own.certificate is not None
    assert own.certificate.serial_number != first.serial_number
    assert own.certificate.public_key() != first.public_key()


def test_a_rotation_keeps_the_certificate_until_it_is_finished(tmp_path):
    ids = Identity(ControlConfig(home=tmp_path))
    own = PlaneIdentity(ids)
    first, ctx = own.certificate, own.client_context()
    assert first is not None
    ids.rotate()
    # both anchors are served: the old certificate stays (proxies that have not yet
    # fetched the new anchor still trust it), the context learns the new anchor
    during = own.client_context()
    assert own.certificate is first and during is not ctx
    ids.finish_rotation()
    own.client_context()
    assert own.certificate is not first and own.certificate is not None
    own.certificate.verify_directly_issued_by(ids.authority.issuer)


def test_the_control_plane_certificate_opens_a_proxy_tap_context(tmp_path):
    """A full handshake in memory: the proxy's tap context verifies the control plane's
    certificate and reads its identity; the control plane verifies the proxy's."""
    from shoal.proxy.identity import make_csr, tap_context

    ids = Identity(ControlConfig(home=tmp_path))
    pod = "web.emojivoto.serviceaccount.identity.shoal.local"
    key, csr = make_csr(pod)
    answer = ids.certify(csr, ids.issue_token("emojivoto", "web", "web-0"))
    server_ctx = tap_context(key, answer["certificate"], answer["chain"],
                             answer["trust_anchors"])
    client_ctx = PlaneIdentity(ids).client_context()
    server, client = handshake(server_ctx, client_ctx, pod)
    assert peer_identity(server.getpeercert()) == CONTROL_PLANE_IDENTITY
    assert peer_identity(client.getpeercert()) == pod
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_ctx, client_ctx, "someone.else.serviceaccount.identity.shoal.local")


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
              name: str) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = set()
    for _ in range(10):
        for side, obj in (("c", client), ("s", server)):
            if side in done:
                continue
            try:
                obj.do_handshake()
                done.add(side)
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if len(done) == 2:
            break
    # TLS 1.3: the server reads the client's certificate with its Finished
    try:
        server.read(1)
    except ssl.SSLWantReadError:
        pass
    return server, client
