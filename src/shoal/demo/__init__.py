"""The demo: small services and a load generator that give every screen something to show.

  backend   an HTTP/JSON service (uvicorn) with a slow and a failing endpoint
  local     two proxies and a client loop, started and watched by `shoal demo`
"""
