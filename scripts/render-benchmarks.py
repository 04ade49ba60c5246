#!/usr/bin/env python3
"""Write docs/benchmarks.md and the README's results table from the benchmarks' JSON.

Reads ``benchmarks/results/NAME.json`` (written by ``scripts/bench-all.sh``: the bench's
JSON wrapped with the host's fingerprint and the exact command) and the prose of
``benchmarks/descriptions.yaml``, and writes, per benchmark, what it measures, why, the
method and its current figures with the machine they came from. A benchmark without
JSON is listed as not run yet; without a ``gpu-check`` result the page says the GPU path
is untested. The README's table between ``<!-- results:begin -->`` and
``<!-- results:end -->`` is regenerated from the same JSON.

Usage (with the project's virtualenv)::

    .venv/bin/python scripts/render-benchmarks.py            # write both
    .venv/bin/python scripts/render-benchmarks.py --check    # exit 1 where they differ

Rendering is pure (:func:`render_page`, :func:`render_table`: text from data); only
:func:`main` reads and writes files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DESCRIPTIONS = ROOT / "benchmarks" / "descriptions.yaml"
PAGE = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
#: Host CPU steal (share of the run) and 1-minute load per core above which the page
#: marks a run's host as busy: its latency figures are then read against that.
BUSY_STEAL, BUSY_LOAD_PER_CORE = 0.05, 1.0
NOT_RUN = "not run yet"

Result = Mapping[str, Any]


def _get(doc: Any, path: str) -> Any:
    """``doc['a']['b']`` for ``'a.b'``; ``KeyError`` naming the path where absent."""
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            raise KeyError(path)
        doc = doc[part]
    return doc


def pct(x: float, digits: int = 1) -> str:
    """A fraction as a percentage (``0.9992`` -> ``99.9%``)."""
    return f"{100 * x:.{digits}f}%"


def _met(ok: bool) -> str:
    return "" if ok else ": **not met**"


# ------------------------------------------------------------------ headlines (targets)
def _telemetry(r: Result) -> str:
    v = float(_get(r, "overhead_pct_at_1hz"))
    return f"sampler overhead {v:.2f}% of a core at 1 Hz (< 1%{_met(v < 1.0)})"


def _forecast(r: Result) -> str:
    ratio, cov = float(_get(r, "mae_ratio")), float(_get(r, "coverage_90"))
    return (
        f"MAE {ratio:.3f} of the weekly naive (≤ 0.75{_met(ratio <= 0.75)}), "
        f"90% coverage {cov:.3f}, {float(_get(r, 'fit_predict_ms')):.0f} ms per fit"
    )


def _forecast_traces(r: Result) -> str:
    traces = {str(t["trace"]): t for t in _get(r, "traces")}
    median, worst = float(_get(r, "median_mae_ratio")), float(_get(r, "worst_mae_ratio"))
    cov = float(_get(r, "worst_coverage_90"))
    bike = traces.get("bikeshare", {}).get("mae_ratio")
    fit = float(_get(r, "median_fit_predict_ms"))
    slow_name, slow = max(
        ((name, float(t["fit_predict_ms"])) for name, t in traces.items()), key=lambda nt: nt[1]
    )
    parts = [
        f"{len(traces)} traces: median MAE {median:.3f} of the best seasonal naive "
        f"(≤ 0.85{_met(median <= 0.85)}), worst {worst:.3f} (≤ 1.0{_met(worst <= 1.0)})"
    ]
    if bike is not None:
        parts.append(f"bikeshare {float(bike):.3f} (≤ 0.75{_met(float(bike) <= 0.75)})")
    parts.append(
        f"90% coverage farthest from 0.90: {cov:.3f} (0.85–0.95{_met(0.85 <= cov <= 0.95)})"
    )
    parts.append(
        f"fit and forecast {fit:.0f} ms per origin, median over the traces "
        f"(≤ 250{_met(fit <= 250)}; slowest {slow_name} {slow:.0f} ms)"
    )
    missed = [
        name
        for name, t in traces.items()
        if t.get("mae_ratio") is None
        or float(t["mae_ratio"]) > 1.0
        or not 0.85 <= float(t["coverage_90"]) <= 0.95
    ]
    if missed:
        parts.append(f"outside the per-trace targets: {', '.join(missed)}")
    return ", ".join(parts)


def _plan(r: Result) -> str:
    p99 = float(_get(r, "solve_ms_p99"))
    exact = (
        "exact = brute force" if _get(r, "exact_matches_bruteforce") else "**exact ≠ brute force**"
    )
    return f"p99 {p99:.0f} ms (≤ 100{_met(p99 <= 100)}), {exact}"


def _interference(r: Result) -> str:
    cov = float(_get(r, "interval_coverage_90"))
    floor, excess = r.get("noise_floor_ape"), r.get("excess_error")
    parts = [f"p50 median APE {float(_get(r, 'median_ape')):.1f}%"]
    if floor is not None and excess is not None:
        parts.append(
            f"noise floor {floor:.1f}%, excess error {excess:.2f} (≤ 1.25{_met(excess <= 1.25)})"
        )
    else:
        parts.append("no noise floor in this run")
    parts.append(f"90% intervals cover {cov:.2f} (0.85–0.95{_met(0.85 <= cov <= 0.95)})")
    if r.get("host_steady") is False:
        parts.append(f"host unsteady: {r.get('host_unsteady_reason')}")
    return ", ".join(parts)


def _capacity(r: Result) -> str:
    errs = [
        float(f["validation"]["rel_error"])
        for f in _get(r, "flavors")
        if f.get("validation") and f["validation"].get("rel_error") is not None
    ]
    if not errs:
        return "no flavor was load-tested"
    inside = sum(abs(e) <= 0.15 for e in errs)
    shown = ", ".join(f"{100 * e:+.1f}%" for e in errs)
    return (
        f"p99 at 80% of the derived capacity vs the load test: {inside} of {len(errs)} "
        f"within 15% ({shown}; ≤ 15{_met(inside == len(errs))})"
    )


def _serving(r: Result) -> str:
    att, vs_oracle = float(_get(r, "slo_attainment")), float(_get(r, "cost_ratio_vs_oracle"))
    vs_hpa = r.get("cost_ratio_vs_hpa")
    hpa = f"cost {vs_hpa:.3f} of HPA at equal attainment, " if vs_hpa is not None else ""
    return (
        f"attainment {pct(att, 2)} (≥ 99.5%{_met(att >= 0.995)}), {hpa}"
        f"{vs_oracle:.2f} of the oracle (≤ 1.15{_met(vs_oracle <= 1.15)})"
    )


def _serving_traces(r: Result) -> str:
    shown, ok = [], True
    for name, t in _get(r, "traces").items():
        ratio = float(_get(t, "cost_ratio_vs_oracle"))
        gap = float(_get(t, "slo_attainment")) - float(_get(t, "policies.oracle.slo_attainment"))
        met = ratio <= 1.05 and gap >= -0.001
        ok = ok and met
        shown.append(
            f"{name} cost {ratio:.3f} of the oracle at {100 * gap:+.2f} pt attainment"
            + ("" if met else " (**not met**)")
        )
    return (
        f"{'; '.join(shown)} (≤ 1.05 at ≥ the oracle's −0.1 pt{_met(ok)}); "
        f"worst {_get(r, 'worst_trace')}"
    )


def _serving_live(r: Result) -> str:
    att = float(_get(r, "slo_attainment"))
    return (
        f"ours {pct(att, 2)} live (≥ 99%{_met(att >= 0.99)}), simulator within "
        f"{100 * abs(float(_get(r, 'sim_live_attainment_diff'))):.2f} pt and "
        f"{pct(abs(1 - float(_get(r, 'sim_live_cost_ratio'))))} of cost"
    )


def _serving_overhead(r: Result) -> str:
    ratio, added = float(_get(r, "throughput_ratio")), float(_get(r, "added_latency_p50_ms"))
    return (
        f"throughput {ratio:.2f} of plain loops (≥ 0.7{_met(ratio >= 0.7)}), "
        f"+{added:.1f} ms p50 (≤ 5{_met(added <= 5)})"
    )


def _fleet(r: Result) -> str:
    below = int(_get(r, "services_below_slo"))
    ratio = r.get("cost_ratio_vs_best_blind")
    cost = (
        f"cost {float(ratio):.3f} of {r.get('best_blind', 'the best blind placement')} "
        f"(≤ 1.0{_met(float(ratio) <= 1.0)})"
        if ratio is not None
        else "no blind placement to compare the cost with"
    )
    synthetic = list(_get(r, "interference_synthetic"))
    measured = sorted(set(r.get("interference_models") or {}) - set(synthetic))
    if synthetic:
        source = f"interference from SYNTHETIC models ({', '.join(synthetic)}): not measured"
    elif measured:
        source = f"interference measured: {len(measured)} models profiled on the host"
    else:
        source = f"interference from {_get(r, 'interference_source')}"
    return (
        f"{len(_get(r, 'services'))} services on {_get(r, 'nodes')} nodes: "
        f"{below} below their SLO (0{_met(below == 0)}), {cost}; {source}"
    )


def _fleet_live(r: Result) -> str:
    worst, gap = float(_get(r, "max_attainment_gap_pt")), float(_get(r, "cost_gap"))
    live = _get(r, "live.slo_attainment")
    shown = ", ".join(f"{name} {pct(float(a), 2)}" for name, a in live.items())
    return (
        f"{len(live)} services on {len(_get(r, 'nodes'))} nodes emulated by CPUs, live {shown}: within {worst:.2f} pt of the simulator (≤ 1{_met(worst <= 1.0)}) "
        f"at {100 * gap:+.1f}% of its node cost (≤ 5%{_met(abs(gap) <= 0.05)})"
    )


def _rollout(r: Result) -> str:
    failed, p99 = int(_get(r, "failed_requests")), float(_get(r, "p99_during_rollout_ms"))
    slo, back = float(_get(r, "slo_ms")), bool(_get(r, "rolled_back"))
    promote_s = _get(r, "promote_s")
    promoted = (
        f"promoted in {float(promote_s):.1f} s"
        if _get(r, "promoted") and promote_s is not None
        else "**not promoted**"
    )
    return (
        f"{failed} failed requests (0{_met(failed == 0)}), p99 {p99:.0f} ms during the "
        f"rollout (≤ {slo:.0f}{_met(p99 <= slo)}), {promoted}, slow canary "
        + ("rolled back" if back else "**not rolled back**")
    )


def _retrain(r: Result) -> str:
    speedup, miss = float(_get(r, "speedup_vs_equal")), float(_get(r, "deadline_miss_rate"))
    return (
        f"{speedup:.2f}× faster than an equal split (≥ 1.5{_met(speedup >= 1.5)}), "
        f"deadline misses {pct(miss)}"
    )


def _retrain_kill(r: Result) -> str:
    return (
        f"recovery {float(_get(r, 'recovery_s')):.1f} s after {_get(r, 'killed_device')} died, "
        f"{_get(r, 'steps_lost')} steps lost"
    )


def _scale(r: Result) -> str:
    sim = max(float(p["wall_s"]) for p in _get(r, "sim_by_policy").values())
    return (
        f"10,000-device plan {float(_get(r, 'plan_10k_devices_s')):.2f} s, "
        f"{pct(float(_get(r, 'plan_gap_vs_exact')))} gap to the MILP (exact up to "
        f"{_get(r, 'exact_max_devices')} devices), 14 days × 1,000 replicas ≤ {sim:.0f} s "
        f"per policy, {float(_get(r, 'peak_rss_mb')):.0f} MB peak"
    )


def _gpu_check(r: Result) -> str:
    return (
        f"{', '.join(_get(r, 'apps'))} on {_get(r, 'device')}: p50 median APE "
        f"{float(_get(r, 'median_ape')):.1f}% (≤ 5 with dedicated cores"
        f"{_met(float(_get(r, 'median_ape')) <= 5)})"
    )


HEADLINES: dict[str, Callable[[Result], str]] = {
    "telemetry": _telemetry,
    "forecast": _forecast,
    "forecast-traces": _forecast_traces,
    "plan": _plan,
    "interference": _interference,
    "capacity": _capacity,
    "serving": _serving,
    "serving-traces": _serving_traces,
    "fleet": _fleet,
    "fleet-live": _fleet_live,
    "serving-live": _serving_live,
    "serving-overhead": _serving_overhead,
    "rollout": _rollout,
    "retrain": _retrain,
    "retrain-kill": _retrain_kill,
    "scale": _scale,
    "gpu-check": _gpu_check,
}


def headline(name: str, doc: Result | None) -> str:
    """The benchmark's headline with its targets, ``not run yet`` without a result."""
    if doc is None:
        return NOT_RUN
    try:
        return HEADLINES[name](doc["result"])
    except KeyError as err:
        return f"(its JSON lacks {err.args[0]!r}: re-run it with scripts/bench-all.sh)"


