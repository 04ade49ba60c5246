"""``edgewise bench serving``: every autoscaling policy over weeks of trace, simulated.

Orchestration only: load and scale the trace, build flavors with capacities from a
service-time profile, run :func:`edgewise.sim.serving.simulate` per policy (reactive
baselines swept over their targets) and compare costs at equal service.

The trace is simulated in trace time. Hourly counts become per-second rates by linear
interpolation between bin centres, scaled so that the simulated window peaks at
``peak_rps``; arrivals are Poisson per second. The sub-hour structure is synthetic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from edgewise.errors import SpecError, TraceError, UnknownNameError
from edgewise.serving.policies import POLICY_NAMES, FlavorOption, Policy, make_policy
from edgewise.serving.policies.base import service_quantiles
from edgewise.sim.queueing import ServiceProfile, lognormal_profile, speed_factor
from edgewise.sim.serving import SimConfig, SimFlavor, SimResult, simulate

#: Flavor catalog used when none is given (same as ``examples/flavors.yaml``).
DEFAULT_FLAVORS: tuple[tuple[str, float, float], ...] = (
    ("small", 0.5, 0.025),
    ("medium", 1.0, 0.048),
    ("large", 2.0, 0.096),
)
HPA_TARGETS = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
KPA_TARGETS = (0.5, 0.6, 0.7, 0.8)
RAY_TARGETS = (0.5, 1.0, 2.0)
#: Design percentiles of the clairvoyant's cost/attainment curve (``--oracle-sweep``).
ORACLE_PERCENTILES = (98.0, 99.5, 99.9, 99.95, 99.99)
WARMUP_S = 3600


@dataclass(frozen=True)
class Workload:
    """Per-second true rates (warm-up first) and the hourly history before them."""

    rate_rps: np.ndarray
    history: tuple[float, ...]
    bin_s: float
    warmup_s: int
    start: str
    peak_rps: float


def load_workload(
    trace: str | Path,
    days: float,
    peak_rps: float,
    time_col: str | None = None,
    value_col: str | None = None,
    history_bins: int = 24 * 7 * 6,
) -> Workload:
    """The last ``days`` of ``trace`` as per-second rates peaking at ``peak_rps``."""
    from edgewise.workloads.traces import bin_seconds, load_trace

    series = load_trace(trace, time_col, value_col)
    bin_s = bin_seconds(series)
    if bin_s < 1:
        raise TraceError(f"{trace}: bins of {bin_s} s are shorter than a second")
    n_win = round(days * 86400 / bin_s)
    warm_bins = max(1, int(np.ceil(WARMUP_S / bin_s)))
    if n_win < 1:
        raise SpecError(f"--days {days}: shorter than one bin of the trace ({bin_s:g} s)")
    values = series.to_numpy(dtype=float)
    if len(values) < n_win + warm_bins:
        raise TraceError(
            f"{trace}: {len(values)} bins, fewer than the {n_win + warm_bins} that "
            f"{days:g} days plus a warm-up need"
        )
    window = values[-n_win:]
    top = float(window.max())
    if top <= 0:
        raise TraceError(f"{trace}: the last {days:g} days hold no request")
    rates = values * (peak_rps / top)
    first = len(values) - n_win - warm_bins  # first simulated bin (warm-up)
    warmup_s = int(warm_bins * bin_s)
    n_sec = round((n_win + warm_bins) * bin_s)
    centres = (np.arange(first - 1, len(values)) - first + 0.5) * bin_s
    lo = max(0, first - 1)
    known = rates[lo:]
    centres = centres[len(centres) - len(known) :]
    per_second = np.interp(np.arange(n_sec) + 0.5, centres, known)
    history = tuple(float(v) for v in rates[max(0, first - history_bins) : first])
    return Workload(
        rate_rps=per_second,
        history=history,
        bin_s=bin_s,
        warmup_s=warmup_s,
        start=str(series.index[-n_win]),
        peak_rps=float(peak_rps),
    )


def service_profile(model: str) -> ServiceProfile:
    """Measured profile of ``model`` from the KB if there is one, else the default."""
    try:
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        from edgewise.kb import KnowledgeBase
        from edgewise.kb import models as m
    except ImportError:
        return lognormal_profile()
    try:
        kb = KnowledgeBase.open()
        with kb.transaction() as s:
            rows = (
                s.execute(
                    select(m.CapacityProfile)
                    .where(m.CapacityProfile.model == model)
                    .order_by(m.CapacityProfile.id.desc())
                )
                .scalars()
                .all()
            )
            for row in rows:
                samples = (row.service_ms or {}).get("samples") or []
                if len(samples) >= 20:
                    return ServiceProfile(
                        np.asarray(samples, dtype=float),
                        float(row.cpus),
                        f"KB capacity profile {row.model}/{row.flavor} on {row.host} "
                        f"({len(samples)} samples at {row.cpus:g} CPU)",
                    )
    except SQLAlchemyError:
        pass
    return lognormal_profile()


def build_flavors(
    profile: ServiceProfile,
    slo_ms: float,
    percentile: float,
    catalog: Sequence[tuple[str, float, float]] = DEFAULT_FLAVORS,
    max_replicas: int = 1000,
    vertical_factor: float = 2.0,
    max_speedup: float = 2.0,
) -> list[SimFlavor]:
    """Flavors with per-replica SLO capacities from the capacity model."""
    from edgewise.serving.capacity import capacity_rps

    out = []
    for name, cpus, price in catalog:
        factor = float(speed_factor(profile.cpus, cpus, max_speedup))
        prof = profile.scaled(factor, cpus=cpus)
        cap = float(capacity_rps(prof.samples_ms, slo_ms, percentile, n_requests=50_000))
        option = FlavorOption(
            name=name,
            cpus=cpus,
            capacity_rps=cap,
            price_per_hour=price,
            max_replicas=max_replicas,
            max_cpus=cpus * vertical_factor,
            service_ms_mean=prof.mean_ms,
            service_ms_quantiles=service_quantiles(prof.samples_ms),
        )
        out.append(SimFlavor(option, prof))
    return out


def _settings(name: str, wl: Workload, oracle_sweep: bool = False) -> list[tuple[str, Policy]]:
    if name == "oracle" and oracle_sweep:
        return [("oracle", make_policy("oracle"))] + [
            (f"oracle@p{p:g}", make_policy("oracle", design_percentile=p))
            for p in ORACLE_PERCENTILES
        ]
    if name == "hpa":
        return [(f"hpa@{t:.0%}", make_policy("hpa", target_utilisation=t)) for t in HPA_TARGETS]
    if name == "kpa":
        return [(f"kpa@{t:g}", make_policy("kpa", target_concurrency=t)) for t in KPA_TARGETS]
    if name == "rayserve":
        return [
            (f"rayserve@{t:g}", make_policy("rayserve", target_ongoing_requests=t))
            for t in RAY_TARGETS
        ]
    if name == "static":
        return [("static", make_policy("static", peak_rps=float(wl.rate_rps.max())))]
    return [(name, make_policy(name))]


def run(
    trace: str | Path = "bikeshare",
    time_col: str | None = None,
    value_col: str | None = None,
    days: float = 14.0,
    startup_s: int = 60,
    slo_ms: float = 100.0,
    policies: Sequence[str] = POLICY_NAMES,
    seed: int = 0,
    peak_rps: float = 200.0,
    model: str = "mobilenet_v2",
    baseline_flavor: str = "medium",
    percentile: float = 99.0,
    series: bool = False,
    single_setting: bool = False,
    progress: Callable[[str, float], None] | None = None,
    max_replicas: int = 1000,
    oracle_sweep: bool = False,
) -> dict[str, Any]:
    """Simulate ``policies`` over the last ``days`` of ``trace``; the benchmark's JSON.

    Predictive policies (edgewise, oracle, static) may use every flavor; the reactive
    baselines scale one deployment of ``baseline_flavor``, swept over their targets.
    With ``oracle_sweep`` the clairvoyant also runs at the design percentiles
    :data:`ORACLE_PERCENTILES`, and each setting is compared with HPA by the same
    equal-attainment rule as ours: the cost ratio no forecast can beat with this planner.
    """
    unknown = [p for p in policies if p not in POLICY_NAMES]
    if unknown:
        raise UnknownNameError(f"unknown policy {unknown[0]!r}; known: {', '.join(POLICY_NAMES)}")
    wl = load_workload(trace, days, peak_rps, time_col, value_col)
    profile = service_profile(model)
    if max_replicas < 1:
        raise SpecError(f"--max-replicas {max_replicas}: needs at least one replica")
    flavors = build_flavors(profile, slo_ms, percentile, max_replicas=max_replicas)
    names = [f.name for f in flavors]
    if baseline_flavor not in names:
        raise UnknownNameError(f"unknown flavor {baseline_flavor!r}; known: {', '.join(names)}")
    single = [f for f in flavors if f.name == baseline_flavor]
    config = SimConfig(
        slo_ms=slo_ms,
        slo_percentile=percentile,
        startup_s=int(startup_s),
        warmup_s=wl.warmup_s,
        seed=seed,
        history_bin_s=wl.bin_s,
    )
    results: dict[str, list[tuple[str, SimResult]]] = {}
    for name in policies:
        reactive = name in ("hpa", "kpa", "rayserve")
        fl = single if reactive else flavors
        runs = []
        settings = _settings(name, wl, oracle_sweep)
        if single_setting:
            settings = [_default_setting(name, settings)]
        for label, policy in settings:
            cb = None if progress is None else (lambda x, lab=label: progress(lab, x))
            t0, c0 = time.perf_counter(), time.process_time()
            res = simulate(
                policy,
                wl.rate_rps,
                fl,
                config,
                history=wl.history,
                initial={baseline_flavor if reactive else fl[0].name: 1},
                progress=cb,
                series=series,
            )
            res.wall_s = time.perf_counter() - t0
            res.cpu_s = time.process_time() - c0
            runs.append((label, res))
        results[name] = runs
    return _report(results, wl, profile, flavors, config, trace, days, peak_rps, baseline_flavor)


def _report(
    results: dict[str, list[tuple[str, SimResult]]],
    wl: Workload,
    profile: ServiceProfile,
    flavors: Sequence[SimFlavor],
    config: SimConfig,
    trace: str | Path,
    days: float,
    peak_rps: float,
    baseline_flavor: str,
) -> dict[str, Any]:
    per_policy: dict[str, Any] = {}
    for name, runs in results.items():
        entry = _pick(name, runs)
        per_policy[name] = entry
    out: dict[str, Any] = {
        "trace": str(trace),
        "window_start": wl.start,
        "days": days,
        "peak_rps": peak_rps,
        "mean_rps": float(wl.rate_rps[wl.warmup_s :].mean()),
        "startup_s": config.startup_s,
        "slo_ms": config.slo_ms,
        "slo_percentile": config.slo_percentile,
        "seed": config.seed,
        "service_profile": profile.source,
        "flavors": [
            {
                "name": f.name,
                "cpus": f.option.cpus,
                "price_per_hour": f.option.price_per_hour,
                "capacity_rps": round(f.option.capacity_rps, 3),
                "max_cpus": f.option.max_cpus,
            }
            for f in flavors
        ],
        "baseline_flavor": baseline_flavor,
        "max_replicas": max(f.option.max_replicas for f in flavors),
        "policies": per_policy,
    }
    ours = per_policy.get("edgewise")
    hpa_runs = results.get("hpa")
    if ours is not None:
        out["slo_attainment"] = ours["slo_attainment"]
        if hpa_runs:
            ref = vs_hpa(ours["slo_attainment"], ours["cost"], hpa_runs)
            out["hpa_reached_our_attainment"] = ref["hpa_reached"]
            out["hpa_reference"] = ref["hpa_reference"]
            out["cost_ratio_vs_hpa"] = ref["cost_ratio_vs_hpa"]
        if "oracle" in per_policy:
            oc = per_policy["oracle"]["cost"]
            out["cost_ratio_vs_oracle"] = ours["cost"] / oc if oc > 0 else None
    if "oracle" in per_policy and hpa_runs:
        main = per_policy["oracle"]
        entries = [main, *main.get("sweep", [])]
        for e in entries:
            e.update(vs_hpa(e["slo_attainment"], e["cost"], hpa_runs))
        out["oracle_cost_ratio_vs_hpa"] = main["cost_ratio_vs_hpa"]
        reached = [e for e in entries if e["hpa_reached"] and e["cost_ratio_vs_hpa"] is not None]
        if reached:
            best = min(reached, key=lambda e: e["cost_ratio_vs_hpa"])
            out["oracle_best_cost_ratio_vs_hpa"] = best["cost_ratio_vs_hpa"]
            out["oracle_best_setting"] = best["setting"]
    return out


def vs_hpa(
    attainment: float, cost: float, hpa_runs: Sequence[tuple[str, SimResult]]
) -> dict[str, Any]:
    """Cost over the cheapest HPA setting whose attainment is at least ``attainment``.

    When no setting reaches it, over the setting with the best attainment, and
    ``hpa_reached`` is false.
    """
    reach = [(lab, r) for lab, r in hpa_runs if r.slo_attainment >= attainment]
    if reach:
        label, ref = min(reach, key=lambda x: x[1].cost)
    else:
        label, ref = max(hpa_runs, key=lambda x: x[1].slo_attainment)
    return {
        "hpa_reference": label,
        "hpa_reached": bool(reach),
        "cost_ratio_vs_hpa": cost / ref.cost if ref.cost > 0 else None,
    }


_DEFAULT_SETTING = {
    "hpa": "hpa@60%",
    "kpa": "kpa@0.7",
    "rayserve": "rayserve@2",
    "oracle": "oracle",
}


def _default_setting(name: str, settings: list[tuple[str, Policy]]) -> tuple[str, Policy]:
    want = _DEFAULT_SETTING.get(name)
    return next((s for s in settings if s[0] == want), settings[0])


def _pick(name: str, runs: list[tuple[str, SimResult]]) -> dict[str, Any]:
    """One entry per policy: the single run, or for a sweep the default setting + the sweep."""
    if len(runs) == 1:
        return {"setting": runs[0][0], **runs[0][1].to_dict(series=bool(runs[0][1].minutes))}
    default = _DEFAULT_SETTING.get(name)
    label, res = next(((lab, r) for lab, r in runs if lab == default), runs[0])
    entry = {"setting": label, **res.to_dict(series=bool(res.minutes))}
    entry["sweep"] = [{"setting": lab, **r.to_dict()} for lab, r in runs]
    return entry


# ---------------------------------------------------------------------------- CLI


def register_bench(bench_app: typer.Typer) -> None:
    """Add the ``serving`` subcommand to the ``edgewise bench`` group."""

    @bench_app.command("serving")
    def serving_cmd(
        trace: Annotated[str, typer.Option(help="'bikeshare' or a CSV file")] = "bikeshare",
        time_col: Annotated[str | None, typer.Option(help="time column of a CSV")] = None,
        value_col: Annotated[str | None, typer.Option(help="value column of a CSV")] = None,
        days: Annotated[float, typer.Option(min=0.01, help="last N days of the trace")] = 14.0,
        startup_s: Annotated[int, typer.Option(min=0, help="replica start-up (s)")] = 60,
        slo_ms: Annotated[float, typer.Option(min=0.001, help="latency SLO (ms)")] = 100.0,
        policies: Annotated[str, typer.Option(help="comma-separated")] = ",".join(POLICY_NAMES),
        seed: Annotated[int, typer.Option()] = 0,
        peak_rps: Annotated[
            float, typer.Option(min=0.001, help="scale the trace to this peak")
        ] = 200.0,
        model: Annotated[str, typer.Option(help="model whose KB profile is used")] = "mobilenet_v2",
        max_replicas: Annotated[
            int, typer.Option(min=1, help="most replicas of each flavor")
        ] = 1000,
        oracle_sweep: Annotated[
            bool,
            typer.Option(
                "--oracle-sweep",
                help="also run the clairvoyant at higher design percentiles (its cost "
                "against attainment, compared with HPA like ours)",
            ),
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """Simulate autoscaling policies over a trace and compare SLO attainment and cost."""
        from rich.console import Console
        from rich.progress import Progress

        names = [p.strip() for p in policies.split(",") if p.strip()]
        console = Console(stderr=True)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("simulating", total=None)

            def cb(label: str, frac: float) -> None:
                bar.update(task, description=f"simulating {label}", completed=frac, total=1.0)

            out = run(
                trace=trace,
                time_col=time_col,
                value_col=value_col,
                days=days,
                startup_s=startup_s,
                slo_ms=slo_ms,
                policies=names,
                seed=seed,
                peak_rps=peak_rps,
                model=model,
                progress=cb,
                max_replicas=max_replicas,
                oracle_sweep=oracle_sweep,
            )
        if as_json:
            typer.echo(json.dumps(out, indent=2))
            return
        from rich.table import Table

        table = Table(title=f"serving, {days:g} days of {trace}, SLO {slo_ms:g} ms")
        for col in ("policy", "setting", "attainment", "cost", "actions", "reversals"):
            table.add_column(col)
        for name, e in out["policies"].items():
            table.add_row(
                name,
                e["setting"],
                f"{e['slo_attainment']:.4%}",
                f"{e['cost']:.3f}",
                str(e["scale_actions"]),
                str(e["reversals_5min"]),
            )
        Console().print(table)
        for key in (
            "cost_ratio_vs_hpa",
            "cost_ratio_vs_oracle",
            "hpa_reached_our_attainment",
            "oracle_cost_ratio_vs_hpa",
            "oracle_best_cost_ratio_vs_hpa",
            "oracle_best_setting",
        ):
            if key in out:
                typer.echo(f"{key}: {out[key]}")
