"""The benchmark's p99 over requests no hypervisor steal touched (bench/stats.py,
bench/targets.py): which requests it keeps, and when it may decide a target."""

from __future__ import annotations

import doctest

from bench import stats, targets
from bench.model import SetupResult


def test_stats_examples() -> None:
    result = doctest.testmod(stats)
    assert result.attempted > 0 and result.failed == 0


def test_a_stall_drops_the_requests_it_touched_and_the_queue_behind_it() -> None:
    marks = [(t / 10, 0 if t < 5 else 2) for t in range(11)]  # steal between 0.4 and 0.5
    sends = [(t / 1000 + 0.0005, 300.0) for t in range(0, 1000)] + [(0.9999, 300.0)]
    kept, share = stats.quiet(sends, marks)
    # lost: the sends from 0.4005 (a life reaching into the slice) to 0.5495 (the
    # drain), and the last one, answered after the final sample (outside the span)
    assert len(kept) == 1000 - 150
    assert share == len(kept) / 1001


def _setup(name: str, p99_us: float, quiet_p99_us: float, share: float) -> SetupResult:
    r = SetupResult(name, name, hops=1)
    r.latency = {"latency_us": {"p99": p99_us}, "quiet_us": {"p99": quiet_p99_us},
                 "quiet_share": share}
    return r


def _verdict(ok: bool | None, *_: object) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def test_the_quiet_p99_decides_only_a_failed_target_with_enough_quiet_requests() -> None:
    base = _setup("direct", 200.0, 150.0, 0.8)
    noisy = _setup("shoal", 9000.0, 700.0, 0.6)
    check = targets.p99_check("p99", noisy, base, 1000.0, _verdict)
    assert check.result == "PASS (without steal)"
    assert "550µs without steal (60% of requests)" in check.measured

    too_little = _setup("shoal", 9000.0, 700.0, 0.3)
    assert targets.p99_check("p99", too_little, base, 1000.0, _verdict).result == "FAIL"

    slow_anyway = _setup("shoal", 9000.0, 1500.0, 0.9)
    assert targets.p99_check("p99", slow_anyway, base, 1000.0, _verdict).result == "FAIL"

    fine = _setup("shoal", 900.0, 5000.0, 0.9)
    assert targets.p99_check("p99", fine, base, 1000.0, _verdict).result == "PASS"
