"""``edgewise bench interference``: prediction error of profiled interference models.

For each app (target pinned to one CPU, one torch thread; by default the CPU stressor
shares that CPU and the other stressors run on the host's other CPUs, see ``placement``):

1. a one-shot Latin-hypercube campaign of ``budget`` runs, then an active campaign of
   ``budget`` runs (both with solo baselines every ``solo_every`` runs; the active
   model is stored last, so it is the one :class:`Predictor` uses);
2. ``holdout`` fresh stress configurations drawn uniformly with ``seed``, with solo
   baselines before, every ``solo_every // 2`` points and after them. Predictions use
   the campaign's stored solo baseline (as :class:`Predictor` does); the error of
   predictions rescaled by a fresh solo baseline (interpolated between the held-out
   baselines around the point, as the campaign's runs are) is reported as
   ``median_ape_drift_corrected``;
3. ``repeats`` identical runs at the centre of the space: the run-to-run noise floor.

Every figure is stated against the noise of the same run: ``noise_floor_ape`` is the
median p50 error a perfect predictor scores against single windows (from the repeated
held-out windows and the identical centre runs), ``excess_error`` the model's median
error against single windows over it (1 is as good as the noise allows), and
``host_steady`` says whether the host was steady enough to judge them, with
``host_unsteady_reason`` naming each bound crossed (CPU steal over the run, the spread of
the solo reference windows, the noise floor itself; see
:func:`edgewise.interference.campaign.holdout.judge_host`).

A held-out point is one run's measurement, as noisy as any run; ``holdout_repeats``
measures each point that many times and scores against the median of each latency
figure (the mean achieved vector), so that the error reported is the model's more than
the truth's. The error against the first repeat alone is reported beside it
(``median_ape_single_window``).

Held-out learning curves (both designs refitted on their first k runs) give the runs
the active design needs to reach the one-shot design's error; with two or more apps,
each app is also warm-started from the others' runs (transfer). The per-point
predictions are written to the surrogates' ``FittedModel.metrics['holdout']``.
Prints one JSON object.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import typer

if TYPE_CHECKING:
    from edgewise.api.profile import InterferenceBenchmark
    from edgewise.interference.campaign import AppEvaluation, RunRecord

Progress = Callable[[str], None]


def _ape(truth: float, pred: float) -> float:
    return float(100.0 * abs(pred - truth) / truth)


def curve_on_holdout(
    runs: Sequence[RunRecord | Mapping[str, Any]],
    held: Sequence[Mapping[str, Any]],
    strategy: str,
    *,
    name: str,
    step: int,
    seed: int,
    resources: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Held-out median APE (p50, %) of surrogate ``name`` refitted on the first k runs."""
    from edgewise.config import RESOURCES
    from edgewise.interference.campaign import as_run, count_stressed, p50_holdout_ape, prefix

    n = count_stressed(runs)
    ks = sorted({*range(step, n + 1, step), n} - {0, 1, 2})
    out = []
    for k in ks:
        part = [r for r in prefix(runs, k) if as_run(r).is_ok]
        if count_stressed(part) < 3:
            continue
        errs = p50_holdout_ape(part, held, name=name, seed=seed, resources=resources or RESOURCES)
        err = float(np.median(errs))
        out.append({"runs": k, "median_ape": round(err, 3), "strategy": strategy})
    return out


def runs_to_reach(curve: Sequence[Mapping[str, Any]], error: float) -> int | None:
    """Fewest runs at which a held-out learning curve is at or below ``error``."""
    for row in sorted(curve, key=lambda r: r["runs"]):
        if row["median_ape"] <= error:
            return int(row["runs"])
    return None


def _apes(rows: Sequence[Mapping[str, float]], percentile: str = "p50") -> list[float]:
    return [_ape(r[f"measured_{percentile}"], r[f"predicted_{percentile}"]) for r in rows]


def _app_entry(a: AppEvaluation, res: Sequence[str], curve_step: int, seed: int) -> dict[str, Any]:
    """One app's figures: held-out errors, the noise floor, the held-out learning curves.

    Headline: what the Predictor does (the stored solo baseline); the variant scaled by
    the fresh solo baselines around each point is ``*_drift_corrected``.
    """
    from edgewise.interference.campaign import noise_cv
    from edgewise.interference.campaign.evaluation import single_window_apes

    active = a.models["active"]
    rows = a.holdout_rows(corrected=False)
    ape50, ape99 = _apes(rows), _apes(rows, "p99")
    ape50_1 = single_window_apes(a) if any(h.repeats for h in a.held) else []
    held_plain = [dict(h.as_dict(), reference=None) for h in a.held]
    entry: dict[str, Any] = {
        "median_ape": float(np.median(ape50)),
        "median_ape_p99": float(np.median(ape99)),
        "median_ape_drift_corrected": float(np.median(_apes(a.holdout_rows(corrected=True)))),
        "median_ape_single_window": float(np.median(ape50_1)) if ape50_1 else None,
        "chosen": active.chosen,
        "workload": a.workload,
        "seconds_per_run": round(a.window_s, 2),
        "solo_p50_ms": active.solo["p50"],
        "noise_cv_p50": noise_cv(a.noise, "p50"),
        "noise_cv_p99": noise_cv(a.noise, "p99"),
        "noise_floor_ape": a.noise_floor_ape(),
        "reference_spread_p50": a.reference_spread(),
    }
    name50 = active.chosen["p50"]
    kw: dict[str, Any] = {"name": name50, "step": curve_step, "seed": seed, "resources": res}
    curves = curve_on_holdout(a.runs["active"], held_plain, "active", **kw)
    if "lhs" in a.models:
        lhs_err = float(np.median(_apes(a.holdout_rows("lhs"))))
        curves += curve_on_holdout(a.runs["lhs"], held_plain, "lhs", **kw)
        need = runs_to_reach([c for c in curves if c["strategy"] == "active"], lhs_err)
        entry["lhs_median_ape"] = lhs_err
        entry["active_runs_to_lhs_error"] = need
    entry["holdout_learning_curve"] = curves
    entry["held_out"] = [h.as_dict() for h in a.held]  # for re-analysis without re-running
    return entry


