"""Sections of BENCHMARKS.md that one benchmark owns, between its two markers.

``python -m bench.run`` rewrites the file; the sections written by
``bench.dashboard``, ``bench.tap`` and ``bench.store`` are carried over as they are.

>>> s = Section("<!-- x:begin -->", "<!-- x:end -->", "## X")
>>> s.extract("a\\n<!-- x:begin -->\\n1\\n<!-- x:end -->\\nb")
'<!-- x:begin -->\\n1\\n<!-- x:end -->'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


@dataclass(frozen=True)
class Section:
    begin: str
    end: str
    #: the heading a new section gets
    heading: str
    #: a new section goes before this line (at the end of the file when absent)
    before: str = "## Notes"

    def extract(self, old: str | None) -> str | None:
        """The section of a previous BENCHMARKS.md, markers included, if any."""
        if old and self.begin in old and self.end in old:
            return self.begin + old.split(self.begin, 1)[1].split(self.end, 1)[0] + self.end
        return None

    def write(self, text: str, path: Path = BENCHMARKS) -> None:
        """Replace the section, or add it under its heading; the rest stays as it is."""
        old = path.read_text() if path.exists() else "# Benchmarks\n"
        if self.begin in old and self.end in old:
            head, rest = old.split(self.begin, 1)
            new = head + text + rest.split(self.end, 1)[1]
        elif self.before in old:
            new = old.replace(self.before, f"{self.heading}\n\n{text}\n\n{self.before}", 1)
        else:
            new = old.rstrip("\n") + f"\n\n{self.heading}\n\n{text}\n"
        path.write_text(new)


DASHBOARD = Section("<!-- dashboard:begin (written by python -m bench.dashboard) -->",
                    "<!-- dashboard:end -->", "## Dashboard with a large mesh")
TAP = Section("<!-- tap:begin (written by python -m bench.tap) -->", "<!-- tap:end -->",
              "## Tap under load")
STORE = Section("<!-- store:begin (written by python -m bench.store) -->",
                "<!-- store:end -->", "## Metrics store")
OWNED = (DASHBOARD, TAP, STORE)
