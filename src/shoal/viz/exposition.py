"""Prometheus text exposition to samples, fast for the proxies' output.

prometheus_client's parser reads character by character: a proxy with 20
authorities (2,000 series, 700 kB) takes ~0.5 s to parse, which 50 proxies every
10 s cannot afford. ``parse`` splits lines with two regular expressions and keeps
each sample's label block as raw text, so the store can recognise a series it has
seen before without parsing its labels again. A line the fast path does not
understand makes the whole text go through ``text_string_to_metric_families``
(the reference), so odd but valid input still parses; tests check both agree.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from .errors import ScrapeError


class Sample(NamedTuple):
    name: str
    #: the label block between the braces, as written (a cache key), "" when none
    raw_labels: str
    value: float
    #: True for counters and histogram/summary counts, buckets and sums (monotonic)
    counter: bool


_LINE = re.compile(
    r'([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t]*(?:\{([^"}]*(?:"[^"\\]*(?:\\.[^"\\]*)*"[^"}]*)*)\})?'
    r'[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*')
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"\\]*(?:\\.[^"\\]*)*)"[ \t]*(?:,|$)')
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}
_MONOTONIC_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def _unescape(m: re.Match[str]) -> str:
    c = m.group(1)
    return _ESCAPES.get(c, "\\" + c)


def parse_labels(raw: str) -> dict[str, str]:
    """The labels of a raw label block: ``a="1",b="x\\"y"`` -> {'a': '1', 'b': 'x"y'}."""
    out: dict[str, str] = {}
    pos, end = 0, len(raw)
    while pos < end:
        m = _LABEL.match(raw, pos)
        if m is None:
            if raw[pos:].strip(" \t,"):
                raise ScrapeError(f"malformed labels {raw[:80]!r}")
            break
        v = m.group(2)
        out[m.group(1)] = _ESCAPE.sub(_unescape, v) if "\\" in v else v
        pos = m.end()
    return out


def escape_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_labels(labels: dict[str, str]) -> str:
    """A canonical raw label block (sorted), as the fast path would have seen it."""
    return ",".join(f'{k}="{escape_value(v)}"' for k, v in sorted(labels.items()))


def _is_counter(name: str, types: dict[str, str]) -> bool:
    t = types.get(name)
    if t is not None:
        return t == "counter"
    for suffix in _MONOTONIC_SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            t = types.get(base)
            if t is not None:
                return t in ("counter", "histogram", "summary", "gaugehistogram") and not (
                    t == "gaugehistogram" and suffix == "_bucket")
    return False


def parse(text: str) -> list[Sample]:
    """Samples of an exposition; ScrapeError when it is not one.

    Label blocks are only checked when ``parse_labels`` reads them (the store does
    so once per new series), which keeps a repeat scrape at ~1 µs per line.
    """
    types: dict[str, str] = {}
    out: list[Sample] = []
    kinds: dict[str, bool] = {}
    append = out.append
    for line in text.split("\n"):
        if not line or line[0] == "#":
            if line.startswith("# TYPE "):
                parts = line.split(None, 3)
                if len(parts) == 4:
                    types[parts[2]] = parts[3].strip()
            continue
        head, _, value = line.rstrip().rpartition(" ")
        brace = head.find("{")
        if brace < 0:
            name, raw = head.rstrip(), ""
            ok = " " not in name
        else:
            name, raw = head[:brace].rstrip(), head[brace + 1:-1]
            ok = head[-1] == "}"
        counter = kinds.get(name) if ok else None
        if counter is None:
            if not ok or not _NAME.fullmatch(name):
                m = _LINE.fullmatch(line)
                if m is None:
                    if not line.strip():
                        continue
                    return _parse_reference(text)
                name, raw, value = m.group(1), m.group(2) or "", m.group(3)
            counter = kinds.get(name)
            if counter is None:
                counter = kinds[name] = _is_counter(name, types)
        if name.endswith("_created"):
            continue
        try:
            v = float(value)
        except ValueError:
            return _parse_reference(text)
        append(Sample(name, raw, v, counter))
    return out


def _parse_reference(text: str) -> list[Sample]:
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the reference parser raises ValueError and others
        raise ScrapeError(f"unparsable exposition: {e}"[:200]) from None
    out: list[Sample] = []
    for fam in families:
        mono = fam.type in ("counter", "histogram", "summary")
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            counter = mono and not (fam.type == "summary" and "quantile" in s.labels)
            v = float(s.value)
            if math.isnan(v) and counter:
                continue
            out.append(Sample(s.name, render_labels(s.labels), v, counter))
    return out
