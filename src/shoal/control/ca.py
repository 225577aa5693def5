"""Trust anchors and the issuer: ECDSA P-256 keys and X.509 certificates.

The anchor (root) signs the issuer (intermediate); the issuer signs proxy
certificates. Rotation adds an anchor and re-issues the issuer under it; the old
anchors stay in the bundle until the rotation is finished, so certificates issued
before and after the rotation are trusted by every proxy during the overlap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import TRUST_DOMAIN
from .errors import StateError
from .state import atomic_write

BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between hosts


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ca_cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
             issuer_key: ec.EllipticCurvePrivateKey, lifetime: float,
             path_length: int | None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = _now()
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE)
               .not_valid_after(now + dt.timedelta(seconds=lifetime))
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                            False, False), True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              False))
    return builder.sign(issuer_key, hashes.SHA256())


def new_anchor(lifetime: float, index: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    return _ca_cert(f"root-{index}.{TRUST_DOMAIN}", key, None, key, lifetime, None), key


def new_issuer(anchor: x509.Certificate, anchor_key: ec.EllipticCurvePrivateKey,
               lifetime: float) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    lifetime = min(lifetime, (anchor.not_valid_after_utc - _now()).total_seconds())
    return _ca_cert(f"issuer.{TRUST_DOMAIN}", key, anchor, anchor_key, lifetime, 0), key


def sign_leaf(csr: x509.CertificateSigningRequest, identity: str, issuer: x509.Certificate,
              issuer_key: ec.EllipticCurvePrivateKey, lifetime: float,
              uri: str = "") -> x509.Certificate:
    """A certificate for ``identity`` (DNS SAN) on the CSR's public key; ``uri``, when
    given, is a second SAN (the pod's, ``shoal.proxy.identity.pod_uri``)."""
    names: list[x509.GeneralName] = [x509.DNSName(identity)]
    if uri:
        names.append(x509.UniformResourceIdentifier(uri))
    now = _now()
    not_after = min(now + dt.timedelta(seconds=lifetime), issuer.not_valid_after_utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
            .issuer_name(issuer.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(names), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False,
                                         False, False), True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), False)
            .sign(issuer_key, hashes.SHA256()))


@dataclass
class Authority:
    """The CA material of one $SHOAL_HOME: ``Authority.load_or_create(dir, ...)``."""

    directory: Path
    anchors: list[x509.Certificate]
    issuer: x509.Certificate
    issuer_key: ec.EllipticCurvePrivateKey

    @classmethod
    def load_or_create(cls, directory: Path, anchor_lifetime: float,
                       issuer_lifetime: float) -> Authority:
        bundle = directory / "anchors.pem"
        if not bundle.exists():
            anchor, key = new_anchor(anchor_lifetime, 1)
            issuer, issuer_key = new_issuer(anchor, key, issuer_lifetime)
            atomic_write(directory / "anchor-1.key", key_pem(key))
            cls._save(directory, [anchor], issuer, issuer_key)
        try:
            anchors = x509.load_pem_x509_certificates(bundle.read_bytes())
            issuer = x509.load_pem_x509_certificate((directory / "issuer.crt").read_bytes())
            loaded = serialization.load_pem_private_key(
                (directory / "issuer.key").read_bytes(), None)
        except (OSError, ValueError) as e:
            raise StateError(f"cannot load identity material: {e}") from e
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise StateError("issuer key is not an ECDSA key")
        return cls(directory, anchors, issuer, loaded)

    @staticmethod
    def _save(directory: Path, anchors: list[x509.Certificate], issuer: x509.Certificate,
              issuer_key: ec.EllipticCurvePrivateKey) -> None:
        # key first: a crash in between leaves a key without its cert, which is regenerated
        atomic_write(directory / "issuer.key", key_pem(issuer_key))
        atomic_write(directory / "issuer.crt", cert_pem(issuer).encode(), 0o644)
        atomic_write(directory / "anchors.pem",
                     "".join(cert_pem(a) for a in anchors).encode(), 0o644)

    def rotate(self, anchor_lifetime: float, issuer_lifetime: float) -> x509.Certificate:
        """Introduce a new anchor and an issuer under it; the old anchors stay trusted."""
        index = len(self.anchors) + 1
        while (self.directory / f"anchor-{index}.key").exists():
            index += 1
        anchor, key = new_anchor(anchor_lifetime, index)
        issuer, issuer_key = new_issuer(anchor, key, issuer_lifetime)
        atomic_write(self.directory / f"anchor-{index}.key", key_pem(key))
        self.anchors = [*self.anchors, anchor]
        self.issuer, self.issuer_key = issuer, issuer_key
        self._save(self.directory, self.anchors, issuer, issuer_key)
        return anchor

    def finish_rotation(self) -> int:
        """Drop every anchor but the one that signed the current issuer; returns how many."""
        keep = [a for a in self.anchors if a.subject == self.issuer.issuer]
        dropped = len(self.anchors) - len(keep)
        self.anchors = keep
        self._save(self.directory, keep, self.issuer, self.issuer_key)
        return dropped

    def bundle(self) -> list[str]:
        return [cert_pem(a) for a in self.anchors]
