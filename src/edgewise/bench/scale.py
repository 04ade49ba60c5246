"""``edgewise bench scale``: the pillars at sizes this machine cannot host.

* the retrain planner's heuristic on 10,000 simulated devices, and its gap to the exact
  MILP optimum at every size where the MILP finishes within a time limit;
* the serving simulator over 14 days of bike-share with up to 1,000 replicas, per policy;
* the largest resident memory of this process over all of it.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import typer


def random_pool(n: int, seed: int) -> tuple[list[Any], dict[str, Any], Any]:
    """A heterogeneous pool: speeds over a 10x range, two intensities, some busy apps."""
    from edgewise.planning.retrain import DeviceProfile, DeviceState, Intensity, RetrainConstraints

    rng = np.random.default_rng(seed)
    cpus = rng.choice([0.25, 0.33, 0.5, 1.0, 2.0], size=n)
    speed = cpus * rng.uniform(400, 1200, size=n)
    solo = rng.uniform(2, 20, size=n)
    busy = rng.random(n) < 0.4
    deadline = np.where(busy, solo * rng.uniform(1.2, 3.0, size=n), np.nan)
    devices, profiles = [], {}
    for i in range(n):
        name = f"d{i}"
        full = Intensity(2, 0, float(speed[i]), float(solo[i] * rng.uniform(1.5, 4.0)))
        gentle = Intensity(1, 19, float(speed[i] * 0.55), float(solo[i] * rng.uniform(1.0, 1.3)))
        devices.append(
            DeviceState(
                name,
                float(cpus[i]),
                float(rng.choice([512, 1024, 2048])),
                None if np.isnan(deadline[i]) else float(deadline[i]),
            )
        )
        profiles[name] = DeviceProfile(name, (full, gentle), float(solo[i]))
    constraints = RetrainConstraints(
        global_batch=max(256, 4 * n),
        deadline_margin=0.1,
        model_mb=50.0,
        per_sample_mb=0.5,
        comm_fixed_s=0.004,
        comm_per_device_s=0.0005,
    )
    return devices, profiles, constraints


#: Random 16-device pools timed with the exact planner.
PLAN_REPEATS = 20


def retrain_planner(
    sizes: Sequence[int], big: int, seed: int, exact_limit_s: float
) -> dict[str, Any]:
    from edgewise.planning.retrain import plan_exact, plan_heuristic, plan_milp

    # the planner a retraining job calls (issue target: <= 100 ms for 16 devices)
    exact16 = []
    for rep in range(PLAN_REPEATS):
        devices, profiles, c = random_pool(16, seed + rep)
        t0 = time.perf_counter()
        plan_exact(devices, profiles, c)
        exact16.append((time.perf_counter() - t0) * 1000.0)
    times = []
    for rep in range(3):
        devices, profiles, c = random_pool(big, seed + rep)
        t0 = time.perf_counter()
        plan_heuristic(devices, profiles, c)
        times.append(time.perf_counter() - t0)
    gaps: dict[str, float] = {}
    exact_max = 0
    for n in sizes:
        devices, profiles, c = random_pool(n, seed)
        t0 = time.perf_counter()
        exact = plan_milp(devices, profiles, c, time_limit_s=exact_limit_s)
        took = time.perf_counter() - t0
        if took >= 0.95 * exact_limit_s:  # hit the limit: not a proven optimum
            break
        exact_max = n
        heur = plan_heuristic(devices, profiles, c)
        gaps[str(n)] = heur.step_time_s / exact.step_time_s - 1.0
    return {
        "plan_16_devices_ms_p50": float(np.median(exact16)),
        "plan_16_devices_ms_max": float(np.max(exact16)),
        "plan_10k_devices_s": float(np.median(times)),
        "plan_devices": big,
        "plan_gap_vs_exact": max(gaps.values()) if gaps else None,
        "plan_gap_by_size": gaps,
        "exact_max_devices": exact_max,
        "exact_time_limit_s": exact_limit_s,
    }


def serving_sim(policies: Sequence[str], days: float, peak_rps: float, seed: int) -> dict[str, Any]:
    from edgewise.bench.serving import run as serving

    out: dict[str, Any] = {}
    for name in policies:
        t0 = time.perf_counter()
        res = serving(
            days=days,
            policies=[name],
            seed=seed,
            peak_rps=peak_rps,
            startup_s=60,
            slo_ms=100.0,
            single_setting=True,
        )
        wall = time.perf_counter() - t0
        entry = res["policies"][name]
        out[name] = {
            "wall_s": wall,
            "sim_cpu_s": entry.get("sim_cpu_s"),
            "slo_attainment": entry["slo_attainment"],
            "cost": entry["cost"],
        }
    return out


def run(
    seed: int = 0,
    policies: Sequence[str] = ("edgewise", "hpa"),
    days: float = 14.0,
    peak_rps: float = 20000.0,
    devices: int = 10_000,
    sizes: Sequence[int] = (4, 8, 16, 32, 64, 128),
    exact_limit_s: float = 20.0,
) -> dict[str, Any]:
    out = retrain_planner(sizes, devices, seed, exact_limit_s)
    sims = serving_sim(policies, days, peak_rps, seed)
    out["sim_14d_1000_replicas_s"] = max(v["wall_s"] for v in sims.values())
    out["sim_by_policy"] = sims
    out["sim_peak_rps"] = peak_rps
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return out


def register_bench(bench_app: typer.Typer) -> None:
    @bench_app.command("scale")
    def scale_cmd(
        seed: int = typer.Option(0),
        policies: str = typer.Option("edgewise,hpa,kpa,rayserve,static,oracle"),
        days: float = typer.Option(14.0),
        peak_rps: float = typer.Option(20000.0, help="Trace peak (about 1,000 replicas)."),
        devices: int = typer.Option(10_000, help="Simulated devices for the retrain planner."),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Retrain planner on 10,000 devices, serving simulator with 1,000 replicas, memory."""
        names = [p.strip() for p in policies.split(",") if p.strip()]
        out = run(seed, names, days, peak_rps, devices)
        typer.echo(json.dumps(out, indent=None if as_json else 2))
