"""The proxy's configuration: one frozen dataclass, parsed from flags or environment.

Every key is ``SHOAL_PROXY_<FLAG>`` in the environment (``--app`` is ``SHOAL_PROXY_APP``);
repeatable flags take a comma-separated list there. Nothing else in the proxy reads
``os.environ``.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from dataclasses import dataclass, field

Addr = tuple[str, int]

#: The identity the control plane's tap client presents (``control.config``
#: ``CONTROL_PLANE_IDENTITY``): the only TLS client a tap listener serves.
TAP_CLIENT_ID = "shoal-control.shoal.serviceaccount.identity.shoal.local"


class ConfigError(ValueError):
    """A flag or environment value the proxy cannot use."""


def parse_addr(text: str, what: str = "address") -> Addr:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) -> (host, port).

    >>> parse_addr("127.0.0.1:4143"), parse_addr("[::1]:0"), parse_addr(":80")
    (('127.0.0.1', 4143), ('::1', 0), ('0.0.0.0', 80))
    """
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ConfigError(f"{what} {text!r} must be HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        n = int(port)
    except ValueError:
        raise ConfigError(f"{what} {text!r} has a port that is not a number") from None
    if not 0 <= n <= 65535:
        raise ConfigError(f"{what} {text!r} has a port out of range")
    return (host or "0.0.0.0", n)


def format_addr(addr: Addr) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_authority(text: str, default_port: int = 80) -> str:
    """Normalise a service name to ``name:port``, lowercased, cluster suffix removed."""
    text = text.strip().lower()
    if not text:
        raise ConfigError("empty service name")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"service {text!r} has an unclosed [")
        host, rest = text[: end + 1], text[end + 1 :]
        port = rest[1:] if rest.startswith(":") else str(default_port)
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, str(default_port)
    if not port.isdigit():
        raise ConfigError(f"service {text!r} has a port that is not a number")
    for suffix in (".svc.cluster.local", ".cluster.local"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
    return f"{host}:{int(port)}"


def _mapping(items: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"{what} {item!r} must be NAME:PORT=VALUE")
        out.append((parse_authority(name), value.strip()))
    return out


def default_max_connections() -> int:
    """Half the file descriptors we may open (each proxied connection can hold two)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, (soft - 64) // 2)


@dataclass(frozen=True)
class ProxyConfig:
    inbound: Addr | None = None          # where peers and clients reach the app
    app: Addr | None = None              # the app's own listener
    outbound: Addr | None = ("127.0.0.1", 0)  # the app's HTTP proxy
    admin: Addr = ("127.0.0.1", 0)       # /metrics /ready /live /shutdown /latency
    tap: Addr = ("127.0.0.1", 0)         # tap stream
    namespace: str = "default"
    deployment: str = ""
    pod: str = ""
    service_account: str = "default"
    destinations: tuple[tuple[str, Addr], ...] = ()  # name:port -> address
    upstreams: tuple[tuple[str, Addr], ...] = ()     # name:port -> local listener
    log_level: str = "info"
    detect_timeout: float = 3.0          # s; no bytes by then -> opaque TCP
    header_timeout: float = 10.0         # s; request headers not complete -> 408
    max_header_bytes: int = 65536        # request or response head; over -> 431 / 502
    connect_timeout: float = 3.0         # s; upstream connect
    idle_timeout: float = 300.0          # s; idle keep-alive client connections
    pool_max_idle: int = 64              # idle upstream connections per address
    max_connections: int = field(default_factory=default_max_connections)
    shutdown_grace: float = 10.0         # s; in-flight requests finish within this
    tap_redact: tuple[str, ...] = ()     # more header names to redact in tap
    tap_max_subscribers: int = 64
    tap_record_bytes: int = 0            # flight recorder of recent tap events; 0: off
    tap_client_id: str = TAP_CLIENT_ID   # the one TLS identity allowed to tap (non-loopback)
    control_plane: str = ""              # http://host:port of the control plane API
    bootstrap_token: str = ""            # one-time token for the first certificate
    mtls: str = "permissive"             # "strict": refuse plaintext inbound connections
    profiles: tuple[str, ...] = ()       # service profile files for static destinations
    service: str = ""                    # name:port of this workload's service (inbound routes)

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> ProxyConfig:
        """Build from ``SHOAL_PROXY_*``-style keys without the prefix, lowercased
        (``{"app": "127.0.0.1:8080", "destination": "a.ns:80=127.0.0.1:9000"}``)."""
        kw: dict[str, object] = {}

        def get(key: str) -> str | None:
            v = env.get(key)
            return v if v not in (None, "") else None

        for key in ("inbound", "app", "outbound", "admin", "tap"):
            v = get(key)
            if v is not None:
                kw[key] = None if v == "off" else parse_addr(v, f"--{key}")
        for key in ("namespace", "deployment", "pod", "service_account", "log_level",
                "control_plane", "bootstrap_token", "mtls", "tap_client_id"):
            v = get(key)
            if v is not None:
                kw[key] = v
        for key in ("detect_timeout", "header_timeout", "connect_timeout", "idle_timeout",
                    "shutdown_grace"):
            v = get(key)
            if v is not None:
                try:
                    kw[key] = float(v)
                except ValueError:
                    raise ConfigError(f"--{key.replace('_', '-')} must be seconds") from None
        for key in ("max_header_bytes", "max_connections", "pool_max_idle",
                    "tap_max_subscribers", "tap_record_bytes"):
            v = get(key)
            if v is not None:
                try:
                    kw[key] = int(v)
                except ValueError:
                    raise ConfigError(f"--{key.replace('_', '-')} must be a number") from None
        dests = _split(get("destination"))
        kw["destinations"] = tuple((n, parse_addr(a, f"--destination {n}"))
                                   for n, a in _mapping(dests, "--destination"))
        ups = []
        for name, value in _mapping(_split(get("upstream")), "--upstream"):
            ups.append((name, ("127.0.0.1", _port(value)) if value.isdigit()
                        else parse_addr(value, f"--upstream {name}")))
        kw["upstreams"] = tuple(ups)
        kw["tap_redact"] = tuple(h.strip().lower() for h in _split(get("tap_redact")))
        kw["profiles"] = tuple(_split(get("profile")))
        if get("service"):
            kw["service"] = parse_authority(str(get("service")))
        if kw.get("inbound") and not kw.get("app"):
            raise ConfigError("--inbound needs --app, the app's own address")
        cfg = cls(**kw)  # type: ignore[arg-type]
        if cfg.mtls not in ("permissive", "strict"):
            raise ConfigError("--mtls must be permissive or strict")
        if cfg.control_plane and not cfg.bootstrap_token:
            raise ConfigError("--control-plane needs --bootstrap-token")
        if cfg.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError("--log-level must be debug, info, warning or error")
        return cfg

    @property
    def identity(self) -> str:
        return f"{self.service_account}.{self.namespace}.serviceaccount.identity.shoal.local"


def _port(value: str) -> int:
    n = int(value)
    if not 0 <= n <= 65535:
        raise ConfigError(f"port {value} out of range")
    return n


def _split(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [v for item in value for v in _split(item)]
    return [v.strip() for v in value.split(",") if v.strip()]
