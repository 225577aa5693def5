"""Durations, windows and ranges as users type them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.viz.errors import BadRange, BadWindow, QueryError, WindowTooShort
from shoal.viz.window import format_duration, parse_duration, time_range, window


@pytest.mark.parametrize("text,seconds", [
    ("10s", 10), ("1m", 60), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25),
    ("7d", 7 * 86400), ("1w", 604800), ("90", 90), (" 1m ", 60), ("1.5m", 90),
])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1x", "m", "-5m", "0s", "1m-", "1 m", "nan", "1m30",
                                  "1e400", "100w"])
def test_malformed_durations_are_rejected_with_a_reason(text):
    with pytest.raises(BadWindow) as e:
        parse_duration(text)
    assert isinstance(e.value, ValueError) and isinstance(e.value, QueryError)
    assert str(e.value)


@given(st.integers(min_value=1, max_value=90 * 86400))
def test_format_then_parse_round_trips(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_a_window_shorter_than_the_scrape_interval_is_rejected_with_the_reason():
    with pytest.raises(WindowTooShort, match="shorter than the scrape interval 10s"):
        window("5s", now=1000.0, scrape_interval=10.0)
    w = window("1m", now=1000.0, scrape_interval=10.0)
    assert (w.start, w.end, w.seconds) == (940.0, 1000.0, 60.0)


def test_time_range_lists_points_oldest_first_and_rejects_bad_ranges():
    assert time_range(0, 60, 20, 10) == [0, 20, 40, 60]
    with pytest.raises(BadRange, match="after its start"):
        time_range(60, 0, 20, 10)
    with pytest.raises(WindowTooShort):
        time_range(0, 60, 1, 10)
    with pytest.raises(BadRange, match="points"):
        time_range(0, 86400 * 30, 10, 10)
    with pytest.raises(BadRange):
        time_range(float("nan"), 60, 20, 10)
