"""``edgewise retrain``: update a deployed model on an emulated device pool under deadlines.

Steps: (optionally) check the deployed model for drift and stop when it is fine;
start the pool; take the device profiles from the knowledge base when cached and not
stale, else measure them; plan; train elastically with the load-aware monitor; record
the job, its checkpoints and its metrics in the knowledge base.

Where the devices are: emulated on this host (default), or, with ``--address``, the
Ray cluster's nodes that carry them (resource ``device-<name>`` or the device's
``labels``; see :mod:`edgewise.retrain.raypool`). Same code path otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgewise.errors import SpecError


def register(app: typer.Typer) -> None:
    """Add the ``retrain`` command to ``app``."""

    @app.command("retrain")
    def retrain(
        devices: Path = typer.Option(..., "--devices", help="devices YAML"),
        model: str = typer.Option("digits_cnn", "--model"),
        data: str = typer.Option("digits", "--data"),
        drift: str = typer.Option("rotation", "--drift", help="rotation, noise or new_classes"),
        epochs: int = typer.Option(60, "--epochs", min=1),
        steps: int | None = typer.Option(None, "--steps", min=1, help="overrides --epochs"),
        global_batch: int = typer.Option(1024, "--global-batch", min=1),
        seed: int = typer.Option(0, "--seed"),
        kill_at_step: int | None = typer.Option(None, "--kill-at-step", min=1),
        kill_device: str | None = typer.Option(None, "--kill-device"),
        resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint"),
        workdir: Path | None = typer.Option(None, "--workdir", help="job directory"),
        reprofile: bool = typer.Option(False, "--reprofile", help="ignore cached profiles"),
        load_aware: bool = typer.Option(
            True, "--load-aware/--no-load-aware", help="re-plan when background load changes"
        ),
        when_drift: bool = typer.Option(
            False, "--when-drift", help="update only if the deployed model has drifted"
        ),
        drift_metric: str = typer.Option("accuracy", "--drift-metric", help="accuracy or ks"),
        threshold: float | None = typer.Option(
            None, "--threshold", help="accuracy below / KS above it triggers (0.9 / 0.2)"
        ),
        address: str | None = typer.Option(
            None,
            "--address",
            help="Ray cluster address (HOST:6379 or auto): devices are the nodes that carry them",
        ),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Plan devices, intensities and batch shares under deadlines, then train elastically."""
        import math
        import shutil

        from rich.console import Console
        from rich.progress import Progress

        from edgewise.bench.retrain import (
            base_weights,
            check_pool,
            device_states,
            drift_accuracy,
            make_constraints,
        )
        from edgewise.config import load_devices
        from edgewise.kb import KnowledgeBase
        from edgewise.paths import home
        from edgewise.planning.retrain import plan_exact
        from edgewise.retrain import drift as drift_mod
        from edgewise.retrain import records
        from edgewise.retrain.background import BackgroundMonitor, read_log, summarise
        from edgewise.retrain.controller import JobSpec, TrainingFailed, run_training
        from edgewise.retrain.devices import EmulatedPool
        from edgewise.retrain.profiler import profile_pool
        from edgewise.retrain.raypool import RayPool
        from edgewise.retrain.trainer import load_task

        if (kill_at_step is None) != (kill_device is None):
            raise SpecError("--kill-at-step and --kill-device go together")
        if drift_metric not in ("accuracy", "ks"):
            raise SpecError(f"--drift-metric {drift_metric}: choose accuracy or ks")
        spec = load_devices(devices)
        c = make_constraints(model, global_batch)
        check_pool(spec, {}, c, str(devices))
        err = Console(stderr=True)
        with err.status("training the deployed model on the base split"):
            base = base_weights(model, data, drift, seed)
        if when_drift:
            stat = drift_mod.measure(model, base, data, drift, seed, drift_metric)  # type: ignore[arg-type]
            decision = drift_mod.decide(drift_metric, stat, threshold)  # type: ignore[arg-type]
            typer.echo(f"drift check: {decision.reason}")
            if not decision.update:
                if as_json:
                    typer.echo(json.dumps({"drift": decision.__dict__, "updated": False}))
                return
        work = workdir or home() / "retrain" / f"{model}-{data}-{devices.stem}"
        ck_dir = work / "job" / "checkpoints"
        if not resume and ck_dir.exists():
            for p in ck_dir.iterdir():
                p.unlink()
        task = load_task(data, drift, seed)
        n_steps = steps or max(1, math.ceil(epochs * len(task.drift_train[1]) / c.global_batch))
        before = drift_accuracy(model, data, drift, seed, base)
        states = device_states(spec)
        kb = KnowledgeBase.open()
        profile_batch = max(32, c.global_batch // len(spec.devices))
        key = records.pool_key(spec.devices, model, data, profile_batch)
        pool_cm: EmulatedPool | RayPool = (
            RayPool(spec.devices, work / "pool", seed=seed, address=address)
            if address
            else EmulatedPool(spec.devices, work / "pool", seed=seed)
        )
        with pool_cm as pool:
            cached = None if reprofile else records.load_profiles(kb, key)
            with err.status("starting devices" + ("" if cached else " and profiling")):
                pool.wait_background_ready()
                if cached is not None:
                    profiles, source = cached, "cache"
                else:
                    profiles = profile_pool(
                        pool, spec.devices, model, data, drift, seed, batch=profile_batch
                    )
                    records.save_profiles(kb, key, profiles)
                    source = "measured"
            check_pool(spec, profiles, c, str(devices))
            plan = plan_exact(states, profiles, c)
            err.print(f"profiles: {source} (pool {key})")
            for name, why in plan.explanation.items():
                err.print(f"{name}: {why}")
            init = base
            if address:
                # workers on other hosts see the job directory, not this host's cache
                init = work / "job" / "base-weights.pt"
                init.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(base, init)
            job = JobSpec(
                model,
                data,
                drift,
                seed,
                n_steps,
                work / "job",
                init_weights=str(init),
                rebalance=True,
            )
            job_id = records.start_job(
                kb,
                f"retrain-{devices.stem}",
                model,
                {
                    "devices": str(devices),
                    "data": data,
                    "drift": drift,
                    "seed": seed,
                    "steps": n_steps,
                    "global_batch": c.global_batch,
                    "resume": resume,
                    "profiles": source,
                    "workdir": str(job.workdir),
                },
            )
            monitor = BackgroundMonitor.for_pool(pool) if load_aware else None
            with Progress(console=err) as prog:
                bar = prog.add_task("re-training", total=n_steps)
                try:
                    res = run_training(
                        pool,
                        states,
                        profiles,
                        c,
                        job,
                        plan_exact,
                        kill_at_step=kill_at_step,
                        kill_device=kill_device,
                        resume=resume,
                        on_step=lambda s, _t: prog.update(bar, completed=s),
                        on_checkpoint=lambda s, p: records.record_checkpoint(kb, job_id, s, p),
                        monitor=monitor,
                    )
                except KeyboardInterrupt:
                    records.finish_job(kb, job_id, "interrupted", {})
                    raise SpecError(
                        f"interrupted; checkpoints kept in {ck_dir}: rerun with --resume"
                    ) from None
                except TrainingFailed:
                    records.finish_job(kb, job_id, "failed", {})
                    raise
            bg = {}
            for d in spec.devices:
                if d.background is not None:
                    s = summarise(
                        read_log(pool.bg_log(d.name)),
                        d.background.deadline_ms,
                        res.t_first_step,
                        res.t_end,
                    )
                    bg[d.name] = {
                        "p50_ms": s["p50"],
                        "p99_ms": s["p99"],
                        "deadline_ms": d.background.deadline_ms,
                        "miss_rate": s["miss_rate"],
                    }
        after = drift_accuracy(model, data, drift, seed, res.final_weights)
        ratio, drifted = records.measured_drift(res.steps, res.plans[0])
        if drifted:
            records.save_profiles(kb, key, profiles, stale=True, metrics={"ratio": ratio})
        metrics = records.job_metrics(
            res.steps,
            res.failures,
            accuracy_before=before,
            accuracy_after=after,
            background=bg,
            plan=res.plans[0],
            replans=res.replans,
            extra={"step_time_over_plan": ratio, "reprofile_next": drifted},
        )
        records.finish_job(kb, job_id, "done", metrics)
        out = {
            "job_id": job_id,
            "plan": plan.to_dict(),
            "steps": res.final_step,
            "train_time_s": res.train_time_s,
            "accuracy_before": before,
            "accuracy_after": after,
            "failures": res.failures,
            "recovery_s": res.recovery_s,
            "replans": res.replans,
            "background": bg,
            "profiles": source,
            "reprofile_next": drifted,
            "weights": str(res.final_weights),
        }
        if as_json:
            typer.echo(json.dumps(out, indent=2, default=str))
        else:
            typer.echo(
                f"re-trained {model} in {res.train_time_s:.1f} s on {', '.join(plan.devices)}: "
                f"drifted-split accuracy {before:.3f} -> {after:.3f}; weights {res.final_weights}"
            )
