"""ControlConfig: the frozen settings of one control plane, parsed from a mapping.

Keys (``shoal control`` flags, or ``SHOAL_CONTROL_<KEY>`` upper-cased in the
environment, read only at the CLI edge):
  home               $SHOAL_HOME, where state, CA material and logs live
  api                HOST:PORT the API binds (default 127.0.0.1:50750; port 0 allowed)
  cert_lifetime      seconds a proxy certificate lives (default 24 h)
  issuer_lifetime    seconds a new issuer certificate lives (default 365 d)
  anchor_lifetime    seconds a new trust anchor lives (default 10 y)
  pod_stale_after    seconds without a supervisor heartbeat before a pod is Unknown
  watch_heartbeat    seconds between ``{}`` lines on an idle watch stream
  max_body           request body cap in bytes (default 1 MiB)
  dashboard_hosts    host names (comma-separated) browsers may use to reach the
                     dashboard besides IP addresses and localhost (DNS-rebinding guard)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidRequest

DEFAULT_API = ("127.0.0.1", 50750)
TRUST_DOMAIN = "identity.shoal.local"
DAY = 86400.0


def parse_addr(text: str) -> tuple[str, int]:
    """``"127.0.0.1:0"`` -> ``("127.0.0.1", 0)``; ``"[::1]:80"`` -> ``("::1", 80)``."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidRequest(f"address {text!r} must be HOST:PORT")
    host = host[1:-1] if host.startswith("[") else host
    return (host or "127.0.0.1", int(port))


def format_addr(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def identity_name(service_account: str, namespace: str) -> str:
    """The DNS name a proxy's certificate carries.

    >>> identity_name("default", "emojivoto")
    'default.emojivoto.serviceaccount.identity.shoal.local'
    """
    return f"{service_account}.{namespace}.serviceaccount.{TRUST_DOMAIN}"


#: The identity the control plane presents when it taps proxies on other hosts. No pod
#: may be issued it (``Identity.issue_token`` refuses); proxies accept TLS tap only
#: from it (``shoal proxy --tap-client-id``, whose default is this name).
CONTROL_PLANE_IDENTITY = identity_name("shoal-control", "shoal")


@dataclass(frozen=True)
class ControlConfig:
    home: Path
    api: tuple[str, int] = DEFAULT_API
    cert_lifetime: float = DAY
    issuer_lifetime: float = 365 * DAY
    anchor_lifetime: float = 3650 * DAY
    pod_stale_after: float = 20.0
    watch_heartbeat: float = 10.0
    max_body: int = 1 << 20
    dashboard_hosts: tuple[str, ...] = ()
    #: the mesh-wide default of a deployment's inbound mTLS (``shoal run --mtls``)
    mtls: str = "permissive"

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> ControlConfig:
        """``ControlConfig.parse({"home": "/tmp/x", "api": "127.0.0.1:0"})``"""
        if not env.get("home"):
            raise InvalidRequest("home is required")
        kw: dict[str, object] = {"home": Path(env["home"]).expanduser()}
        if env.get("api"):
            kw["api"] = parse_addr(env["api"])
        for key in ("cert_lifetime", "issuer_lifetime", "anchor_lifetime",
                    "pod_stale_after", "watch_heartbeat"):
            if env.get(key):
                try:
                    value = float(env[key])
                except ValueError:
                    raise InvalidRequest(f"{key} must be seconds") from None
                if value <= 0:
                    raise InvalidRequest(f"{key} must be positive")
                kw[key] = value
        if env.get("dashboard_hosts"):
            kw["dashboard_hosts"] = tuple(
                h.strip().lower() for h in str(env["dashboard_hosts"]).split(",") if h.strip())
        if env.get("mtls"):
            if env["mtls"] not in ("strict", "permissive"):
                raise InvalidRequest("mtls must be strict or permissive")
            kw["mtls"] = env["mtls"]
        if env.get("max_body"):
            if not str(env["max_body"]).isdigit():
                raise InvalidRequest("max_body must be a number of bytes")
            kw["max_body"] = int(env["max_body"])
        return cls(**kw)  # type: ignore[arg-type]
