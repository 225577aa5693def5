"""The demo: shoalvoto, a small meshed app whose traffic gives every screen something to show.

  web       HTTP/1.1 + JSON front end; calls emoji and voting over gRPC
  emoji     gRPC catalogue of emoji (two replicas)
  voting    gRPC votes; :doughnut: always fails, results are sometimes slow
  kv        raw TCP key-value server holding voting's tallies
  vote_bot  the load: calls web continuously
  protos    the .proto files and their gRPC modules, generated at first use
  lab       starts and stops all of it for `shoal demo`
  load      the open-loop generator behind `shoal load`
"""
