"""Identity: bootstrap tokens, the CSR flow, refusals that change nothing, rotation."""

from __future__ import annotations

import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from shoal.control.config import ControlConfig
from shoal.control.errors import Forbidden, InvalidRequest, Unauthorized
from shoal.control.identity import Identity

ID = "default.emojivoto.serviceaccount.identity.shoal.local"


def csr_for(*names: str, key=None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def identity(tmp_path):
    return Identity(ControlConfig(home=tmp_path), tmp_path / "identity")


def verify_chain(leaf_pem: str, chain: list[str], anchors: list[str]) -> None:
    leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
    issuer = x509.load_pem_x509_certificate(chain[0].encode())
    leaf.verify_directly_issued_by(issuer)
    roots = [x509.load_pem_x509_certificate(a.encode()) for a in anchors]
    assert any(_issued_by(issuer, r) for r in roots)


def _issued_by(cert: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, Exception):
        return False
    return True


def test_csr_flow_issues_a_24h_certificate_for_the_token_identity(identity):
    token = identity.issue_token("emojivoto", "default", "emoji-abc-12345")
    answer = identity.certify(csr_for(ID), token)
    cert = x509.load_pem_x509_certificate(answer["certificate"].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [ID]
    # the pod the token was issued to, which the CSR cannot choose
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:shoal:pod:emojivoto:emoji-abc-12345"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 86400 <= lifetime.total_seconds() <= 86400 + 600
    assert answer["expiry"] == int(cert.not_valid_after_utc.timestamp())
    verify_chain(answer["certificate"], answer["chain"], answer["trust_anchors"])
    assert answer["renew_token"] and answer["renew_after"] < answer["expiry"]


def test_renewal_spends_the_renew_token(identity):
    token = identity.issue_token("emojivoto", "default", "emoji-abc-12345")
    first = identity.certify(csr_for(ID), token)
    second = identity.certify(csr_for(ID), first["renew_token"])
    assert second["renew_token"] != first["renew_token"]
    with pytest.raises(Unauthorized, match="already used"):
        identity.certify(csr_for(ID), first["renew_token"])


def test_refusals_change_nothing(identity, tmp_path):
    token = identity.issue_token("emojivoto", "default", "emoji-abc-12345")
    before = (tmp_path / "identity" / "tokens.json").read_bytes()
    other = "default.other.serviceaccount.identity.shoal.local"
    with pytest.raises(Forbidden, match="this token is for " + ID):
        identity.certify(csr_for(other), token)
    with pytest.raises(Forbidden):
        identity.certify(csr_for(ID, other), token)
    with pytest.raises(InvalidRequest, match="malformed csr"):
        identity.certify("-----BEGIN CERTIFICATE REQUEST-----\nnope\n", token)
    with pytest.raises(InvalidRequest, match="malformed csr"):
        identity.certify("\x00" * 10, token)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(InvalidRequest, match="2048"):
        identity.certify(csr_for(ID, key=small), token)
    with pytest.raises(Unauthorized, match="unknown token"):
        identity.certify(csr_for(ID), "guess")
    assert (tmp_path / "identity" / "tokens.json").read_bytes() == before
    assert identity.issued == {}
    identity.certify(csr_for(ID), token)  # the token still works once
    with pytest.raises(Unauthorized, match="already used"):
        identity.certify(csr_for(ID), token)


def test_expired_and_revoked_tokens(identity):
    clock = [1000.0]
    identity.clock = lambda: clock[0]
    token = identity.issue_token("emojivoto", "default", "emoji-abc-12345")
    clock[0] += 7200
    with pytest.raises(Unauthorized, match="expired"):
        identity.certify(csr_for(ID), token)
    assert identity.proxy_of(token) is not None
    identity.revoke_pod("emojivoto", "emoji-abc-12345")
    assert identity.proxy_of(token) is None


def test_keys_are_private_and_material_is_reloaded(identity, tmp_path):
    directory = tmp_path / "identity"
    identity.issue_token("emojivoto", "default", "emoji-abc-12345")
    assert len(list(directory.glob("*.key"))) == 2
    for key in directory.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "tokens.json").stat().st_mode) == 0o600
    again = Identity(ControlConfig(home=tmp_path), directory)
    assert again.authority.bundle() == identity.authority.bundle()
    assert again.authority.issuer == identity.authority.issuer


def test_rotation_serves_both_anchors_then_finishes(identity):
    old_token = identity.issue_token("emojivoto", "default", "emoji-abc-11111")
    old = identity.certify(csr_for(ID), old_token)
    identity.rotate()
    new_token = identity.issue_token("emojivoto", "default", "emoji-abc-22222")
    new = identity.certify(csr_for(ID), new_token)
    assert len(new["trust_anchors"]) == 2
    assert new["chain"] != old["chain"]
    # during the overlap both certificates verify against the served bundle
    verify_chain(old["certificate"], old["chain"], new["trust_anchors"])
    verify_chain(new["certificate"], new["chain"], new["trust_anchors"])
    assert identity.finish_rotation()["removed"] == 1
    assert len(identity.authority.bundle()) == 1
    verify_chain(new["certificate"], new["chain"], identity.authority.bundle())
    with pytest.raises(AssertionError):
        verify_chain(old["certificate"], old["chain"], identity.authority.bundle())
