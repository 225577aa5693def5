"""Metrics pipeline of the control plane: scrape the proxies, store, answer queries.

Parts, in the order a sample meets them:
  scrape      every interval, fetch each proxy's admin /metrics and /latency
              concurrently (deadline, size limit, per-target health); the
              workload labels ride along with each target
  exposition  Prometheus text -> samples (fast path, prometheus_client fallback)
  store       the embedded persistent store (SQLite, one transaction per scrape):
              one record of reset-adjusted values per scrape, sketch deltas,
              retention; attaches the workload labels to every series
  sketchrows  how latency sketch deltas are stored and summed
  cumulative  running totals of the sketches: any window is two rows per series
  deflate     compression of the store's many small blobs
  series      series identity and PromQL-style label matchers
  queries     the query interface: ``Backend`` (PromQL-shaped primitives) and
              ``Queries`` (stat, edges, history) built on any backend
  embedded    ``Backend`` over the embedded store
  prometheus  ``Backend`` over a real Prometheus server, and its file_sd targets
  routes      per-route rows of a service profile, on any ``Backend``
  window      durations, windows and ranges as users type them
  errors      the exception tree (a QueryError is a ValueError: HTTP 400)
  synthetic   proxies with generated traffic, for tests and benchmarks

    store = Store(home / "metrics")
    scraper = Scraper(store, registry.targets, ScrapeConfig(interval=10))
    queries = Queries(EmbeddedBackend(store, scrape_interval=10))
    queries.stat("deploy", "emojivoto", window="1m")
"""
