"""Benchmarks. ``make bench`` runs ``bench.run``: shoal's proxy beside nginx and HAProxy.

Parts of that harness: ``setups`` starts a loopback nginx backend and each proxy in
front of it, ``procs`` pins, measures (/proc) and always ends those processes,
``load`` drives them (wrk for maximum throughput, ``openloop`` for latency at a fixed
rate), ``mesh`` runs `shoal up`/`shoal run` in a temp home for the meshed hop with
mTLS, ``controlplane`` times readiness and propagation and weighs the control plane,
``profile`` reduces a py-spy recording, ``targets`` judges the ``model``
records (the issue's goals, noisy measurements), ``report`` renders BENCHMARKS.md
with the formats of ``units``, and ``run`` ties it together. ``store`` is a separate
micro-benchmark of the metrics store.
"""
