"""The control plane's own certificate: what it presents to tap proxies on other hosts.

At start-up the control plane issues itself a certificate for
``CONTROL_PLANE_IDENTITY`` from its own CA (a key made here, kept in memory only),
the only identity whose TLS connections a proxy's tap listener serves. The client
context built from it verifies the proxy against the mesh's trust anchors and the
pod's expected identity (given as the TLS server name). The certificate is re-issued
at 70 % of its lifetime, or when a finished rotation dropped the anchor above it;
the context is rebuilt whenever the served anchors change.

    ctx = PlaneIdentity(plane.identity).client_context()
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .ca import cert_pem, new_key, sign_leaf
from .config import CONTROL_PLANE_IDENTITY
from .identity import Identity

log = logging.getLogger("shoal.identity")


class PlaneIdentity:
    """Holds the control plane's key and certificate; ``client_context()`` is cheap
    when nothing changed."""

    def __init__(self, identity: Identity, clock: Callable[[], float] = time.time) -> None:
        self.identity = identity
        self.clock = clock
        self.name = CONTROL_PLANE_IDENTITY
        self._key: ec.EllipticCurvePrivateKey | None = None
        self.certificate: x509.Certificate | None = None
        self.chain: list[x509.Certificate] = []
        self._renew_at = 0.0
        self._anchors: tuple[str, ...] = ()
        self._context: ssl.SSLContext | None = None
        self.client_context()

    def client_context(self) -> ssl.SSLContext:
        """A TLS 1.3 client context with this identity's certificate; connect with
        ``server_hostname=<the pod's identity>``."""
        authority = self.identity.authority
        if self.certificate is None or self.clock() >= self._renew_at or not self._anchored():
            self._issue()
        anchors = tuple(authority.bundle())
        if self._context is None or anchors != self._anchors:
            from shoal.proxy.identity import contexts

            assert self.certificate is not None and self._key is not None
            _, self._context = contexts(self._key, cert_pem(self.certificate),
                                        [cert_pem(c) for c in self.chain], list(anchors))
            self._anchors = anchors
        return self._context

    def _anchored(self) -> bool:
        """Our issuer still hangs from a served anchor (a rotation may have ended)."""
        anchors = {a.subject for a in self.identity.authority.anchors}
        return bool(self.chain) and self.chain[0].issuer in anchors

    def _issue(self) -> None:
        authority = self.identity.authority
        self._key = key = new_key()  # a fresh key with every certificate
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)])
        csr = (x509.CertificateSigningRequestBuilder().subject_name(name)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(self.name)]), False)
               .sign(key, hashes.SHA256()))
        cert = sign_leaf(csr, self.name, authority.issuer, authority.issuer_key,
                         self.identity.config.cert_lifetime)
        start = cert.not_valid_before_utc.timestamp()
        self._renew_at = start + 0.7 * (cert.not_valid_after_utc.timestamp() - start)
        self.certificate, self.chain = cert, [authority.issuer]
        self._context = None
        log.info("control plane certificate issued identity=%s expiry=%d", self.name,
                 cert.not_valid_after_utc.timestamp())
