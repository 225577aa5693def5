"""The control plane: what `shoal up` runs, and what `shoal run` leaves behind it.

Parts, from the disk up to the wire:
  errors      one exception hierarchy; every message is short and lowercase
  config      ControlConfig, the frozen settings of one control plane
  state       the $SHOAL_HOME layout and atomic writes (tmp + fsync + rename)
  names       Kubernetes-shaped names: validation, pod-template-hash, pod suffixes
  registry    namespaces, deployments, replica sets, pods, services, service accounts
  ca          trust anchors and the issuer (ECDSA P-256), certificate signing
  identity    bootstrap and renewal tokens, the certify policy, anchor rotation
  plane_identity  the control plane's own certificate (it taps remote proxies with it)
  destination endpoint/profile snapshots per authority and their watch streams
  plane       ControlPlane: the live handles (registry, identity, destination) together
  models      the API's strict request bodies (unknown fields refused, sizes bounded)
  guard       the request-body cap (413) as an ASGI middleware
  api         the FastAPI app: bearer-token auth, error shapes, every route
  server      binds the API socket, serves it with uvicorn, publishes the address
  supervisor  one detached process per replica set: its pods, scaling, reporting
  replica     one pod inside a supervisor: proxy then app, restarts, readiness probes
  process     child processes: own session, die with the supervisor, back-off
  uplink      the supervisor's client of the API, finding a restarted control plane
  daemon      starting and stopping detached processes (control plane, supervisors)

The CLI (`shoal up|down|run|get|check|identity`) talks to `api` over HTTP only, except
for starting and stopping processes, which goes through `daemon`.
"""