# ------------------------------------------------------------------------- the machine
def machine(host: Mapping[str, Any]) -> str:
    """The hardware a run came from, in one phrase."""
    gpus = host.get("gpus")
    gpu = ", ".join(gpus) if gpus else "no GPU"
    return (
        f"{host.get('cpu_model', '?')}, {host.get('cores', '?')} cores, "
        f"{host.get('memory_gb', '?')} GB, {gpu}"
    )


def conditions(host: Mapping[str, Any]) -> str:
    """What the host was doing over the run, with a warning when it was busy."""
    steal = host.get("cpu_steal_frac")
    load = host.get("loadavg_1m") or {}
    cores = host.get("cores_usable") or host.get("cores") or 1
    started = host.get("started")
    when = datetime.fromisoformat(started).strftime("%Y-%m-%d %H:%M UTC") if started else "?"
    commit = (host.get("commit") or "?")[:9] + (" with local changes" if host.get("dirty") else "")
    text = (
        f"CPU steal {pct(steal) if steal is not None else '?'}, busy "
        f"{pct(host['cpu_busy_frac'], 0) if host.get('cpu_busy_frac') is not None else '?'}, "
        f"load {load.get('mean', '?')} (1-min mean; max {load.get('max', '?')}) over "
        f"{host.get('wall_s', '?')} s from {when}, commit {commit}"
    )
    busy = []
    if steal is not None and steal > BUSY_STEAL:
        busy.append(f"steal above {pct(BUSY_STEAL, 0)}")
    if load.get("mean") is not None and load["mean"] > BUSY_LOAD_PER_CORE * cores:
        busy.append(f"more runnable threads than its {cores} cores")
    if busy:
        text += f". **Busy host** ({', '.join(busy)}): latencies read high"
    return text