def _transfer(result: InterferenceBenchmark, say: Progress) -> dict[str, Any]:
    """Each app warm-started from the other apps' runs against from scratch (2+ apps)."""
    from edgewise.interference.campaign import PoolSet, transfer_curve

    budget = result.budget
    if len(result.apps) < 2:
        return {}
    ks = sorted(k for k in {0, 2, 4, 6, 8, 10, 15, budget} if k <= budget)
    out: dict[str, Any] = {}
    for a in result.apps:
        say(f"{a.app}: transfer curve")
        pool = [PoolSet(o.workload, o.runs["active"]) for o in result.apps if o is not a]
        held_plain = [dict(h.as_dict(), reference=None) for h in a.held]
        tc = transfer_curve(
            pool,
            a.runs["active"],
            held_plain,
            ks,
            name="gp",
            seed=result.seed,
            resources=result.resources,
        )
        scratch_full = [
            c["median_ape"] for c in tc if c["strategy"] == "scratch" and c["runs"] == budget
        ]
        warm = [c for c in tc if c["strategy"] == "warm"]
        out[a.app] = {
            "curve": tc,
            "runs_needed": runs_to_reach(warm, scratch_full[0] + 1.0) if scratch_full else None,
        }
    return out


def report(
    result: InterferenceBenchmark, *, curve_step: int = 5, say: Progress | None = None
) -> dict[str, Any]:
    """The benchmark's JSON object from what :func:`benchmark_interference` measured."""
    tell = say or (lambda msg: None)
    per_app = {a.app: _app_entry(a, result.resources, curve_step, result.seed) for a in result.apps}
    transfer = _transfer(result, tell)
    ape50 = [e for a in result.apps for e in _apes(a.holdout_rows())]
    ape99 = [e for a in result.apps for e in _apes(a.holdout_rows(), "p99")]
    ape50_dc = [e for a in result.apps for e in _apes(a.holdout_rows(corrected=True))]
    single = [v["median_ape_single_window"] for v in per_app.values()]
    rows = [r for a in result.apps for r in a.holdout_rows()]
    lhs = [e for a in result.apps if "lhs" in a.models for e in _apes(a.holdout_rows("lhs"))]
    fracs = [
        v["active_runs_to_lhs_error"] / result.budget
        for v in per_app.values()
        if v.get("active_runs_to_lhs_error") is not None
    ]
    return {
        "apps": [a.app for a in result.apps],
        "median_ape": float(np.median(ape50)),
        **result.noise.as_dict(),
        "worst_app_median_ape": max(v["median_ape"] for v in per_app.values()),
        "p90_ape": float(np.percentile(ape50, 90)),
        "median_ape_p99": float(np.median(ape99)),
        "median_ape_drift_corrected": float(np.median(ape50_dc)),
        "median_ape_single_window": (
            result.noise.median_ape_single_window if None not in single else None
        ),
        "holdout_repeats": result.holdout_repeats,
        "noise_cv_p50": float(np.nanmedian([v["noise_cv_p50"] for v in per_app.values()])),
        "noise_cv_p99": float(np.nanmedian([v["noise_cv_p99"] for v in per_app.values()])),
        "interval_coverage_90": _coverage(rows, "p50"),
        "interval_coverage_90_p99": _coverage(rows, "p99"),
        "runs_per_app": result.budget,
        "holdout": result.holdout,
        "seed": result.seed,
        "seconds_per_run": result.seconds,
        "wall_s": result.wall_s,
        "lhs_median_ape": float(np.median(lhs)) if lhs else None,
        "active_fraction_to_lhs_error": (
            float(max(fracs)) if len(fracs) == len(per_app) and fracs else None
        ),
        "transfer_runs_needed": {a: t["runs_needed"] for a, t in transfer.items()} or None,
        "calibrated": result.calibrated,
        "device": result.device,
        "placement": result.placement,
        "space": {k: list(v) for k, v in result.space.items()},
        "per_app": per_app,
        "transfer": transfer or None,
    }


