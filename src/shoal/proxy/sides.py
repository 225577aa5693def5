"""Which way a connection flows, and where its requests go.

Every accepted connection gets a ``Side``: inbound (to the local app), outbound
(the app's HTTP proxy: each request names its destination) or fixed (an upstream
port or a ``CONNECT`` tunnel: one destination for the whole connection). Protocol
handlers ask the side for an ``Endpoint`` per request and never look further.
"""

from __future__ import annotations

from .config import format_addr
from .destination import Endpoint, Target
from .metrics import TcpStats
from .runtime import PLAINTEXT_INBOUND, Runtime


class Side:
    direction = "inbound"
    #: "in" or "out" as tap prints it
    proxy = "in"

    def __init__(self, runtime: Runtime, src_tcp: TcpStats, tls: dict[str, str],
                 caller: dict[str, str] | None = None) -> None:
        self.runtime = runtime
        self.src_tcp = src_tcp
        self.tls = tls
        self.tls_value = tls.get("tls", "no_identity")
        #: inbound over mTLS: the caller's workload as its certificate says
        #: (``identity.peer_workload``), the source labels of tap events
        self.caller = caller

    def target(self, authority: str) -> Target | None:
        """The target for requests to ``authority``; None: answer 502 no route."""
        raise NotImplementedError

    def endpoint(self, authority: str) -> Endpoint | None:
        """One endpoint for a request to ``authority`` (balanced), or None."""
        t = self.target(authority)
        return t.pick() if t is not None else None

    def fixed_authority(self) -> str | None:
        """The authority every request of this connection is counted under, if fixed."""
        return None


class InboundSide(Side):
    """Accepted on the inbound listener: every request goes to the local app."""

    def __init__(self, runtime: Runtime, tls: dict[str, str] | None = None,
                 caller: dict[str, str] | None = None) -> None:
        tls = tls or PLAINTEXT_INBOUND
        traffic, src_tcp, app_tcp = runtime.inbound_stats(tls)
        super().__init__(runtime, src_tcp, tls, caller or None)
        assert runtime.config.app is not None
        self.app = Endpoint(runtime.config.app, {}, None, traffic, app_tcp)
        self.app_target = Target("app", [self.app])

    def target(self, authority: str) -> Target | None:
        return self.app_target

    def endpoint(self, authority: str) -> Endpoint | None:
        return self.app


class OutboundSide(Side):
    """The app's HTTP proxy: each request's authority picks its destination."""

    direction = "outbound"
    proxy = "out"

    def __init__(self, runtime: Runtime, listener_addr: str) -> None:
        super().__init__(runtime, runtime.outbound_src_tcp(listener_addr),
                         {"tls": "no_identity", "no_tls_reason": "loopback"})
        self.resolve = runtime.resolver.resolve

    def target(self, authority: str) -> Target | None:
        return self.resolve(authority)


class FixedSide(OutboundSide):
    """An upstream port or a CONNECT tunnel: one target for the whole connection."""

    def __init__(self, runtime: Runtime, target: Target, src_tcp: TcpStats | None = None):
        ep = target.pick()
        super().__init__(runtime, ep.target_addr if ep else format_addr(("0.0.0.0", 0)))
        if src_tcp is not None:
            self.src_tcp = src_tcp
        self.fixed = target

    def target(self, authority: str) -> Target | None:
        return self.fixed

    def fixed_authority(self) -> str | None:
        return self.fixed.authority