# ---------------------------------------------------------------------------- the page
def _section(name: str, prose: Mapping[str, str], doc: Result | None) -> list[str]:
    out = [f"## {prose['title']}", "", f"`{name}` · pillar: {prose['pillar']}", ""]
    out += [f"**What it measures.** {prose['what']}", "", f"**Why.** {prose['why']}", ""]
    out += [f"**Method.** {prose['method']}", ""]
    if doc is None:
        out += [f"**Current figures:** {NOT_RUN}. Run `scripts/bench-all.sh --only {name}`.", ""]
        return out
    host = doc.get("host") or {}
    if doc.get("setup"):
        out += [f"**Setup.** `{doc['setup']}` (`$RUN`: the run's temporary directory)", ""]
    out += [f"**Command.** `{doc.get('command', '?')}`", ""]
    out += [f"**Current figures:** {headline(name, doc)}.", ""]
    out += [f"Measured on {machine(host)}; {conditions(host)}.", ""]
    return out


def _gpu_section(doc: Result | None) -> list[str]:
    title = "## The GPU path"
    if doc is None:
        return [
            title,
            "",
            "**Untested.** No machine with a GPU has run `scripts/gpu-check.sh` "
            "(`scripts/bench-all.sh --only gpu-check` records it), so the CUDA serving and "
            "GPU-stressor paths have no figures here.",
            "",
        ]
    host = doc.get("host") or {}
    return [
        title,
        "",
        f"**Command.** `{doc.get('command', '?')}`",
        "",
        f"**Current figures:** {headline('gpu-check', doc)}.",
        "",
        f"Measured on {machine(host)}; {conditions(host)}.",
        "",
    ]