def _coverage(rows: Sequence[Mapping[str, float]], p: str) -> float:
    """Share of held-out points whose measured ``p`` lies inside the 90% interval."""
    return float(np.mean([r[f"lower_{p}"] <= r[f"measured_{p}"] <= r[f"upper_{p}"] for r in rows]))


def run(
    apps: Sequence[str],
    budget: int,
    holdout: int,
    seed: int,
    *,
    curve_step: int = 5,
    kb: Any = None,
    progress: Progress | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Profile each app, measure held-out points, return the benchmark figures.

    ``options`` are :func:`edgewise.api.profile.benchmark_interference`'s (``rate_rps``,
    ``load``, ``seconds``, ``placement``, ``holdout_repeats``...); the measuring is
    the api's, the scoring and the JSON shape (:func:`report`) this benchmark's.
    """
    from edgewise.api.profile import benchmark_interference

    say = progress or (lambda msg: None)
    t_start = time.monotonic()
    result = benchmark_interference(
        apps=apps,
        budget=budget,
        holdout=holdout,
        seed=seed,
        curve_step=curve_step,
        kb=kb,
        progress=lambda phase, done, total: say(f"{phase} {done + 1}/{total}" if total else phase),
        **options,
    )
    out = report(result, curve_step=curve_step, say=say)
    out["wall_s"] = round(time.monotonic() - t_start, 1)
    return out


def interference(
    apps: str = typer.Option("digits_cnn", help="comma-separated zoo models or model@RATErps"),
    budget: int = typer.Option(30, min=3, help="stressed runs per campaign"),
    holdout: int = typer.Option(10, min=1, help="held-out stress configurations per app"),
    holdout_repeats: int = typer.Option(
        1, min=1, help="measure each held-out point this often; score against the median"
    ),
    seed: int = typer.Option(0),
    rate: float = typer.Option(
        0.0, min=0.0, help="request rate (per s); 0: set from --load per app"
    ),
    load: float = typer.Option(
        0.3, help="with --rate 0: serve each app at this fraction of its solo capacity"
    ),
    min_requests: int = typer.Option(
        80, min=0, help="lengthen a run's window to hold at least this many requests"
    ),
    seconds: float = typer.Option(6.0, min=0.5, help="measurement window per run (s)"),
    warmup: float = typer.Option(1.0, min=0.0, help="stressor warm-up per run (s)"),
    repeats: int = typer.Option(3, min=2, help="identical runs for the noise floor"),
    solo_every: int = typer.Option(10, min=1, help="a solo baseline every N runs"),
    confine: str = typer.Option("taskset", help="confine stressors with taskset or cgroup"),
    placement: str = typer.Option(
        "split",
        help="split: CPU stressor on the target's CPU, the others on the other CPUs; "
        "same: every stressor on the target's CPU",
    ),
    foreign_threshold: float = typer.Option(
        0.25, help="foreign CPU share above which a run is repeated"
    ),
    no_lhs: bool = typer.Option(False, "--no-lhs", help="skip the one-shot LHS baseline"),
    device: str = typer.Option("cpu", help="serve the apps on cpu or cuda"),
    gpu_only: bool = typer.Option(
        False, "--gpu-only", help="with --device cuda: stress the GPU alone (no stress-ng)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Profile apps, then measure the prediction error on held-out stress mixes."""
    from rich.console import Console

    from edgewise.errors import SpecError

    if device not in ("cpu", "cuda"):
        raise SpecError(f"--device {device!r}: expected cpu or cuda")
    if confine not in ("taskset", "cgroup"):
        raise SpecError(f"--confine {confine!r}: expected taskset or cgroup")
    if placement not in ("split", "same"):
        raise SpecError(f"--placement {placement!r}: expected split or same")
    app_list = [a.strip() for a in apps.split(",") if a.strip()]
    if not app_list:
        raise SpecError("--apps is empty: give at least one zoo model")
    console = Console(stderr=True)
    with console.status("bench interference") as st:
        res = run(
            app_list,
            budget,
            holdout,
            seed,
            rate_rps=rate or None,
            load=load,
            min_requests=min_requests,
            seconds=seconds,
            warmup_s=warmup,
            repeats=repeats,
            solo_every=solo_every,
            lhs_baseline=not no_lhs,
            confine=confine,
            placement=placement,
            foreign_threshold=foreign_threshold,
            holdout_repeats=holdout_repeats,
            device=device,
            gpu_only=gpu_only,
            progress=lambda msg: st.update(f"bench interference: {msg}"),
        )
    typer.echo(json.dumps(res) if as_json else json.dumps(res, indent=2))


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``interference`` to the ``edgewise bench`` group."""
    bench_app.command("interference")(interference)


def main() -> None:  # pragma: no cover - thin entry point for scripts/gpu-check.sh
    """``python -m edgewise.bench.interference ...``: this bench alone, without the CLI's
    other command modules (and their dependencies)."""
    from edgewise.errors import EdgewiseError

    app = typer.Typer(add_completion=False)
    register_bench(app)

    @app.callback()
    def _root() -> None:
        """edgewise interference bench"""

    try:
        app(standalone_mode=False)
    except EdgewiseError as err:
        typer.echo(f"error: {err}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
