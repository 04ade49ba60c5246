"""Assemble the report: read every pillar in one snapshot, render, write ``index.html``.

Reading is the only database access (one read-only snapshot, so the sections agree
with each other); rendering works on plain data; the page is written to a temporary
file and renamed, so an interrupted run never leaves half a report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from edgewise.errors import EnvironmentProblem
from edgewise.kb import KnowledgeBase
from edgewise.report import forecast, profile, retrain, serving, versions
from edgewise.report.html import Section, page

#: Names of the sections, in page order (after the summary).
SECTIONS: tuple[str, ...] = ("profile", "forecast", "serving", "versions", "retrain")

TITLE = "edgewise report"


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and what it holds.

    Attributes
    ----------
    path
        The written ``index.html``.
    figures
        Number of embedded figures per section key.
    size_bytes
        Size of the page.
    """

    path: Path
    figures: dict[str, int]
    size_bytes: int


def build_sections(
    kb: KnowledgeBase,
    on_section: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> list[Section]:
    """Read the knowledge base and render every section (``on_section`` after each);
    ``now`` is where a version still serving ends on its timeline."""
    with kb.snapshot() as session:
        prof = profile.load(session)
        fcs, more_fcs = forecast.load(session)
        serv = serving.load(session)
        served = versions.load(session)
        jobs, more_jobs = retrain.load(session)
    renderers: dict[str, Callable[[], Section]] = {
        "profile": lambda: profile.render(prof),
        "forecast": lambda: forecast.render(fcs, more_fcs),
        "serving": lambda: serving.render(serv),
        "versions": lambda: versions.render(served, now=now),
        "retrain": lambda: retrain.render(jobs, more_jobs),
    }
    sections = []
    for key in SECTIONS:
        sections.append(renderers[key]())
        if on_section is not None:
            on_section(key)
    return sections


def render_html(
    kb: KnowledgeBase,
    generated: datetime,
    on_section: Callable[[str], None] | None = None,
) -> tuple[str, list[Section]]:
    """The report page as a string and its sections; ``generated`` is stamped on the page."""
    sections = build_sections(kb, on_section, now=generated)
    html = page(
        TITLE,
        generated.isoformat(timespec="seconds"),
        kb.safe_url,
        sections,
    )
    return html, sections


def write_report(
    kb: KnowledgeBase,
    out_dir: Path,
    generated: datetime,
    on_section: Callable[[str], None] | None = None,
) -> ReportResult:
    """Render the report and write it to ``out_dir/index.html`` atomically.

    Raises
    ------
    EnvironmentProblem
        ``out_dir`` cannot be created or written.
    """
    out_dir = Path(out_dir)
    target = out_dir / "index.html"
    tmp = out_dir / ".index.html.tmp"
    if out_dir.exists() and not out_dir.is_dir():
        raise EnvironmentProblem(f"report output {out_dir} exists and is not a directory")
    try:
        # Create the directory first: fail before the (seconds long) rendering.
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EnvironmentProblem(
            f"cannot create the report directory {out_dir}: {err.strerror or err}"
        ) from err
    html, sections = render_html(kb, generated, on_section)
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise EnvironmentProblem(
            f"cannot write the report to {target}: {err.strerror or err}"
        ) from err
    return ReportResult(
        path=target,
        figures={s.key: s.figures for s in sections},
        size_bytes=len(html.encode("utf-8")),
    )


__all__ = ["SECTIONS", "ReportResult", "build_sections", "render_html", "write_report"]