def render_page(prose: Mapping[str, Mapping[str, str]], docs: Mapping[str, Result]) -> str:
    """docs/benchmarks.md from the descriptions and the results (name -> wrapped JSON)."""
    machines: dict[str, list[str]] = {}
    for name in prose:
        if name in docs:
            machines.setdefault(machine(docs[name].get("host") or {}), []).append(name)
    lines = [
        "# Benchmarks",
        "",
        "<!-- generated by scripts/render-benchmarks.py from benchmarks/results/*.json "
        "and benchmarks/descriptions.yaml: do not edit by hand -->",
        "",
        "Each benchmark below says what it measures, why, how, and its current figures "
        "with the machine and the conditions they came from. Every figure is what a run "
        "printed into `benchmarks/results/NAME.json`; a benchmark without one is marked "
        f"*{NOT_RUN}*. To refresh one: `flock /tmp/edgewise-slow.lock scripts/bench-all.sh "
        "--only NAME`, then `.venv/bin/python scripts/render-benchmarks.py` (which also "
        "regenerates the README's results table; `--check` fails when either is stale).",
        "",
        "## Machines",
        "",
    ]
    lines += [f"- {m}: {', '.join(names)}" for m, names in machines.items()] or [
        f"- none: every benchmark is {NOT_RUN}"
    ]
    lines += ["", "## Summary", "", *table_rows(prose, docs), ""]
    for name, p in prose.items():
        lines += _section(name, p, docs.get(name))
    lines += _gpu_section(docs.get("gpu-check"))
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------------- the README table
def table_rows(prose: Mapping[str, Mapping[str, str]], docs: Mapping[str, Result]) -> list[str]:
    """The results table: one row per benchmark (retrain-kill folded into retrain)."""
    rows = ["| pillar | benchmark | headline (target) |", "|---|---|---|"]
    for name, p in prose.items():
        if name == "retrain-kill":
            continue
        text = headline(name, docs.get(name))
        if name == "retrain" and "retrain-kill" in docs:
            text += "; " + headline("retrain-kill", docs["retrain-kill"])
        rows.append(f"| {p['pillar']} | `{p['short']}` | {text} |")
    return rows


