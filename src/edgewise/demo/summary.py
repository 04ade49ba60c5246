"""The demo's one-screen summary: a row per step with its figure, and the time each took.

The steps add rows as they go (:meth:`DemoSummary.add`); :func:`print_summary` renders
them once at the end. No step reads another's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

__all__ = ["DemoSummary", "print_summary", "step"]


@dataclass
class DemoSummary:
    """Rows ``(pillar, what, value)`` in the order the steps ran, and seconds per part."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, pillar: str, what: str, value: str) -> None:
        """Append one row (the figure already formatted)."""
        self.rows.append((pillar, what, value))

    def value(self, what: str) -> str:
        """The value of the first row named ``what``.

        Raises
        ------
        KeyError
            If no row has that name.
        """
        for _pillar, name, value in self.rows:
            if name == what:
                return value
        raise KeyError(what)


def step(console: Console, title: str) -> None:
    """A rule with the step's title between two parts of the demo's progress output."""
    console.rule(f"[bold]{title}")


def print_summary(summary: DemoSummary) -> None:
    """Print the rows as a table, the time each part took and where Ray's logs are."""
    from edgewise.rayenv import log_path

    table = Table(title="edgewise demo")
    table.add_column("pillar")
    table.add_column("what")
    table.add_column("value", justify="right")
    for row in summary.rows:
        table.add_row(*row)
    Console().print(table)
    spent = ", ".join(f"{k} {v:.0f} s" for k, v in summary.timings.items())
    Console().print(f"time: {spent}; `edgewise report` renders it all from the knowledge base.")
    Console().print(
        f"Ray's and Serve's own lines: {log_path()} (`edgewise --verbose demo` shows them)"
    )
