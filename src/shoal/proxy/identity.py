"""The proxy's identity: a key made here, a certificate from the control plane, renewed.

The private key never leaves the process. ``Identity.certify`` sends a CSR for
``<sa>.<ns>.serviceaccount.identity.shoal.local`` with the one-time bootstrap token
and gets a 24 h certificate; ``run_renewal`` renews at the time the control plane
suggests (70 % of the lifetime) with the renewal token it handed out. Each new
certificate produces new TLS contexts; connections already open keep theirs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .controlclient import ControlClient, ControlError

log = logging.getLogger("shoal.proxy.identity")


def make_csr(name: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class Credentials:
    name: str
    server: ssl.SSLContext
    client: ssl.SSLContext
    expiry: float
    renew_after: float
    #: the tap listener's server context (client certificate optional, verified)
    tap: ssl.SSLContext | None = None


def contexts(key: ec.EllipticCurvePrivateKey, cert_pem: str, chain: list[str],
             anchors: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS 1.3 contexts that require and verify the peer's certificate."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _load(key, cert_pem, chain, anchors, server, client)
    for ctx in (server, client):
        ctx.verify_mode = ssl.CERT_REQUIRED
    client.check_hostname = True
    return server, client


def tap_context(key: ec.EllipticCurvePrivateKey, cert_pem: str, chain: list[str],
                anchors: list[str]) -> ssl.SSLContext:
    """The tap listener's server context: a client certificate is verified when sent
    but not required by the handshake, so a caller without one gets a 403 that says
    why instead of a bare TLS alert (the tap handler checks the identity)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load(key, cert_pem, chain, anchors, ctx)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def _load(key: ec.EllipticCurvePrivateKey, cert_pem: str, chain: list[str],
          anchors: list[str], *ctxs: ssl.SSLContext) -> None:
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    # ssl loads a key only from a file: a private directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="shoal-id-") as d:
        os.chmod(d, 0o700)
        cert_file, key_file = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key_pem)
        with open(cert_file, "w") as f:
            f.write(cert_pem + "".join(chain))
        for ctx in ctxs:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_cert_chain(cert_file, key_file)
            ctx.load_verify_locations(cadata="".join(anchors))


def peer_identity(cert: dict | None) -> str:  # type: ignore[type-arg]
    """The DNS SAN of a verified peer certificate (``getpeercert()``), or ""."""
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind == "DNS":
            return str(value)
    return ""


_POD_URI = "urn:shoal:pod:"


def pod_uri(namespace: str, pod: str) -> str:
    """The URI SAN the control plane adds to a pod's certificate, naming the pod.

    The identity names a service account, shared by every pod of a deployment and
    often by several deployments; on Kubernetes the pod IP tells the callers apart,
    but on one machine every caller is 127.0.0.1. The pod comes from the bootstrap
    token the control plane gave that pod, so a proxy cannot claim another's.

    >>> pod_uri("emojivoto", "web-5f7c8d9b4-x2k9q")
    'urn:shoal:pod:emojivoto:web-5f7c8d9b4-x2k9q'
    """
    return f"{_POD_URI}{namespace}:{pod}"


def peer_workload(cert: dict | None) -> dict[str, str]:  # type: ignore[type-arg]
    """Who a verified peer is, as tap's source labels: the namespace and service account
    of its identity, and its pod when the certificate names one; {} for no identity.

    >>> peer_workload({"subjectAltName": (
    ...     ("DNS", "web.shop.serviceaccount.identity.shoal.local"),
    ...     ("URI", "urn:shoal:pod:shop:web-1"))})
    {'namespace': 'shop', 'serviceaccount': 'web', 'pod': 'web-1'}
    """
    parts = peer_identity(cert).split(".")
    if len(parts) < 4 or parts[2] != "serviceaccount":
        return {}
    out = {"namespace": parts[1], "serviceaccount": parts[0]}
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind == "URI" and str(value).startswith(_POD_URI):
            namespace, _, pod = str(value)[len(_POD_URI):].partition(":")
            if namespace == out["namespace"] and pod:
                out["pod"] = pod
    return out


class Identity:
    """Holds the current credentials; ``current`` is None until the first certificate."""

    def __init__(self, name: str, client: ControlClient, bootstrap_token: str) -> None:
        self.name = name
        self.client = client
        self.token = bootstrap_token
        self.current: Credentials | None = None
        self.on_change: list = []  # type: ignore[type-arg]
        self._material: tuple[ec.EllipticCurvePrivateKey, str, list[str], list[str]] | None = None

    async def certify(self) -> Credentials:
        key, csr = make_csr(self.name)
        answer = await self.client.request("POST", "/api/v1/identity/certify",
                                           {"csr": csr, "token": self.token})
        server, client = contexts(key, answer["certificate"], answer.get("chain", []),
                                  answer["trust_anchors"])
        tap = tap_context(key, answer["certificate"], answer.get("chain", []),
                          answer["trust_anchors"])
        self._material = (key, answer["certificate"], list(answer.get("chain", [])),
                          list(answer["trust_anchors"]))
        self.token = answer.get("renew_token", self.token)
        creds = Credentials(self.name, server, client, float(answer["expiry"]),
                            float(answer.get("renew_after") or
                                  time.time() + 0.7 * (answer["expiry"] - time.time())),
                            tap)
        self.current = creds
        for cb in self.on_change:
            cb(creds)
        log.info("certificate issued identity=%s expiry=%d", self.name, creds.expiry)
        return creds

    async def refresh_anchors(self) -> bool:
        """Trust the anchors the control plane serves now (a rotation adds one);
        True when they changed. The certificate and key stay as they are."""
        if self._material is None or self.current is None:
            return False
        answer = await self.client.request("GET", "/api/v1/identity/trust-anchors")
        anchors = list(answer["trust_anchors"])
        key, cert, chain, old = self._material
        if anchors == old or not anchors:
            return False
        server, client = contexts(key, cert, chain, anchors)
        tap = tap_context(key, cert, chain, anchors)
        self._material = (key, cert, chain, anchors)
        c = self.current
        self.current = Credentials(c.name, server, client, c.expiry, c.renew_after, tap)
        log.info("trust anchors updated count=%d", len(anchors))
        return True

    async def run_anchor_refresh(self, interval: float = 30.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_anchors()
            except (ControlError, KeyError, ValueError, TypeError, ssl.SSLError):
                pass  # keep the anchors we have; try again later

    async def run_renewal(self) -> None:
        """Renew before expiry; on failure retry with back-off, keeping the old one."""
        backoff = 1.0
        while True:
            creds = self.current
            wait = max(1.0, creds.renew_after - time.time()) if creds else backoff
            await asyncio.sleep(wait)
            try:
                await self.certify()
                backoff = 1.0
            except (ControlError, KeyError, ValueError, ssl.SSLError) as e:
                log.warning("certificate renewal failed error=%s retry_in=%.0fs",
                            str(e).replace(" ", "_"), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
