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
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import typer
from sqlalchemy import select

if TYPE_CHECKING:
    from edgewise.interference.campaign import Placement

Progress = Callable[[str], None]


def _ape(truth: float, pred: float) -> float:
    return float(100.0 * abs(pred - truth) / truth)


def combine_repeats(measured: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One held-out truth from repeated measurements of a point.

    Each numeric latency figure is the median over the repeats; the achieved vector is
    the mean (the model is fed the intensities the repeats averaged).
    """
    if not measured:
        raise ValueError("no measurement to combine")
    latency: dict[str, Any] = {}
    for key, v0 in measured[0]["latency"].items():
        vals = [m["latency"].get(key) for m in measured]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals)
        latency[key] = float(np.median([float(v) for v in vals])) if numbers else v0
    achieved = {
        key: float(np.mean([float(m["achieved"].get(key, 0.0)) for m in measured]))
        for key in measured[0]["achieved"]
    }
    return {"achieved": achieved, "latency": latency}


def holdout_records(
    model: Any, held: Sequence[Mapping[str, Any]], corrected: bool = True
) -> list[dict[str, float]]:
    """The report's per-point rows for ``model`` on measured held-out points."""
    rows = []
    for h in held:
        out = model.predict(h["achieved"], reference=h["reference"] if corrected else None)
        rows.append(
            {
                "measured_p50": float(h["latency"]["p50"]),
                "predicted_p50": float(out["p50"]),
                "lower_p50": float(out["lower"]["p50"]),
                "upper_p50": float(out["upper"]["p50"]),
                "measured_p99": float(h["latency"]["p99"]),
                "predicted_p99": float(out["p99"]),
                "lower_p99": float(out["lower"]["p99"]),
                "upper_p99": float(out["upper"]["p99"]),
            }
        )
    return rows


def curve_on_holdout(
    runs: Sequence[Mapping[str, Any]],
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
    from edgewise.interference.campaign import p50_holdout_ape, prefix

    n = sum(1 for r in runs if "solo" not in r.get("flags", []))
    ks = sorted({*range(step, n + 1, step), n} - {0, 1, 2})
    out = []
    for k in ks:
        part = [r for r in prefix(runs, k) if r.get("status") == "ok"]
        if sum(1 for r in part if "solo" not in r["flags"]) < 3:
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


def _attach_holdout(kb: Any, workload: str, campaign: str, rows: list[dict[str, float]]) -> None:
    """Write ``holdout`` into the metrics of the surrogate fitted by ``campaign``."""
    from edgewise.kb import models as m

    with kb.transaction() as s:
        for fm in s.scalars(
            select(m.FittedModel).where(
                m.FittedModel.kind == "surrogate", m.FittedModel.name == workload
            )
        ):
            if (fm.meta or {}).get("campaign") == campaign:
                fm.metrics = {**dict(fm.metrics or {}), "holdout": rows}


def run(
    apps: Sequence[str],
    budget: int,
    holdout: int,
    seed: int,
    *,
    rate_rps: float | None = None,
    load: float = 0.3,
    min_requests: int = 0,
    seconds: float = 6.0,
    warmup_s: float = 1.0,
    repeats: int = 3,
    solo_every: int = 10,
    lhs_baseline: bool = True,
    confine: str = "taskset",
    placement: Placement = "split",
    foreign_threshold: float = 0.25,
    max_repeats: int = 1,
    holdout_repeats: int = 1,
    surrogates: Sequence[str] = ("gp", "gbq", "linear"),
    curve_step: int = 5,
    device: str = "cpu",
    gpu_only: bool = False,
    kb: Any = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Profile each app, measure held-out points, return the benchmark figures.

    Each zoo app is served at ``rate_rps`` or, when that is None, at ``load`` times its
    solo capacity (timed first); each run's window is at least ``seconds`` and long
    enough for ``min_requests`` requests. ``device='cuda'`` serves the apps on the GPU and adds the GPU stressor's duty cycle
    (``gpu``) to the stress space; ``gpu_only`` explores that resource alone (for hosts
    without stress-ng).
    """
    from edgewise.interference import doe
    from edgewise.interference.calibration import host_caps, load_calibration
    from edgewise.interference.campaign import (
        DEFAULT_SPACE,
        CampaignConfig,
        CampaignRunner,
        PoolSet,
        campaign_runs,
        measure_point,
        placement_cpus,
        reference_at,
        resources_of,
        transfer_curve,
    )
    from edgewise.interference.target import make_target
    from edgewise.kb import KnowledgeBase

    if holdout_repeats < 1:
        raise ValueError(f"holdout_repeats must be at least 1, got {holdout_repeats}")
    say = progress or (lambda msg: None)
    kb = kb or KnowledgeBase.open()
    t_start = time.monotonic()
    cal = load_calibration(kb)
    say("host peaks (probing once if not stored)")
    caps = host_caps(kb, probe=not gpu_only)
    allowed = sorted(os.sched_getaffinity(0))
    target_cpus = [allowed[-1]]
    stress_cpus, cpu_stress_cpus = placement_cpus(placement, target_cpus, allowed)
    space: dict[str, tuple[float, float]] = (
        {} if gpu_only else {str(k): v for k, v in DEFAULT_SPACE.resources.items()}
    )
    if device == "cuda":
        from edgewise.interference.gpu import require_gpu

        require_gpu()
        space["gpu"] = (0.0, 1.0)
    elif gpu_only:
        from edgewise.errors import SpecError

        raise SpecError("gpu_only needs device='cuda'")
    res = resources_of(space)
    rng = np.random.default_rng(seed)
    names, lo, hi = doe.space_bounds(space)
    points = [
        dict(zip(names, (lo + rng.random(len(names)) * (hi - lo)).round(4).tolist(), strict=True))
        for _ in range(holdout)
    ]
    centre = {n: round(float((lo[i] + hi[i]) / 2), 4) for i, n in enumerate(names)}
    per_app: dict[str, Any] = {}
    all_ape: dict[str, list[float]] = {
        "p50": [],
        "p99": [],
        "p50_dc": [],
        "lhs": [],
        "p50_single": [],
    }
    covered: dict[str, list[bool]] = {"p50": [], "p99": []}
    noise: dict[str, list[float]] = {"p50": [], "p99": []}
    app_data: dict[str, dict[str, Any]] = {}
    stamp = time.time_ns()

    def point(target: Any, design: Mapping[str, float], s: int, warm: float, window: float) -> Any:
        return measure_point(
            target,
            design,
            seconds=window,
            warmup_s=warm,
            seed=s,
            stress_cpus=stress_cpus,
            cpu_stress_cpus=cpu_stress_cpus,
            calibration=cal,
            caps=caps,
            confine=confine,  # type: ignore[arg-type]
        )

    for app in apps:
        say(f"{app}: timing the solo service")
        target = make_target(
            app,
            rate_rps=rate_rps or 20.0,
            load=None if rate_rps else load,
            cpus=target_cpus,
            seed=seed,
            device=device,
        )
        rate_of = getattr(target, "rate_rps", None)
        window = max(seconds, min_requests / rate_of) if rate_of else seconds

        def cfg(
            method: str, tag: str, wname: str = target.name, window: float = window
        ) -> CampaignConfig:
            return CampaignConfig(
                name=f"bench-{tag}-{wname}-s{seed}-{stamp}",
                budget=budget,
                seconds=window,
                warmup_s=warmup_s,
                seed=seed,
                method=method,  # type: ignore[arg-type]
                solo_every=solo_every,
                stress_cpus=stress_cpus,
                cpu_stress_cpus=cpu_stress_cpus,
                confine=confine,  # type: ignore[arg-type]
                foreign_threshold=foreign_threshold,
                max_repeats=max_repeats,
                surrogates=tuple(surrogates),
                curve_step=curve_step,
                space=dict(space),
            )

        cfgs = {"lhs": cfg("lhs", "lhs")} if lhs_baseline else {}
        cfgs["active"] = cfg("active", "active")  # stored last: the predictor's model
        models: dict[str, Any] = {}
        for kind, c in cfgs.items():

            def prog(done: int, total: int, what: str, kind: str = kind, app: str = app) -> None:
                say(f"{app}: {kind} run {done + 1}/{total} ({what})")

            models[kind] = CampaignRunner(
                kb, target, c, calibration=cal, caps=caps, progress=prog
            ).run()
        target.start()
        held: list[dict[str, Any]] = []
        solos: list[tuple[int, dict[str, float]]] = []
        try:
            say(f"{app}: held-out solo baseline")
            solos.append((0, point(target, {}, seed * 7919 + 100000, 0.0, window).latency))
            for i, pt in enumerate(points):
                measured = []
                for r in range(holdout_repeats):
                    rep = f", repeat {r + 1}/{holdout_repeats}" if holdout_repeats > 1 else ""
                    say(f"{app}: held-out point {i + 1}/{len(points)}{rep}")
                    meas = point(target, pt, seed * 7919 + i + 1_000_003 * r, warmup_s, window)
                    measured.append({"achieved": meas.achieved, "latency": meas.latency})
                truth = combine_repeats(measured)
                held.append({"pos": i + 1, "design": dict(pt), **truth})
                if holdout_repeats > 1:
                    held[-1]["repeats"] = measured
                if (i + 1) % max(1, solo_every // 2) == 0 or i + 1 == len(points):
                    say(f"{app}: held-out solo baseline")
                    solos.append(
                        (i + 1, point(target, {}, seed * 7919 + 100001 + i, 0.0, window).latency)
                    )
            reps = []
            for r in range(repeats):
                say(f"{app}: noise repeat {r + 1}/{repeats}")
                reps.append(point(target, centre, seed + 1 + r, warmup_s, window))
        finally:
            target.close()
        for h in held:
            h["reference"] = reference_at(h["pos"], solos)
        active = models["active"]
        # headline: what the Predictor does (stored solo baseline); the variant scaled
        # by the fresh solo baselines around the point is reported as *_drift_corrected
        rows = holdout_records(active, held, corrected=False)
        rows_dc = holdout_records(active, held, corrected=True)
        _attach_holdout(kb, target.name, cfgs["active"].name, rows)
        ape50 = [_ape(r["measured_p50"], r["predicted_p50"]) for r in rows]
        ape99 = [_ape(r["measured_p99"], r["predicted_p99"]) for r in rows]
        ape50_dc = [_ape(r["measured_p50"], r["predicted_p50"]) for r in rows_dc]
        ape50_1: list[float] = []
        if holdout_repeats > 1:
            first = [dict(h, **h["repeats"][0]) for h in held]
            rows_1 = holdout_records(active, first, corrected=False)
            ape50_1 = [_ape(r["measured_p50"], r["predicted_p50"]) for r in rows_1]
            all_ape["p50_single"] += ape50_1
        all_ape["p50"] += ape50
        all_ape["p99"] += ape99
        all_ape["p50_dc"] += ape50_dc
        held_plain = [dict(h, reference=None) for h in held]
        covered["p50"] += [r["lower_p50"] <= r["measured_p50"] <= r["upper_p50"] for r in rows]
        covered["p99"] += [r["lower_p99"] <= r["measured_p99"] <= r["upper_p99"] for r in rows]
        for p in ("p50", "p99"):
            v = np.array([r.latency[p] for r in reps])
            noise[p].append(float(100 * v.std(ddof=1) / v.mean()) if len(v) > 1 else float("nan"))
        runs_active = [r for r in campaign_runs(kb, cfgs["active"].name) if r["status"] == "ok"]
        entry: dict[str, Any] = {
            "median_ape": float(np.median(ape50)),
            "median_ape_p99": float(np.median(ape99)),
            "median_ape_drift_corrected": float(np.median(ape50_dc)),
            "median_ape_single_window": float(np.median(ape50_1)) if ape50_1 else None,
            "chosen": active.chosen,
            "workload": target.name,
            "seconds_per_run": round(window, 2),
            "solo_p50_ms": active.solo["p50"],
            "noise_cv_p50": noise["p50"][-1],
            "noise_cv_p99": noise["p99"][-1],
        }
        name50 = active.chosen["p50"]
        curves = curve_on_holdout(
            runs_active,
            held_plain,
            "active",
            name=name50,
            step=curve_step,
            seed=seed,
            resources=res,
        )
        if "lhs" in models:
            lhs_rows = holdout_records(models["lhs"], held, corrected=False)
            _attach_holdout(kb, target.name, cfgs["lhs"].name, lhs_rows)
            lhs_ape = [_ape(r["measured_p50"], r["predicted_p50"]) for r in lhs_rows]
            all_ape["lhs"] += lhs_ape
            runs_lhs = [r for r in campaign_runs(kb, cfgs["lhs"].name) if r["status"] == "ok"]
            curves += curve_on_holdout(
                runs_lhs, held_plain, "lhs", name=name50, step=curve_step, seed=seed, resources=res
            )
            lhs_err = float(np.median(lhs_ape))
            need = runs_to_reach([c for c in curves if c["strategy"] == "active"], lhs_err)
            entry["lhs_median_ape"] = lhs_err
            entry["active_runs_to_lhs_error"] = need
        entry["holdout_learning_curve"] = curves
        entry["held_out"] = held  # the measured points, for re-analysis without re-running
        per_app[app] = entry
        app_data[app] = {"workload": target.name, "runs": runs_active, "held": held_plain}

    transfer: dict[str, Any] = {}
    if len(apps) >= 2:
        ks = sorted(k for k in {0, 2, 4, 6, 8, 10, 15, budget} if k <= budget)
        for app in apps:
            say(f"{app}: transfer curve")
            pool = [
                PoolSet(app_data[o]["workload"], tuple(app_data[o]["runs"]))
                for o in apps
                if o != app
            ]
            tc = transfer_curve(
                pool,
                app_data[app]["runs"],
                app_data[app]["held"],
                ks,
                name="gp",
                seed=seed,
                resources=res,
            )
            scratch_full = [
                c["median_ape"] for c in tc if c["strategy"] == "scratch" and c["runs"] == budget
            ]
            warm = [c for c in tc if c["strategy"] == "warm"]
            transfer[app] = {
                "curve": tc,
                "runs_needed": runs_to_reach(warm, scratch_full[0] + 1.0) if scratch_full else None,
            }
    fracs = [
        v["active_runs_to_lhs_error"] / budget
        for v in per_app.values()
        if v.get("active_runs_to_lhs_error") is not None
    ]
    return {
        "apps": list(apps),
        "median_ape": float(np.median(all_ape["p50"])),
        "worst_app_median_ape": max(v["median_ape"] for v in per_app.values()),
        "p90_ape": float(np.percentile(all_ape["p50"], 90)),
        "median_ape_p99": float(np.median(all_ape["p99"])),
        "median_ape_drift_corrected": float(np.median(all_ape["p50_dc"])),
        "median_ape_single_window": (
            float(np.median(all_ape["p50_single"])) if all_ape["p50_single"] else None
        ),
        "holdout_repeats": holdout_repeats,
        "noise_cv_p50": float(np.nanmedian(noise["p50"])),
        "noise_cv_p99": float(np.nanmedian(noise["p99"])),
        "interval_coverage_90": float(np.mean(covered["p50"])),
        "interval_coverage_90_p99": float(np.mean(covered["p99"])),
        "runs_per_app": budget,
        "holdout": holdout,
        "seed": seed,
        "seconds_per_run": seconds,
        "wall_s": round(time.monotonic() - t_start, 1),
        "lhs_median_ape": float(np.median(all_ape["lhs"])) if all_ape["lhs"] else None,
        "active_fraction_to_lhs_error": (
            float(max(fracs)) if len(fracs) == len(per_app) and fracs else None
        ),
        "transfer_runs_needed": {a: t["runs_needed"] for a, t in transfer.items()} or None,
        "calibrated": cal is not None,
        "device": device,
        "placement": placement,
        "space": {k: list(v) for k, v in space.items()},
        "per_app": per_app,
        "transfer": transfer or None,
    }


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``interference`` to the ``edgewise bench`` group."""

    @bench_app.command("interference")
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
                placement=placement,  # type: ignore[arg-type]  # checked above
                foreign_threshold=foreign_threshold,
                holdout_repeats=holdout_repeats,
                device=device,
                gpu_only=gpu_only,
                progress=lambda msg: st.update(f"bench interference: {msg}"),
            )
        typer.echo(json.dumps(res) if as_json else json.dumps(res, indent=2))


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
