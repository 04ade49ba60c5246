"""HTML building blocks of the report: escaping, tables, embedded figures, the page.

Everything here is pure: text and figures in, HTML strings out. Every piece of text
that comes from the knowledge base goes through :func:`esc`; figures become
``data:image/png;base64`` URIs so the page needs no other file and no network.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Resolution of the embedded PNG figures.
DPI = 96


@dataclass
class Section:
    """One rendered section of the report.

    Attributes
    ----------
    key
        HTML id of the section (``profile``, ``forecast``, ...).
    title
        Heading shown on the page.
    body
        HTML of the section's content (already escaped).
    summary
        ``(what, value)`` pairs for the summary table at the top of the report.
    figures
        Number of embedded figures in ``body``.
    """

    key: str
    title: str
    body: str
    summary: list[tuple[str, str]] = field(default_factory=list)
    figures: int = 0


def esc(value: Any) -> str:
    """``value`` as text, HTML-escaped (quotes included)."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A compact, human-readable rendering of a number (or ``-`` when missing)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        size = abs(value)
        if value == 0:
            return "0"
        if size >= 1e6 or size < 1e-3:
            return f"{value:.{digits}g}"
        if size >= 100:
            return f"{value:,.1f}"
        if size >= 1:
            return f"{value:.2f}"
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction rendered as a percentage (``0.123`` -> ``12.3 %``)."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{100.0 * value:.{digits}f} %"


def new_figure(width: float = 7.0, height: float = 3.6) -> Figure:
    """A figure on its own Agg canvas: no GUI, no pyplot, no global backend switch."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_uri(fig: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure_html(fig: Figure, alt: str, caption: str = "") -> str:
    """A ``<figure>`` with the figure embedded as a PNG and an optional caption."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{figure_uri(fig)}" alt="{esc(alt)}">{cap}</figure>'


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; cells are formatted with :func:`fmt` and escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def para(text: str, cls: str = "") -> str:
    """A paragraph of escaped text."""
    attr = f' class="{esc(cls)}"' if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def empty(what: str, *commands: str) -> str:
    """The one-sentence "nothing yet" note naming the command(s) that produce the data."""
    cmds = " or ".join(f"<code>{esc(c)}</code>" for c in commands)
    return (
        f'<p class="empty">No {esc(what)} in the knowledge base yet: run {cmds} '
        "to produce them.</p>"
    )


def heading(text: str, level: int = 3) -> str:
    """An escaped heading."""
    return f"<h{level}>{esc(text)}</h{level}>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;
color:#1d1d1f;padding:0 1em;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3} td{font-variant-numeric:tabular-nums}
figure{margin:1em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444} .empty{color:#8a5a00;font-style:italic}
.note{color:#666;font-size:.9em} code{background:#f5f5f5;padding:0 .25em}
nav a{margin-right:1em}
"""


def page(title: str, generated: str, source: str, sections: Sequence[Section]) -> str:
    """The whole self-contained HTML document: summary table first, then each section."""
    nav = "".join(f'<a href="#{esc(s.key)}">{esc(s.title)}</a>' for s in sections)
    rows = [(s.title, what, value) for s in sections for what, value in s.summary]
    if rows:
        summary = table(("Pillar", "What", "Value"), rows)
    else:
        summary = (
            '<p class="empty">The knowledge base holds nothing to report yet: run '
            "<code>edgewise demo</code> to fill it.</p>"
        )
    body = "".join(
        f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        f'<p class="note">Generated {esc(generated)} from {esc(source)}.</p>'
        f"<nav>{nav}</nav>"
        f'<section id="summary"><h2>Summary</h2>{summary}</section>'
        f"{body}</body></html>\n"
    )
