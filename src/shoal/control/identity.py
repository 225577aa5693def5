"""Who may get which certificate: bootstrap and renewal tokens, and the certify policy.

Theory of operation: the supervisor of a pod asks for a one-time *bootstrap token*
bound to the pod and its identity (``<sa>.<ns>.serviceaccount.identity.shoal.local``)
and hands it to the proxy with ``--bootstrap-token``. The proxy makes its own key,
sends a CSR with that token and receives a 24 h certificate (which also names the
pod, ``shoal.proxy.identity.pod_uri``) plus a one-time *renewal token*; each renewal
spends the renewal token and returns a new one. Any token issued to a pod, spent or
not, also authenticates the proxy as Bearer for the destination API until the pod is
deleted. Tokens are stored hashed.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shoal.proxy.identity import pod_uri

from .ca import Authority, cert_pem, sign_leaf
from .config import CONTROL_PLANE_IDENTITY, ControlConfig, identity_name
from .errors import Forbidden, InvalidRequest, Unauthorized
from .state import read_json, write_json

BOOTSTRAP_TTL = 3600.0
RENEW_GRACE = 3600.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Identity:
    """``Identity(config)``; ``issue_token(ns, sa, pod)``; ``certify(csr_pem, token)``."""

    def __init__(self, config: ControlConfig, directory: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.directory = directory or config.home / "identity"
        self.clock = clock
        self.authority = Authority.load_or_create(self.directory, config.anchor_lifetime,
                                                  config.issuer_lifetime)
        raw = read_json(self.directory / "tokens.json", {}) or {}
        self.tokens: dict[str, dict[str, Any]] = raw.get("tokens", {})
        self.issued: dict[str, dict[str, Any]] = raw.get("issued", {})

    def _save(self) -> None:
        write_json(self.directory / "tokens.json", {"tokens": self.tokens, "issued": self.issued})

    # -- tokens ------------------------------------------------------------------
    def issue_token(self, namespace: str, service_account: str, pod: str,
                    kind: str = "bootstrap", ttl: float = BOOTSTRAP_TTL) -> str:
        if identity_name(service_account, namespace) == CONTROL_PLANE_IDENTITY:
            raise Forbidden(f"service account {service_account} in namespace {namespace} "
                            "is the control plane's identity; no pod may have it")
        token = secrets.token_urlsafe(24)
        self.tokens[_digest(token)] = {
            "kind": kind, "namespace": namespace, "pod": pod, "used": False,
            "identity": identity_name(service_account, namespace),
            "expires": self.clock() + ttl}
        self._save()
        return token

    def proxy_of(self, token: str) -> dict[str, Any] | None:
        """The record of a token issued to a pod (spent or not), for Bearer auth."""
        return self.tokens.get(_digest(token))

    def revoke_pod(self, namespace: str, pod: str) -> None:
        before = len(self.tokens)
        self.tokens = {k: v for k, v in self.tokens.items()
                       if (v["namespace"], v["pod"]) != (namespace, pod)}
        removed = self.issued.pop(f"{namespace}/{pod}", None)
        if removed is not None or len(self.tokens) != before:
            self._save()

    # -- certify -----------------------------------------------------------------
    def certify(self, csr_pem: str, token: str) -> dict[str, Any]:
        """Check the token and the CSR, then issue; nothing changes when a check fails."""
        record = self.tokens.get(_digest(token))
        if record is None:
            raise Unauthorized("unknown token")
        if record["used"]:
            raise Unauthorized("token already used")
        if record["expires"] < self.clock():
            raise Unauthorized("token expired")
        csr = _parse_csr(csr_pem)
        wanted = record["identity"]
        names = _csr_names(csr)
        if names != {wanted}:
            asked = ", ".join(sorted(names)) or "no name"
            raise Forbidden(f"csr asks for {asked}; this token is for {wanted}")
        cert = sign_leaf(csr, wanted, self.authority.issuer, self.authority.issuer_key,
                         self.config.cert_lifetime, pod_uri(record["namespace"], record["pod"]))
        expiry = cert.not_valid_after_utc.timestamp()
        record["used"] = True
        renew = secrets.token_urlsafe(24)
        self.tokens[_digest(renew)] = {**record, "kind": "renew", "used": False,
                                       "expires": expiry + RENEW_GRACE}
        self.issued[f"{record['namespace']}/{record['pod']}"] = {
            "identity": wanted, "serial": format(cert.serial_number, "x"), "expiry": expiry}
        self._save()
        return {"identity": wanted, "certificate": cert_pem(cert),
                "chain": [cert_pem(self.authority.issuer)],
                "trust_anchors": self.authority.bundle(), "expiry": int(expiry),
                "renew_token": renew, "renew_after": int(self._renew_at(cert))}

    @staticmethod
    def _renew_at(cert: x509.Certificate) -> float:
        start = cert.not_valid_before_utc.timestamp()
        return start + 0.7 * (cert.not_valid_after_utc.timestamp() - start)

    # -- anchors -----------------------------------------------------------------
    def rotate(self) -> dict[str, Any]:
        anchor = self.authority.rotate(self.config.anchor_lifetime, self.config.issuer_lifetime)
        return {"added": anchor.subject.rfc4514_string(), **self.status()}

    def finish_rotation(self) -> dict[str, Any]:
        return {"removed": self.authority.finish_rotation(), **self.status()}

    def status(self) -> dict[str, Any]:
        def describe(cert: x509.Certificate) -> dict[str, Any]:
            return {"subject": cert.subject.rfc4514_string(),
                    "not_after": int(cert.not_valid_after_utc.timestamp()),
                    "not_before": int(cert.not_valid_before_utc.timestamp())}
        return {"trust_anchors": [describe(a) for a in self.authority.anchors],
                "issuer": describe(self.authority.issuer),
                "certificates": [{"pod": k, **v} for k, v in sorted(self.issued.items())]}


def _parse_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except (ValueError, TypeError, UnicodeEncodeError):
        raise InvalidRequest("malformed csr: expected one PEM certificate request") from None
    try:
        valid = csr.is_signature_valid
    except Exception:  # unsupported algorithms raise from deep inside cryptography
        valid = False
    if not valid:
        raise InvalidRequest("csr signature is invalid")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1"):
            raise InvalidRequest("csr key must be ECDSA P-256 or P-384")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise InvalidRequest("csr rsa key must be at least 2048 bits")
    else:
        raise InvalidRequest("csr key must be ECDSA P-256 or RSA")
    return csr


def _csr_names(csr: x509.CertificateSigningRequest) -> set[str]:
    names: set[str] = set()
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names.update(str(n.value) for n in san)
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        raise InvalidRequest("malformed csr: bad extensions") from None
    names.update(str(a.value) for a in csr.subject.get_attributes_for_oid(
        x509.NameOID.COMMON_NAME))
    return names
