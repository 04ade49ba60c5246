"""Benchmark: the serving planner (``edgewise bench plan --json``).

Random catalogs (prices, per-replica capacities and accuracies of several model
variants, per-flavor replica limits, a minimum accuracy and a rate) are solved by the
exact planner (``milp``/HiGHS) and the Barista heuristic: solve times (wall clock, and
CPU time of this process, which a busy host inflates less), the heuristic's
relative cost gap to the optimum, and, on small instances (3 flavors, at most 6
replicas each), whether the exact planner's cost equals brute-force enumeration.
Instance generation is pure and seeded; only the timing reads the clock.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import numpy as np
import typer

from edgewise.api.plan import native_stdout_silenced
from edgewise.planning.serving import ReplicaOption, plan_bruteforce, plan_exact, plan_heuristic

TARGET_SOLVE_MS_P99 = 100.0
CPU_SIZES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def random_instance(
    rng: np.random.Generator, n_flavors: int, max_replicas: int, max_variants: int = 3
) -> tuple[list[ReplicaOption], float, float]:
    """(options, rate_rps, min_accuracy) of one random, feasible planning problem.

    Capacity grows sublinearly with CPUs (exponent 0.6–1.0, ±20% noise), prices roughly
    linearly (±20%, rounded to 1e-4 $/h like price lists); faster variants are less
    accurate. A flavor's limit is shared by its variants. The rate is 1–90% of what the
    eligible options can serve at their limits.
    """
    n_variants = int(rng.integers(1, max_variants + 1))
    accuracy = np.sort(rng.uniform(0.6, 0.9, n_variants))
    speed = np.sort(rng.uniform(5.0, 60.0, n_variants))[::-1]  # rps per CPU, best first
    cpus = rng.choice(CPU_SIZES, n_flavors)
    alpha = rng.uniform(0.6, 1.0)
    price = np.round(cpus * 0.048 * rng.uniform(0.8, 1.2, n_flavors), 4)
    price = np.maximum(price, 1e-4)
    limits = rng.integers(1, max_replicas + 1, n_flavors)
    options = [
        ReplicaOption(
            model=f"variant{v}",
            flavor=f"flavor{f}",
            accuracy=float(accuracy[v]),
            capacity_rps=float(speed[v] * cpus[f] ** alpha * rng.uniform(0.8, 1.2)),
            price_per_hour=float(price[f]),
            max_replicas=int(limits[f]),
            cpus=float(cpus[f]),
        )
        for v in range(n_variants)
        for f in range(n_flavors)
    ]
    min_accuracy = float(accuracy[rng.integers(0, n_variants)]) if rng.random() < 0.5 else 0.0
    best: dict[str, float] = {}
    for o in options:
        if o.accuracy >= min_accuracy:
            best[o.flavor] = max(best.get(o.flavor, 0.0), o.capacity_rps * o.max_replicas)
    rate = float(sum(best.values()) * rng.uniform(0.01, 0.9))
    return options, rate, min_accuracy


def run(
    flavors: int = 20, max_replicas: int = 100, instances: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-able figures.

    Parameters
    ----------
    flavors, max_replicas : int
        Size of the large instances (per-flavor limits drawn in ``1..max_replicas``).
    instances : int
        Large instances to time, and (at most 200) small ones to check by brute force.
    seed : int
        Seed of every random instance.
    """
    if flavors < 1 or max_replicas < 1 or instances < 1:
        raise ValueError("flavors, max_replicas and instances must be at least 1")
    rng = np.random.default_rng(seed)
    solve_ms: list[float] = []
    solve_cpu_ms: list[float] = []
    heuristic_ms: list[float] = []
    gaps: list[float] = []
    for _ in range(instances):
        options, rate, min_acc = random_instance(rng, flavors, max_replicas)
        c0, t0 = time.process_time(), time.perf_counter()
        exact = plan_exact(options, rate, min_acc)
        c1, t1 = time.process_time(), time.perf_counter()
        solve_cpu_ms.append((c1 - c0) * 1e3)
        heur = plan_heuristic(options, rate, min_acc)
        t2 = time.perf_counter()
        solve_ms.append((t1 - t0) * 1e3)
        heuristic_ms.append((t2 - t1) * 1e3)
        gaps.append(heur.cost_per_hour / exact.cost_per_hour - 1.0)

    small = min(instances, 200)
    mismatches = 0
    small_gaps: list[float] = []
    for _ in range(small):
        options, rate, min_acc = random_instance(rng, 3, 6, max_variants=2)
        truth = plan_bruteforce(options, rate, min_acc)
        exact = plan_exact(options, rate, min_acc)
        heur = plan_heuristic(options, rate, min_acc)
        if not np.isclose(exact.cost_per_hour, truth.cost_per_hour, rtol=1e-9, atol=1e-12):
            mismatches += 1
        small_gaps.append(heur.cost_per_hour / truth.cost_per_hour - 1.0)

    p50, p99 = np.percentile(solve_ms, [50, 99])
    return {
        "flavors": flavors,
        "max_replicas": max_replicas,
        "instances": instances,
        "seed": seed,
        "solve_ms_p50": round(float(p50), 3),
        "solve_ms_p99": round(float(p99), 3),
        "solve_ms_max": round(float(np.max(solve_ms)), 3),
        "solve_cpu_ms_p50": round(float(np.median(solve_cpu_ms)), 3),
        "solve_cpu_ms_p99": round(float(np.percentile(solve_cpu_ms, 99)), 3),
        "heuristic_ms_p50": round(float(np.median(heuristic_ms)), 3),
        "heuristic_gap_max": round(float(np.max(gaps)), 6),
        "heuristic_gap_median": round(float(np.median(gaps)), 6),
        "heuristic_optimal_fraction": round(float(np.mean(np.asarray(gaps) <= 1e-9)), 4),
        "bruteforce_instances": small,
        "exact_matches_bruteforce": mismatches == 0,
        "bruteforce_mismatches": mismatches,
        "heuristic_gap_max_small": round(float(np.max(small_gaps)), 6),
        "target_solve_ms_p99": TARGET_SOLVE_MS_P99,
        "meets_target": bool(p99 <= TARGET_SOLVE_MS_P99 and mismatches == 0),
    }


def bench_plan(
    flavors: Annotated[int, typer.Option(min=1, help="flavors per instance")] = 20,
    max_replicas: Annotated[int, typer.Option(min=1, help="largest per-flavor limit")] = 100,
    instances: Annotated[int, typer.Option(min=1, help="random instances")] = 200,
    seed: Annotated[int, typer.Option(help="seed of the instances")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """Time the exact serving planner, the heuristic's gap, and check against brute force."""
    with native_stdout_silenced():
        result = run(flavors, max_replicas, instances, seed)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for key, value in result.items():
        typer.echo(f"{key:28s} {value}")


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``plan`` to the ``edgewise bench`` group."""
    bench_app.command("plan")(bench_plan)