def render_table(prose: Mapping[str, Mapping[str, str]], docs: Mapping[str, Result]) -> str:
    """The README block between the markers: the line introducing the table, the table."""
    hosts = sorted({machine(d.get("host") or {}) for d in docs.values()})
    where = "; ".join(hosts) if hosts else "no machine yet"
    return "\n".join(
        [
            BEGIN,
            f"Generated from `scripts/bench-all.sh` output (measured on {where}); "
            "[docs/benchmarks.md](docs/benchmarks.md) has each benchmark's method, command, "
            "machine and conditions.",
            "",
            *table_rows(prose, docs),
            END,
        ]
    )


def splice_readme(readme: str, block: str) -> str:
    """``readme`` with the text between the results markers replaced by ``block``."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no {BEGIN} ... {END} block")
    return readme[:start] + block + readme[end + len(END) :]


# --------------------------------------------------------------------------------- I/O
def load(results: Path, descriptions: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(descriptions, name -> wrapped result) from the files."""
    try:
        import yaml
    except ImportError:
        sys.exit("render-benchmarks: run it with the project's virtualenv: .venv/bin/python")
    prose = yaml.safe_load(descriptions.read_text())
    docs = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    unknown = sorted(set(docs) - set(prose) - {"gpu-check"})
    if unknown:
        sys.exit(f"render-benchmarks: no description of {', '.join(unknown)} in {descriptions}")
    return prose, docs


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) docs/benchmarks.md and the README table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 where the files are stale")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--page", type=Path, default=PAGE)
    ap.add_argument("--readme", type=Path, default=README)
    args = ap.parse_args(argv)
    prose, docs = load(args.results, DESCRIPTIONS)
    page = render_page(prose, docs)
    readme = splice_readme(args.readme.read_text(), render_table(prose, docs))
    stale = [
        str(path)
        for path, text in ((args.page, page), (args.readme, readme))
        if not path.exists() or path.read_text() != text
    ]
    if args.check:
        for path in stale:
            print(f"{path} differs from {args.results}: run scripts/render-benchmarks.py")
        return 1 if stale else 0
    args.page.parent.mkdir(parents=True, exist_ok=True)
    args.page.write_text(page)
    args.readme.write_text(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
