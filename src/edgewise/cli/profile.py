"""``edgewise profile``, ``edgewise predict`` and ``edgewise stress`` (profile pillar)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgewise.errors import SpecError


def _target_cpus() -> list[int]:
    cpus = sorted(os.sched_getaffinity(0))
    return [cpus[-1]]


def register(app: typer.Typer) -> None:
    """Add the profile pillar's commands to ``app``."""

    @app.command("stress")
    def stress(
        cpu: float = typer.Option(0.0, help="CPU intensity in [0, 1]"),
        membw: float = typer.Option(0.0, help="memory bandwidth intensity in [0, 1]"),
        llc: float = typer.Option(0.0, help="last-level cache intensity in [0, 1]"),
        disk: float = typer.Option(0.0, help="disk I/O intensity in [0, 1]"),
        net: float = typer.Option(0.0, help="loopback network intensity in [0, 1]"),
        mem: float = typer.Option(0.0, help="memory capacity intensity in [0, 1]"),
        seconds: float = typer.Option(10.0, min=0.5, help="measurement window (s)"),
        calibrate: bool = typer.Option(
            False, help="calibrate this host first and store it in the KB"
        ),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Run a multi-resource stress mix and report requested vs achieved intensity."""
        from edgewise.interference.calibration import calibrate as run_calibration
        from edgewise.interference.calibration import load_calibration, save_calibration
        from edgewise.interference.stressors import (
            describe,
            require_stress_ng,
            run_stress,
            validate_intensity,
        )

        req = validate_intensity(
            {"cpu": cpu, "membw": membw, "llc": llc, "disk": disk, "net": net, "mem": mem}
        )
        req = {k: v for k, v in req.items() if v > 0}
        if not req and not calibrate:
            raise SpecError(
                "nothing to stress: give at least one intensity above 0 (e.g. --cpu 0.5)"
            )
        require_stress_ng()
        from edgewise.kb import KnowledgeBase

        kb = KnowledgeBase.open()
        console = Console(stderr=True)
        if calibrate:
            with console.status("calibrating stressors") as st:
                cal = run_calibration(progress=lambda msg: st.update(f"calibrating: {msg}"))
            save_calibration(kb, cal)
        stored = load_calibration(kb)
        if not req:
            return
        with console.status(f"stressing for {seconds:g} s"):
            ach = run_stress(req, seconds, calibration=stored)
        rows = describe(ach, req)
        if as_json:
            typer.echo(json.dumps({"calibrated": stored is not None, "rows": rows}))
            return
        typer.echo(f"{'resource':<9} {'requested':>9} {'achieved':>9} {'delta':>7}")
        for r in rows:
            typer.echo(
                f"{r['resource']:<9} {r['requested']:>9.2f} {r['achieved']:>9.2f} {r['delta_points']:>+6.1f}p"
            )
        if stored is None:
            typer.echo(
                "(host not calibrated: run with --calibrate once to land requests within ±5 points)"
            )

    @app.command("profile")
    def profile(
        app_name: str = typer.Argument(
            ..., metavar="APP", help="zoo model, model@RATErps or cmd:COMMAND"
        ),
        budget: int = typer.Option(30, min=1, help="stressed runs"),
        rate: float = typer.Option(20.0, min=0.1, help="request rate (per s) for a zoo model"),
        load: float | None = typer.Option(
            None, help="instead of --rate: this fraction of the model's solo capacity"
        ),
        batch_size: int = typer.Option(1, min=1),
        seconds: float = typer.Option(6.0, min=0.5, help="measurement window per run (s)"),
        warmup: float = typer.Option(1.5, min=0.0, help="stressor warm-up per run (s)"),
        method: str = typer.Option("active", help="active | lhs | sobol"),
        space: Path | None = typer.Option(None, help="stress-space YAML (default: built-in)"),
        seed: int = typer.Option(0),
        name: str | None = typer.Option(None, help="campaign name (default APP-seedS)"),
        resume: bool = typer.Option(False, help="continue an interrupted campaign"),
        warm_start: bool = typer.Option(
            False, help="pool the runs of other profiled workloads (transfer: fewer runs)"
        ),
        confine: str = typer.Option(
            "none",
            help="stressors on any CPU (none), on the target's CPU (taskset | cgroup), or "
            "split: the CPU stressor on the target's CPU, the others on the other CPUs",
        ),
        solo_every: int = typer.Option(10, min=1, help="a solo baseline every N runs"),
        device: str = typer.Option("cpu", help="serve a zoo model on cpu or cuda"),
    ) -> None:
        """Profile APP under a designed set of stress mixes and store its interference model."""
        from edgewise.config import load_stress_space
        from edgewise.interference.calibration import load_calibration
        from edgewise.interference.campaign import (
            DEFAULT_SPACE,
            CampaignConfig,
            CampaignRunner,
            Placement,
            placement_cpus,
        )
        from edgewise.interference.stressors import require_stress_ng
        from edgewise.interference.target import make_target
        from edgewise.kb import KnowledgeBase

        if method not in ("active", "lhs", "sobol"):
            raise SpecError(f"--method {method!r}: expected active, lhs or sobol")
        if confine not in ("none", "taskset", "cgroup", "split"):
            raise SpecError(f"--confine {confine!r}: expected none, taskset, cgroup or split")
        if device not in ("cpu", "cuda"):
            raise SpecError(f"--device {device!r}: expected cpu or cuda")
        sp = load_stress_space(space) if space else DEFAULT_SPACE
        space_map: dict[str, tuple[float, float]] = {str(k): v for k, v in sp.resources.items()}
        if device == "cuda":
            from edgewise.interference.gpu import require_gpu

            require_gpu()
            space_map["gpu"] = (0.0, 1.0)
        require_stress_ng()
        tcpus = _target_cpus()
        target = make_target(
            app_name,
            rate_rps=rate,
            batch_size=batch_size,
            cpus=tcpus,
            seed=seed,
            device=device,
            load=load,
        )
        placements: dict[str, Placement] = {
            "none": "any",
            "split": "split",
            "taskset": "same",
            "cgroup": "same",
        }
        stress_cpus, cpu_stress_cpus = placement_cpus(
            placements[confine], tcpus, sorted(os.sched_getaffinity(0))
        )
        cfg = CampaignConfig(
            name=name or f"{target.name}-seed{seed}",
            budget=budget,
            seconds=seconds,
            warmup_s=warmup,
            seed=seed,
            method=method,  # type: ignore[arg-type]
            space=space_map,
            solo_every=solo_every,
            warm_start=warm_start,
            stress_cpus=stress_cpus,
            cpu_stress_cpus=cpu_stress_cpus,
            confine="cgroup" if confine == "cgroup" else "taskset",
        )
        kb = KnowledgeBase.open()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[point]}"),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task(f"profiling {target.name}", total=budget, point="starting target")

            def progress(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, point=what)

            model = CampaignRunner(
                kb, target, cfg, calibration=load_calibration(kb), progress=progress
            ).run(resume=resume)
            bar.update(task, completed=budget, point="fitted")
        if model.pooled_from:
            typer.echo(f"warm-started from: {', '.join(model.pooled_from)}")
        typer.echo(
            f"stored interference model for {model.workload}: "
            + ", ".join(
                f"{p} {model.chosen[p]} (CV median APE {model.cv_scores[p][model.chosen[p]]:.1f}%)"
                if len(model.cv_scores[p]) > 1
                else f"{p} {model.chosen[p]}"
                for p in ("p50", "p95", "p99")
            )
        )

    @app.command("predict")
    def predict(
        app_name: str = typer.Argument(..., metavar="APP"),
        with_: list[str] = typer.Option(
            [], "--with", help="co-located workload or stress:RES=V,..."
        ),
        solo_p50_ms: float | None = typer.Option(
            None,
            "--solo-p50-ms",
            help="APP's p50 alone now (ms): scales the prediction to the host's current speed",
        ),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Predict APP's latency percentiles next to the given workloads, with 90% intervals."""
        from edgewise.interference.predictor import Predictor
        from edgewise.kb import KnowledgeBase

        pred = Predictor(KnowledgeBase.open()).predict(app_name, with_, solo_p50_ms)
        if as_json:
            typer.echo(json.dumps(pred.__dict__))
            return
        typer.echo(
            f"resource vector ({pred.source}): "
            + ", ".join(f"{k}={v:.2f}" for k, v in pred.vector.items())
        )
        for p in ("p50", "p95", "p99"):
            typer.echo(
                f"{p}: {getattr(pred, p):.2f} ms  [{pred.lower[p]:.2f}, {pred.upper[p]:.2f}] (90%)"
            )
