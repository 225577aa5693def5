"""The data plane proxy: one per workload instance, beside the app.

Parts, in the order a connection meets them:
  server      binds the listeners (inbound, outbound, upstream ports, admin, tap)
  detect      reads once, decides HTTP/1.1, HTTP/2 or opaque TCP, replays what it read
  http1       HTTP/1.1 codec glue (httptools) and the forwarding protocols
  http2       HTTP/2 and gRPC forwarding (h2): the accepted connection
  h2stream    one HTTP/2 request stream: header rules, metrics, tap events
  h2pool      multiplexed upstream HTTP/2 connections per endpoint
  h2flow      end-to-end flow control and batched writes for HTTP/2
  tls         mTLS termination on the inbound listener (ssl over memory BIOs)
  identity    the proxy's key and certificate, renewal, trust anchors
  discovery   watches of the control plane's destination API
  balance     power of two choices over peak-EWMA latency, failfast
  routes      service-profile routes: matching, counters, timeouts, retries
  budget      the retry budget
  tcp         opaque byte forwarding with half-close
  destination resolves an authority to a Target (address + metric labels)
  pool        idle upstream HTTP/1 connections per address
  metrics     plain counters on the hot path, Prometheus exposition on scrape
  latency     bounded-relative-error latency sketch
  classify    success/failure rules shared by metrics and tap
  tap         in-process subscribers and the events they receive
  admin       /metrics /ready /live /shutdown and the tap stream
  taplistener the tap port: plaintext from loopback, mTLS from the control plane only
  native      the per-request modules compiled with mypyc, never stale (ADR 11)
Live shared handles travel together in `runtime.Runtime`.
"""

from . import native as _native

_native.install()
