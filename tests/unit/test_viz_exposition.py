"""The fast exposition parser agrees with prometheus_client's on what proxies send."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from shoal.viz.errors import ScrapeError
from shoal.viz.exposition import _parse_reference, parse, parse_labels, render_labels
from shoal.viz.synthetic import SyntheticProxy, workload


def canonical(samples):
    return sorted((s.name, render_labels(parse_labels(s.raw_labels)), s.value, s.counter)
                  for s in samples)


def test_a_real_proxy_exposition_parses_like_the_reference():
    p = SyntheticProxy(workload("ns", "web"), [workload("ns", "emoji"), workload("ns", "vote")],
                       [workload("ns", "client")])
    p.traffic(20)
    text = p.exposition()
    fast = parse(text)
    assert canonical(fast) == canonical(_parse_reference(text))
    kinds = {s.name: s.counter for s in fast}
    assert kinds["response_total"] and kinds["response_latency_ms_bucket"]
    assert kinds["response_latency_ms_sum"] and not kinds["tcp_open_connections"]


class One:
    def __init__(self, labels, value, kind):
        self.labels, self.value, self.kind = labels, value, kind

    def describe(self):
        return []

    def collect(self):
        m = Metric("response" if self.kind == "counter" else "queue", "help", self.kind)
        m.add_sample("response_total" if self.kind == "counter" else "queue", self.labels,
                     self.value)
        yield m


label_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), label_values,
                       max_size=4),
       st.floats(allow_nan=False, allow_infinity=True), st.sampled_from(["counter", "gauge"]))
def test_label_values_with_quotes_newlines_and_any_text_survive(labels, value, kind):
    reg = CollectorRegistry(auto_describe=False)
    reg.register(One(labels, value, kind))
    text = generate_latest(reg).decode()
    fast = parse(text)
    assert canonical(fast) == canonical(_parse_reference(text))
    assert parse_labels(fast[0].raw_labels) == labels


def test_odd_but_valid_lines_go_through_the_reference_parser():
    text = ('# TYPE a counter\na_total{x="1"} 5 1700000000000\n'
            'b{y="q\\"}"}   7\n')
    samples = {s.name: s for s in parse(text)}
    assert samples["a_total"].value == 5 and samples["a_total"].counter
    assert parse_labels(samples["b"].raw_labels) == {"y": 'q"}'}


@pytest.mark.parametrize("text", ["<html>not metrics</html>\n", "metric{a=\"1\" 5\n",
                                  "\x00\xff garbage {{{ \n", "a_total{x=\"1\"} five\n"])
def test_garbage_is_a_scrape_error(text):
    with pytest.raises(ScrapeError):
        samples = parse(text)
        for s in samples:  # label blocks are read when the store meets a new series
            parse_labels(s.raw_labels)
