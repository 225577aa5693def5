"""Series identity and label matchers.

A series is a metric name plus its sorted labels; the store numbers it once. The
matchers follow PromQL's four operators, and ``parse_selector`` reads the
``name{label="v",other=~"re"}`` form that the API accepts.

>>> name, ms = parse_selector('response_total{direction="inbound",namespace=~"emoji.*"}')
>>> name, [str(m) for m in ms]
('response_total', ['direction="inbound"', 'namespace=~"emoji.*"'])
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .errors import BadSelector
from .exposition import escape_value, parse_labels

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Matcher:
    """One label condition: ``=``, ``!=``, ``=~`` or ``!~`` (regex anchored, as PromQL)."""

    label: str
    value: str
    op: str = "="
    _re: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise BadSelector(f"unknown matcher operator {self.op!r}")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_re", re.compile(f"(?:{self.value})\\Z", re.S))
            except re.error as e:
                raise BadSelector(f"bad regex {self.value!r} for {self.label}: {e}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.label, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self._re is not None
        return (self._re.match(v) is not None) == (self.op == "=~")

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{escape_value(self.value)}"'


MatcherSpec = Mapping[str, str] | Sequence[Matcher] | str | None


def matchers(spec: MatcherSpec) -> list[Matcher]:
    """Matchers from a mapping (equality), a list, or a selector string ``{a="b"}``."""
    if spec is None:
        return []
    if isinstance(spec, str):
        name, ms = parse_selector(spec if spec.lstrip().startswith("{") else "{" + spec + "}")
        if name:
            ms.append(Matcher("__name__", name))
        return ms
    if isinstance(spec, Mapping):
        return [Matcher(k, v) for k, v in spec.items()]
    out = list(spec)
    if not all(isinstance(m, Matcher) for m in out):
        raise BadSelector("matchers must be Matcher objects")
    return out


_SELECTOR = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(.*)\})?\s*", re.S)
_MATCHER = re.compile(
    r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"\\]*(?:\\.[^"\\]*)*)"\s*(?:,|$)', re.S)


def parse_selector(text: str) -> tuple[str, list[Matcher]]:
    """``name{a="1",b!~"x|y"}`` -> (name, matchers); BadSelector with the reason."""
    m = _SELECTOR.fullmatch(text)
    if m is None or not (m.group(1) or m.group(2) is not None):
        raise BadSelector(f"malformed selector {text!r}: expected name{{label=\"value\",...}}")
    name, body = m.group(1) or "", m.group(2) or ""
    out: list[Matcher] = []
    pos = 0
    while pos < len(body):
        mm = _MATCHER.match(body, pos)
        if mm is None:
            if body[pos:].strip(" \t\n,"):
                raise BadSelector(f"malformed matcher near {body[pos:pos + 40]!r}")
            break
        value = parse_labels(f'x="{mm.group(3)}"')["x"]
        out.append(Matcher(mm.group(1), value, mm.group(2)))
        pos = mm.end()
    return name, out


def labels_key(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def group_key(labels: Mapping[str, str], by: Iterable[str]) -> tuple[str, ...]:
    return tuple(labels.get(b, "") for b in by)
