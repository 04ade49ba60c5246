"""``edgewise report``: one self-contained HTML page from the knowledge base.

The page (``OUT/index.html``) embeds every figure as a base64 PNG ``data:`` URI, loads
nothing from the network and runs no script. It opens with a summary table (key numbers
per pillar), then one section per pillar. A section with nothing to show says so in
one sentence naming the command that produces its data.

Reading is an adapter (one read-only snapshot of the KB into plain dataclasses, each
section's ``load``); rendering is pure (each section's ``render``, matplotlib Agg
figures on private ``Figure`` objects, every text escaped with :func:`html.escape`).

Data contract
-------------
The report reads exactly these rows and keys (all optional keys may be absent; a JSON
``null`` where a number is expected is drawn as a gap). Times are seconds, latencies
milliseconds, fractions in [0, 1].

1. **Profile**

   - ``FittedModel`` rows with ``kind='surrogate'``, ``name`` = the app; the latest
     ``version`` of each app is shown. ``metrics`` may hold

     - ``holdout``: list of ``{"measured_p50", "predicted_p50", "lower_p50",
       "upper_p50", "measured_p99", "predicted_p99"}`` (ms) -> predicted-vs-measured
       scatter with interval error bars and the y = x line; the caption gives the
       median absolute percentage error (APE) of p50 and p99 and the p50 interval
       coverage;
     - ``learning_curve``: list of ``{"runs": int, "cv_median_ape": float,
       "strategy": "active" | "lhs"}`` -> CV median APE vs runs, one line per
       strategy;
     - any other scalar entries (``p50``, ``p99`` CV scores...) are listed in a table.

   - ``Campaign`` rows (newest first) with their ``Run`` rows: ``achieved["cpu"]`` on
     x, ``latency["p50"]`` and ``latency["p99"]`` on y; ``status`` 'ok' filled,
     'flagged' hollow, 'failed' left out. The campaign's target is
     ``Workload.name`` of ``target_workload_id``.

2. **Forecast**: ``Forecast`` rows, the newest per ``(series, method)``. ``values`` =
   ``{"mean": [...], "lower": {"90": [...]}, "upper": {"90": [...]},
   "actual": [...] (optional), "history": [...] (optional)}``; the horizon starts at
   step 0, ``history`` is drawn at steps ``-len(history) .. -1``. Every level present
   in ``lower``/``upper`` is a band; with ``actual`` the caption and summary give MAE,
   MAPE and the widest interval's coverage.

3. **Serving**: ``Plan`` rows with ``kind`` in ``('replay', 'serving-sim')``.
   ``inputs`` = ``{"policy", "trace", "start", "hours", "speedup", "slo_ms", ...}``;
   ``decision`` = ``{"summary": {"slo_attainment", "cost", "scale_actions", ...},
   "series": {"t": [...], "true_rps": [...], "replicas": [...], "cpus": [...],
   "p99_ms": [...]}}`` (series lists as long as ``t``); ``cost`` (the column; falls
   back to ``summary["cost"]``). Drawn: one figure per (kind, policy), its newest run
   (replicas and CPUs against time, load on a twin axis; p99 against ``slo_ms``), and
   one attainment-vs-cost scatter over all runs, each point labelled by policy. Also
   ``ScalingEvent`` counts grouped by ``(run_key, policy)``.

4. **Model versions served**: ``ServedVersion`` rows (``served_versions``, written by
   ``edgewise serve`` and ``edgewise rollout``), grouped by ``service``: per service a
   timeline (one bar row per version, ``serving`` intervals solid, ``canary`` ones
   hatched, an open interval drawn to the report's time) and a table
   of version, role, from, until and the reasons each interval began and ended.

5. **Retrain**: ``TrainingJob`` rows (newest first). ``metrics`` =
   ``{"accuracy_before", "accuracy_after", "train_s",
   "timeline": [{"device", "step", "t_start", "t_end"}],
   "failure": {"device", "t_kill", "t_detect", "t_resume"} (optional),
   "background": {DEVICE: {"p50_ms", "p99_ms", "deadline_ms", "miss_rate"}}}`` ->
   a per-device Gantt-like timeline (time from the first step; kill, detection and
   resumption marked, the recovery window shaded) and background p99 vs deadline bars
   per device.

6. **Summary**: the key numbers of each section, from the same rows.

Usage
-----
``edgewise report --out report/ [--db URL]``, or from Python::

    from datetime import UTC, datetime
    from pathlib import Path
    from edgewise.kb import KnowledgeBase
    from edgewise.report import write_report

    result = write_report(KnowledgeBase.open(), Path("report"), datetime.now(UTC))
"""

from __future__ import annotations

from edgewise.report.render import (
    SECTIONS,
    ReportResult,
    build_sections,
    render_html,
    write_report,
)

__all__ = ["SECTIONS", "ReportResult", "build_sections", "render_html", "write_report"]
