"""Errors of the metrics pipeline, as one tree.

    QueryError (ValueError)        the caller asked for something we cannot answer
    ├── BadWindow                  "1x", "-5m", "" ...
    ├── WindowTooShort             shorter than the scrape interval
    ├── BadRange                   start after end, step <= 0, too many points
    ├── BadSelector                malformed label matchers or regex
    └── UnknownResource            a resource type we do not know
    ScrapeError                    one target could not be scraped (kept in its health)

The API turns a ``QueryError`` into a 400 with ``str(error)`` as the reason.
"""

from __future__ import annotations


class QueryError(ValueError):
    """A query the store cannot answer as asked; the message says why."""


class BadWindow(QueryError):
    pass


class WindowTooShort(QueryError):
    pass


class BadRange(QueryError):
    pass


class BadSelector(QueryError):
    pass


class UnknownResource(QueryError):
    pass


class ScrapeError(Exception):
    """A scrape that failed: timeout, refused, too large, unparsable."""
